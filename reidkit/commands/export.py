"""``reidkit export``: a trained run's feature extractor for other runtimes (ONNX)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="A 'reidkit train' run folder.")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="Export format.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="File to write [default: RUN/model.onnx].")
@click.option("--flip/--no-flip", default=None,
              help="Average with the mirrored image inside the graph. [default: the run's test_flip, as 'reidkit eval': "
                   "cal yes, baseline no]")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(17), help="ONNX opset version.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Compare onnxruntime's features with PyTorch's on a random batch (needs onnxruntime).")
@json_option
def export(checkpoint, fmt, out, flip, opset, verify, as_json):
    """Export RUN's feature extractor: normalised N x 3 x H x W images in, N x D features out (dynamic batch)."""
    from reidkit.errors import ReidkitError
    from reidkit.onnx_export import compare_with_torch, export_onnx

    if flip is None:  # the features 'reidkit eval --checkpoint' extracts
        from reidkit.evaluation.inference import run_test_flip
        from reidkit.training.checkpoint import read_config

        flip = run_test_flip(read_config(checkpoint))
    out = out or checkpoint / "model.onnx"
    if not out.parent.is_dir():
        raise ReidkitError(f"the folder of --out does not exist: {out.parent}")
    meta = export_onnx(checkpoint, out, flip=flip, opset=opset)
    say(f"Wrote {out}: {meta['input']} -> {meta['output']}", as_json)
    diff = None
    if verify and importlib.util.find_spec("onnxruntime") is not None:
        diff = compare_with_torch(checkpoint, out, flip=flip)
        if diff > 1e-4:
            raise ReidkitError(f"onnxruntime's features differ from PyTorch's by {diff:.2e} (more than 1e-4): do not use {out}")
        say(f"verified: onnxruntime's features equal PyTorch's within {diff:.1e}", as_json)
    if as_json:
        emit({"path": str(out), "format": fmt, "opset": opset, "flip": flip, "metadata": meta, "verified_max_difference": diff})
