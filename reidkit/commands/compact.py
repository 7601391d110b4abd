"""``reidkit compact STORE --run NAME``: rewrite a finished generated run into one chunk file, atomically."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--run", "run_name", required=True, help="Generated run to compact (reidkit info STORE lists them).")
@json_option
def compact(store, run_name, as_json):
    """Rewrite the generated run named by --run of STORE into one chunk file (same items, same order, same bytes).

    Safe to interrupt: rerun the same command to finish. Refused while the run is being written.
    """
    from reidkit.store.compact import compact_run

    result = compact_run(store, run_name)
    if as_json:
        emit(result)
        return
    if result["rewritten"]:
        say(f"compacted run '{run_name}': {result['items']:,} items, {result['chunks_before']:,} chunk files "
            f"({result['bytes_before'] / 1e6:.1f} MB) -> {result['chunks_after']} ({result['bytes_after'] / 1e6:.1f} MB)",
            as_json)
    else:
        say(f"run '{run_name}' is already one chunk file ({result['items']:,} items)"
            + (f"; removed {result['removed_files']} replaced chunk files an interrupted compaction left" if result["removed_files"] else ""),
            as_json)
