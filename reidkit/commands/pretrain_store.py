"""``reidkit pretrain-store``: one identity-labelled store from generated runs (Diffusion-ReID pre-training data)."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option


@click.command("pretrain-store")
@click.option("--source", "sources", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Store whose generated runs become identities (repeat for several; ids are namespaced per source).")
@click.option("--run", "runs", multiple=True, help="Use only this run of each source (repeatable; default: every run).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Pre-training store to write (e.g. diff-person.h5).")
@click.option("--eval-store", "eval_stores", multiple=True, type=click.Path(path_type=Path),
              help="A store you will evaluate on later: sources of the same dataset may not share its query/gallery identities.")
@click.option("--allow-overlap", is_flag=True, help="Build even if the leakage guard finds an overlap (recorded in the store).")
@click.option("--include-rejected", is_flag=True, help="Also use images a filter rejected (default: kept images only).")
@click.option("--with-real", is_flag=True, help="Also add the sources' real training images of the same identities.")
@click.option("--force", is_flag=True, help="Replace an existing --out store.")
@json_option
def pretrain_store(sources, runs, out, eval_stores, allow_overlap, include_rejected, with_real, force, as_json):
    """Build a pre-training store from generated runs, with a leakage guard.

    \b
    Example:
      reidkit pretrain-store --source market.h5 --run diffusion-reid-train-s0 --eval-store market.h5 --out pre.h5
      reidkit train pre.h5 --plugin pretrain --out runs/pre
    """
    from reidkit.pretrain_store import collect, write_pretrain_store
    from reidkit.progress import progress_bar
    from reidkit.store.writer import check_output

    check_output(out, force)  # before reading anything: a wrong --out fails at once
    runs = list(dict.fromkeys(runs))  # '--source a --run r --source b --run r' names run r once, not twice
    records, reports, identities = collect(list(sources), runs or None, eval_stores=list(eval_stores), allow_overlap=allow_overlap,
                               include_rejected=include_rejected, with_real=with_real)
    options = {"eval_stores": [str(p) for p in eval_stores], "include_rejected": include_rejected, "with_real": with_real,
               "allowed": allow_overlap}
    with progress_bar(len(records), "pretrain-store") as update:
        summary = write_pretrain_store(out, records, reports, identities, options, force=force, progress=lambda n: update(completed=n))
    for r in reports:
        line = f"{r.name}: {r.images} generated + {r.real_images} real images of {r.identities} identities from runs {', '.join(r.runs)}"
        if r.rejected_skipped:
            line += f"; {r.rejected_skipped} rejected left out"
        click.echo(line, err=True)
        for other, pids in r.overlap.items():
            click.echo(f"WARNING: {len(pids)} identities overlap the query/gallery of {other} (recorded in the store)", err=True)
    click.echo(f"Wrote {summary.path} ({summary.images} images, fingerprint {summary.fingerprint})", err=True)
    if as_json:
        emit({"path": str(summary.path), "images": summary.images, "fingerprint": summary.fingerprint,
              "sources": [{"name": r.name, "images": r.images, "real_images": r.real_images, "identities": r.identities,
                           "runs": list(r.runs), "rejected_skipped": r.rejected_skipped,
                           "overlap": {str(k): len(v) for k, v in r.overlap.items()}} for r in reports]})
