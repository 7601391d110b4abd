"""``reidkit show``: look at a generated run: originals next to their variants, prompts under them."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--run", "run_name", help="Generated run to show (without it: the store's runs are listed).")
@click.option("--out", type=click.Path(path_type=Path), help="Write a PNG contact sheet here. [default: RUN.png]")
@click.option("--html", "html_dir", type=click.Path(path_type=Path), help="Also write an HTML page with every detail into this folder.")
@click.option("--masks", is_flag=True, help="Show each original's clothing mask too.")
@click.option("--sources", type=click.IntRange(1), default=8, show_default=True, help="Original images to show.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which originals (seeded choice).")
@json_option
def show(store, run_name, out, html_dir, masks, sources, seed, as_json):
    """Contact sheet of STORE's run RUN: one row per original, its variants with their prompts."""
    from reidkit.generation.contact_sheet import choose_sources, gather, run_bank, write_html, write_sheet
    from reidkit.store import open_store

    opened = open_store(store)
    if run_name is None:
        runs = opened.runs()
        if not runs:
            raise click.UsageError(f"{store} has no generated run to show yet (make one with 'reidkit expand')")
        listed = ", ".join(f"{name} ({len(r)} items)" for name, r in runs.items())
        raise click.UsageError(f"which run? choose one of {store}'s runs with --run: {listed}")
    run = opened.run(run_name)
    try:
        rows = gather(opened, run, choose_sources(run, sources, seed), masks)
    except OSError as exc:  # h5py's message for a damaged chunk file names no file
        from reidkit.errors import StoreError

        raise StoreError(f"generated run '{run_name}' cannot be read: a chunk file under {run.dir} is damaged or truncated "
                         f"({str(exc).splitlines()[0]}); expected the chunks 'reidkit expand' wrote (rerun it under a new "
                         "--name)") from None
    sheet = write_sheet(rows, out or Path(f"{run_name}.png"))
    say(f"contact sheet: {sheet} ({len(rows)} originals, {sum(len(r) for r in rows)} cells)", as_json)
    kept = run.kept()
    say(f"run {run_name}: {int(kept.sum())}/{len(kept)} items kept", as_json)
    bank = run_bank(opened, run)
    if bank is not None:
        failed = f", {bank.parse_failures} model replies did not parse" if bank.parse_failures else ""  # none for templates
        say(f"clothing bank '{bank.name}': {len(bank.entries)} outfits{failed}", as_json)
    page = write_html(rows, run, html_dir, bank) if html_dir else None
    if page is not None:
        say(f"html: {page}", as_json)
    if as_json:
        emit({"run": run_name, "sheet": str(sheet), "html": str(page) if page else None, "originals": len(rows),
              "cells": sum(len(r) for r in rows), "items": len(kept), "kept": int(kept.sum()),
              "bank": {"name": bank.name, "outfits": len(bank.entries), "parse_failures": bank.parse_failures} if bank else None})
