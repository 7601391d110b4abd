"""``reidkit info STORE``: splits, ids, images, cameras, outfits, protocols, masks and runs."""
from __future__ import annotations

import json
from pathlib import Path

import click


def print_summary(store, summary=None):
    from rich.console import Console
    from rich.table import Table

    from reidkit.store.summary import store_summary

    s = summary or store_summary(store)
    console = Console()
    table = Table(title=f"{s['path']}  ({s['dataset']}, {s['images']} images, schema v{s['schema_version']})")
    for col in ("split", "ids", "images", "cameras", "outfits", "junk", "distractors"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, row in s["splits"].items():
        table.add_row(name, *(f"{row[k]:,}" for k in ("ids", "images", "cameras", "outfits", "junk", "distractors")))
    console.print(table)
    if all(row["cameras"] == row["images"] for row in s["splits"].values() if row["images"]):
        # LaST's convention, and a custom dataset without cameras: cross-camera rules then exclude only the image itself
        console.print("cameras: each image is its own camera (the dataset gives none)")
    if s["protocols"]:
        proto = Table(title="evaluation protocols")
        for col in ("name", "query", "gallery", "rule", "cameras (q / g)", "gallery", "unit"):
            proto.add_column(col)
        for p in s["protocols"]:
            cams = f"{p['query_cameras'] or 'all'} / {p['gallery_cameras'] or 'all'}"
            sampling = p["gallery_sampling"] + (f" x{p['trials']}" if p["gallery_sampling"] != "all" else "")
            proto.add_row(p["name"], p["query"], p["gallery"], p["rule"], cams, sampling, p["unit"])
        console.print(proto)
    if s["masks"]:
        console.print("masks: " + ", ".join(f"{k} ({v} images)" for k, v in s["masks"].items()))
    if s["runs"]:
        console.print("generated runs: " + ", ".join(f"{k} ({v['kept']}/{v['items']} kept, {v['generator']})" for k, v in s["runs"].items()))
    if s["skipped"]:
        console.print(f"[yellow]{len(s['skipped'])} bad items were skipped when adapting[/yellow]")


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per split under 'splits'.")
@click.option("--preview", type=click.Path(path_type=Path), help="Write a PNG grid of sample crops (one row per person).")
@click.option("--preview-ids", default=8, show_default=True, help="Persons in the preview.")
def info(store, as_json, preview, preview_ids):
    """Summarise STORE: per split ids, images, cameras, outfits, junk and distractors."""
    from reidkit.store import open_store
    from reidkit.store.summary import store_summary

    opened = open_store(store)
    summary = store_summary(opened)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_summary(opened, summary)
    if preview:
        from reidkit.store.preview import write_preview

        write_preview(opened, preview, n_ids=preview_ids)
        click.echo(f"Wrote preview {preview}", err=True)
