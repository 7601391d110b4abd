"""A complete minimal reidkit plugin (the one docs/plugins.md walks through).

It registers an adapter for a flat folder of crops named PID_CAMERA_ANYTHING.jpg
(train/, query/, gallery/ subfolders) and a `hello-example` command.
"""
import re
from pathlib import Path

import click

from reidkit import hookimpl
from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord, find_dataset_root

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


@click.command("hello-example")
@click.argument("who", default="world")
def hello(who):
    """Say hello (proves plugin commands work)."""
    click.echo(f"hello {who} from reidkit-example")


@hookimpl
def register_adapters(register):
    register("flat-folder", FlatFolderAdapter)


@hookimpl
def register_commands(cli):
    cli.add_command(hello)
