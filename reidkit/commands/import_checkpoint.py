"""``reidkit import-checkpoint``: a trained CAL/DLCR, BoT, fast-reid or torchreid checkpoint as a reidkit run."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say

FORMAT_CHOICES = ("cal", "bot", "fastreid", "torchreid")


@click.command("import-checkpoint")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default=None,
              help="The project that saved it: cal (CAL and DLCR), bot (reid-strong-baseline), fastreid, torchreid. "
                   "[default: detected from its keys]")
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The run folder to write (new, or an empty folder).")
@click.option("--store", "store", default=None, type=click.Path(path_type=Path, dir_okay=False),
              help="The store of the dataset it was trained on: recorded with its fingerprint, and the label map taken "
                   "from its training persons when their number equals the classifier's. [default: none]")
@click.option("--pooling", type=click.Choice(["avg", "max", "maxavg", "gem"]), default=None,
              help="The source's pooling where its weights do not show it (CAL with a 2048-wide neck: avg or max; "
                   "fast-reid's GlobalMaxPool: max). [default: from the weights]")
@click.option("--last-stride", "last_stride", type=click.Choice(["1", "2"]), default=None,
              help="The source's last stride (weights do not show it). [default: the project's: 1; torchreid's resnet50: 2]")
@click.option("--height", type=click.IntRange(min=8), default=None,
              help="Test-time input height. [default: the project's: CAL 384, others 256]")
@click.option("--width", type=click.IntRange(min=8), default=None,
              help="Test-time input width. [default: the project's: CAL 192, others 128]")
@json_option
def import_checkpoint(checkpoint, fmt, out, store, pooling, last_stride, height, width, as_json):
    """Write a reidkit run folder (config.yaml + model.safetensors) from CHECKPOINT, a .pth/.pth.tar of another project.

    Read with torch.load(weights_only=True): tensors and plain values only, nothing in the file is run. The run
    reproduces the source model's test features (its input size, resize filter and flip); 'reidkit eval STORE
    --checkpoint RUN', 'reidkit export', 'reidkit train STORE --init-from RUN' and refinement read it. Anything
    not imported is listed (config.yaml's imported_from); a checkpoint reidkit cannot hold whole is refused.
    """
    from reidkit.importing import import_checkpoint as run_import

    result = run_import(checkpoint, out, fmt=fmt, store_path=store, pooling=pooling,
                        last_stride=int(last_stride) if last_stride else None, height=height, width=width)
    if as_json:
        emit(result)
        return
    b, t = result["backbone"], result["test"]
    neck = "BN neck" if b.get("bnneck") else "no BN neck"
    embed = f", {b['embedding_dim']}-d embedding" if b.get("embedding_dim") else ""
    say(f"imported {result['format']} checkpoint {checkpoint} -> {out}: strategy {result['strategy']}, resnet50 (last "
        f"stride {b['last_stride']}, {b['pooling']} pooling{embed}, {neck}), {result['num_classes']} persons; test "
        f"{t['height']}x{t['width']}, {t['resize']}, {'flip-averaged' if t['test_flip'] else 'no flip'}", as_json)
    say(f"label map: {result['label_map']}", as_json)
    for item in result["dropped"]:
        say(f"dropped: {item['key']} ({item['why']})", as_json)
    for key in result["missing"]:
        say(f"missing: {key} (not in the checkpoint: left at reidkit's initialisation)", as_json)
    for note in result["notes"]:
        say(f"note: {note}", as_json)
    say(f"evaluate: reidkit eval {store or 'STORE'} --checkpoint {out}", as_json)
