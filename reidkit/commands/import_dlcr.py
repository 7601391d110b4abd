"""``reidkit import-dlcr RELEASE --store STORE``: DLCR's released generated images as a generated run of STORE."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say


@click.command("import-dlcr")
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--store", "store", required=True, type=click.Path(path_type=Path),
              help="Store adapted from the same benchmark ('reidkit adapt BENCHMARK').")
@click.option("--split", default="train", show_default=True,
              help="Store images the release holds variants of: train, or query (every query split) for test-time refinement.")
@click.option("--name", help="Run name. [default: dlcr-release-SPLIT]")
@click.option("--prefix", help="Path alignment RELEASE=STORE: release paths less the leading folders RELEASE, under STORE "
                                "in the store ('=rgb/train/'; a plain 'rgb/train/' means the same). [default: estimated]")
@click.option("--tiles", default=10, show_default=True, type=click.IntRange(1), help="Variants side by side per image (tiled layout).")
@click.option("--min-match", default=0.9, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Share of the release's image files that must match (and be usable), else refused.")
@click.option("--floor-width", is_flag=True, help="Accept widths that are not a multiple of --tiles: the remainder columns on "
                                                   "the right are dropped. [default: off: refused]")
@click.option("--layout", type=click.Choice(["auto", "tiled", "unpacked"]), default="auto", show_default=True,
              help="tiled: variants side by side plus a .txt; unpacked: VARIANT/PERSON/FILE folders.")
@click.option("--release-name", help="Recorded with the run, e.g. the dataset repository (ihaveamoose/DLCR). [default: none]")
@click.option("--release-revision", help="Recorded with the run, e.g. the repository commit the archives came from. [default: none]")
@click.option("--chunk-size", default=256, show_default=True, type=click.IntRange(1), help="Items per published chunk (the resume granularity).")
@json_option
def import_dlcr(release, store, split, name, prefix, tiles, min_match, floor_width, layout, release_name, release_revision,
               chunk_size, as_json):
    """Import DLCR's released generated images (extracted into RELEASE) as a generated run of STORE.

    Files are matched by path (one prefix alignment for the whole import),
    never by person label; each tile becomes an item (variant = its position,
    prompt = its .txt line); unpacked VARIANT/PERSON/FILE folders give one item
    per file. Safe to interrupt: rerun the same command to finish (docs/import.md).
    """
    from reidkit.generation.dlcr_release import import_release

    s = import_release(release, store, split=split, name=name, prefix=prefix, tiles=tiles, min_match=min_match,
                       floor_width=floor_width, layout=layout, release_name=release_name, release_revision=release_revision,
                       chunk_size=chunk_size, show_progress=not as_json)
    if as_json:
        emit(s)
        return
    a = s["alignment"]
    say(f"run '{s['run']}': {s['items']:,} items in the run ({s['written']:,} written now, {s['already_present']:,} "
        f"already there) from {s['imported_files']:,} of {s['files']:,} image files; {s['layout']} layout"
        + (f", variant folders {', '.join(s['variant_folders'])}" if s["variant_folders"] else f", {s['tiles']} tiles per image"),
        as_json)
    say(f"  alignment: --prefix '{a['option']}' ({'estimated' if a['estimated'] else 'given'}; {s['matched']:,} files matched)",
        as_json)
    odd = ", ".join(f"{k} {v}" for k, v in s["odd"].items()) or "none"
    ignored = ", ".join(f"{k} {v}" for k, v in s["ignored"].items()) or "none"
    say(f"  unmatched {s['unmatched']:,}; odd (skipped) {odd}; floored {s['floored']}; ignored {ignored}; "
        f"other files {s['other_files']}", as_json)
    say(f"  written to {s['path']} (details: part.json 'release')", as_json)
