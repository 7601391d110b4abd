"""``reidkit mask``: compute clothing masks once and keep them beside the store."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.json_output import emit, json_option, say


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--masker", default="heuristic", show_default=True, help="Masker plugin (heuristic, parser, ...).")
@click.option("--mask-set", "mask_sets", multiple=True, help="Masker setting key=value (repeatable), e.g. model=DIR, preset=atr.")
@click.option("--name", help="Name of the mask set. [default: the masker's name]")
@click.option("--split", "splits", multiple=True, help="Split(s) to mask (repeatable); 'all' for every image. [default: train]")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--limit", type=click.IntRange(1), help="Only the first N images of each split.")
@json_option
def mask(store, masker, mask_sets, name, splits, batch_size, device, limit, as_json):
    """Label clothing pixels of STORE's images with MASKER; resumable, computed once.

    `reidkit expand --masker NAME` uses these masks (and computes missing ones itself).
    """
    import numpy as np

    from reidkit.generation.contracts import key_values
    from reidkit.generation import run_mask
    from reidkit.store import open_store

    opened = open_store(store)
    chosen = list(splits) or ["train"]
    if "all" in chosen:
        indices = np.arange(len(opened))
    else:
        indices = np.concatenate([opened.split(s)[:limit] for s in chosen])
    overrides = key_values(mask_sets, "--mask-set")
    # run_mask takes the mask set's writer lock: a second 'mask' (or an expand) writing the same set is refused meanwhile
    mask_set = run_mask(opened, masker, overrides, indices, device=device, batch_size=batch_size, mask_name=name)
    covered = sum(int(i) in mask_set for i in np.unique(indices))
    share = np.mean([mask_set.clothing_mask(i).mean() for i in np.unique(indices)[:: max(1, len(indices) // 50)]])
    say(f"mask set '{mask_set.name}': {covered}/{len(np.unique(indices))} images covered, "
        f"clothing labels {', '.join(mask_set.clothing)}; clothing covers {share:.1%} of pixels on average", as_json)
    if as_json:
        emit({"mask_set": mask_set.name, "masker": masker, "images": int(len(np.unique(indices))), "covered": int(covered),
              "labels": list(mask_set.labels), "clothing": list(mask_set.clothing), "clothing_share": float(share)})
