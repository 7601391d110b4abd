"""``reidkit report``: one self-contained HTML page per training run, or one comparing several."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="HTML file to write [default: RUN/report.html for one run, report.html for several].")
@click.option("--store", "store_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The store the runs were trained on [default: the one each run's config.yaml names].")
@click.option("--eval/--no-eval", "evaluate", default=True, show_default=True,
              help="Evaluate each run's model on the store's protocols for the results table and CMC curves.")
@click.option("--device", default="cpu", show_default=True, help="torch device for the evaluation (cpu, cuda).")
@click.option("--sheet-rows", default=4, show_default=True, type=click.IntRange(1, 50),
              help="Originals shown beside their kept variants, per generated run.")
@click.option("--title", default=None, help="Page title [default: the runs' names].")
@json_option
def report(runs, out, store_path, evaluate, device, sheet_rows, title, as_json):
    """An HTML page for training RUN folder(s): settings, per-epoch curves, results per protocol, CMC curves,
    the generated images used, and provenance. Several runs: a comparison table and CMC curves on top."""
    from reidkit.reporting.collect import collect_run
    from reidkit.reporting.page import render
    from reidkit.store.atomic import atomic_output

    if device != "cpu":
        from reidkit.devices import check_device

        check_device(device)
    out = out or (runs[0] / "report.html" if len(runs) == 1 else Path("report.html"))
    if not out.parent.is_dir():
        raise click.ClickException(f"the folder of --out does not exist: {out.parent}")
    echo = lambda m: click.echo(m, err=True)  # noqa: E731
    summaries = [collect_run(r, store_path, evaluate=evaluate, device=device, sheet_rows=sheet_rows, echo=echo) for r in runs]
    page = render(summaries, title)
    with atomic_output(out, replace=True) as partial:
        Path(partial).write_text(page, encoding="utf-8")
    say(f"Wrote {out} ({len(page.encode()) / 1e6:.1f} MB; open it in a browser)", as_json)
    if as_json:
        metrics = ("rank1", "rank5", "rank10", "mAP", "mINP", "queries", "gallery")
        emit({"path": str(out), "runs": [{
            "name": s.name, "folder": str(s.path), "epochs_finished": int(s.log[-1]["epoch"]) if s.log else 0,
            "results": {p: {k: r[k] for k in metrics if k in r} for p, r in s.results.items()} if s.results else None,
            "flip": next(iter(s.results.values())).get("flip") if s.results else None,
            "best": s.best,  # training's best epoch, chosen on the test set (best.json), or None
            "generated": [g.name for g in s.generated], "notes": s.notes} for s in summaries]})
