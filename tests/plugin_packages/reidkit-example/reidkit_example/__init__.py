"""A complete minimal reidkit plugin (the one docs/plugins.md walks through).

It registers an adapter for a flat folder of crops named PID_CAMERA_ANYTHING.jpg
(train/, query/, gallery/ subfolders), a `tint` generator with declared
settings, and a `hello-example` command.
"""
import re
from pathlib import Path

import click
import numpy as np

from reidkit import hookimpl
from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord, find_dataset_root
from reidkit.contracts import Setting

NAME_RE = re.compile(r"^(\d+)_(\d+)_")


class FlatFolderAdapter(Adapter):
    """Crops in train/, query/ and gallery/, named PID_CAMERA_*.jpg (camera 1-based)."""

    name = "flat-folder"
    summary = "Flat folders of crops named PID_CAMERA_*.jpg"
    options = [click.Option(["--min-camera"], type=int, default=1, show_default=True, help="Number of the first camera.")]

    def scan(self, root, settings):
        root = find_dataset_root(Path(root), "train")
        records, problems = [], []
        for split in ("train", "query", "gallery"):
            for path in sorted((root / split).glob("*.jpg")):
                match = NAME_RE.match(path.name)
                if not match:
                    problems.append((f"{split}/{path.name}", "name does not match PID_CAMERA_*.jpg"))
                    continue
                records.append(
                    ImageRecord(
                        path=f"{split}/{path.name}",
                        pid=int(match[1]),
                        camera=int(match[2]) - settings["min_camera"],
                        splits=(split,),
                        source=path,
                    )
                )
        return DatasetLayout("flat-folder", records, [EvalProtocol("standard")], problems=problems)


COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}


class TintGenerator:
    """Blend the clothing pixels towards one colour (``reidkit expand --generator tint``)."""

    # every setting with its default; reidkit refuses a user's value that does not fit settings_spec
    defaults = {"colour": "red", "amount": 0.5, "keep_shading": True, "noise": 0}
    settings_spec = {
        "colour": Setting(str, "colour the clothing is blended towards", choices=tuple(COLOURS)),
        "amount": Setting(float, "0: the source, 1: flat colour", min=0, max=1),
        "keep_shading": Setting(bool, "scale the colour by the source's brightness"),
        # 'noise' (grey levels of added noise) is not declared: it takes its default's type, an integer
    }
    needs_masks = True  # items carry the clothing mask
    model_id = None

    def __init__(self, settings, device):
        self.settings = settings

    def generate(self, items):
        s = self.settings
        out = []
        for item in items:
            image = item.image.astype(np.float32)
            colour = np.array(COLOURS[s["colour"]], np.float32)
            if s["keep_shading"]:
                colour = colour * (image.mean(axis=2, keepdims=True) / 255.0 + 0.5)
            tinted = (1 - s["amount"]) * image + s["amount"] * colour
            if s["noise"]:  # the item's own seed: the same image whatever else is in the batch
                tinted += np.random.default_rng(item.seed).normal(0, s["noise"], image.shape)
            out.append(np.where(item.mask[..., None], np.clip(tinted, 0, 255), image).astype(np.uint8))
        return out


@click.command("hello-example")
@click.argument("who", default="world")
def hello(who):
    """Say hello (proves plugin commands work)."""
    click.echo(f"hello {who} from reidkit-example")


@hookimpl
def register_adapters(register):
    register("flat-folder", FlatFolderAdapter)


@hookimpl
def register_generators(register):
    register("tint", TintGenerator)


@hookimpl
def register_commands(cli):
    cli.add_command(hello)
