"""``reidkit audit STORE --run RUN --model TRAINED_RUN``: what a generated run really contains (docs/audit.md).

Parses, checks, calls :func:`reidkit.evaluation.audit.audit_run`, writes: nothing is written before every input
is checked, and each file appears whole (audit.json last: the report reads it).
"""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say


@click.command()
@click.argument("store", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--run", "run_name", required=True, help="The generated run to audit (a name 'reidkit show STORE' lists).")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="A trained run folder ('reidkit train' or 'reidkit import-checkpoint', as 'reidkit eval --checkpoint' takes): "
                   "its features measure identity.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for audit.json, items.csv and the two PNGs [default: STORE.parts/audits/RUN, where "
                   "'reidkit report' finds it].")
@click.option("--device", default="cpu", show_default=True, help="torch device of the feature extraction (cpu, cuda).")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1), help="Images per model call.")
@click.option("--flip/--no-flip", "flip", default=None,
              help="Average each image's features with its mirror's. [default: the model's test_flip]")
@click.option("--select", type=click.Choice(["last", "best"]), default="last", show_default=True,
              help="The model's last epoch, or best/ (kept by --eval-every).")
@click.option("--worst", default=12, show_default=True, type=click.IntRange(0),
              help="Items in the contact sheet of the worst-kept identities.")
@json_option
def audit(store, run_name, model_dir, out, device, batch_size, flip, select, worst, as_json):
    """Measure generated run RUN of STORE with a trained model: identity kept (against real images of the person and
    other persons), change inside and outside the clothing mask, diversity, what the filters kept."""
    from reidkit.errors import ReidkitError
    from reidkit.evaluation import audit as lib
    from reidkit.store import open_store

    opened = open_store(store)
    run = opened.run(run_name)  # a name this store has not: one line listing its runs
    lib.check_run(run)
    config = lib.check_model(model_dir, select)
    out = Path(out) if out is not None else lib.default_audit_dir(opened, run_name)
    if not out.parent.is_dir() and out != lib.default_audit_dir(opened, run_name):
        raise ReidkitError(f"the folder of --out does not exist: {out.parent}")
    if out.exists() and not out.is_dir():
        raise ReidkitError(f"--out {out} is a file; expected a folder")
    if device != "cpu":
        from reidkit.devices import check_device

        check_device(device)
    from reidkit.evaluation.inference import load_reid_model

    model = load_reid_model(model_dir, device, flip=flip, select=select)
    if config.get("store_fingerprint") != opened.fingerprint:
        say(f"Note: {model_dir} was trained on another store; its features still measure this store's persons", True)
    result = lib.audit_run(opened, run, model, model_path=model_dir, worst=worst, batch_size=batch_size,
                           progress=not as_json)

    # every file rendered before the first is written
    title = f"{run_name}: identity kept ({Path(model_dir).resolve().name})"
    histogram = lib.histogram_png(result, title)
    sheet = lib.worst_sheet(result, opened, run)
    files = {"json": out / lib.AUDIT_JSON, "items": out / lib.ITEMS_CSV, "histogram": out / lib.HISTOGRAM_PNG,
             "worst": out / lib.WORST_PNG if sheet is not None else None}
    summary = {**result.summary, "files": {k: str(v) if v else None for k, v in files.items()}}
    write_outputs(out, files, lib.items_csv(result.rows), histogram, sheet, summary)
    for line in result.lines:
        say(line, as_json)
    say(f"Wrote {out} ({', '.join(p.name for p in files.values() if p)})", as_json)
    if as_json:
        emit(summary)


def write_outputs(out: Path, files: dict, table: str, histogram: bytes, sheet, summary: dict):
    """Each file atomically, audit.json last (a reader that finds it finds the rest); a stale worst sheet removed."""
    import json

    import cv2

    from reidkit.store.atomic import atomic_output

    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(files["items"], replace=True) as partial:
        Path(partial).write_text(table, encoding="utf-8")
    with atomic_output(files["histogram"], replace=True) as partial:
        Path(partial).write_bytes(histogram)
    if sheet is not None:
        ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        with atomic_output(files["worst"], replace=True) as partial:
            Path(partial).write_bytes(data.tobytes())
    else:
        from reidkit.evaluation.audit import WORST_PNG

        (out / WORST_PNG).unlink(missing_ok=True)
    with atomic_output(files["json"], replace=True) as partial:
        Path(partial).write_text(json.dumps(summary, indent=2, sort_keys=False), encoding="utf-8")
