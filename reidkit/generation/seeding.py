"""Per-item seeds, target-outfit draws and shards: all pure functions of the run seed.

Nothing here depends on batch size, shard count or what ran before, which is
what makes a sharded or resumed run equal one uninterrupted run.
"""
from __future__ import annotations

import os

import numpy as np

from reidkit.errors import ReidkitError

_SEED_STREAM = 0  # SeedSequence stream ids: one per kind of random choice
_TARGET_STREAM = 1


def item_seed(run_seed: int, source_index: int, variant: int) -> int:
    """63-bit seed of one (image, variant): fits torch.Generator.manual_seed and int64 columns."""
    state = np.random.SeedSequence([int(run_seed), _SEED_STREAM, int(source_index), int(variant)]).generate_state(1, np.uint64)
    return int(state[0] & np.uint64(2**63 - 1))


def target_key(run_seed: int, source_index: int, variant: int, own_key: str, bank_keys: list[str]) -> str:
    """The variant-th target outfit of an image: a seeded permutation of the bank minus its own outfit.

    Variants of one image take distinct outfits until the bank is exhausted
    (DLCR samples without replacement), then cycle.
    """
    eligible = [k for k in bank_keys if k != own_key]
    if not eligible:
        raise ReidkitError(f"the clothing bank has no outfit other than '{own_key}' to draw targets from")
    order = np.random.default_rng([int(run_seed), _TARGET_STREAM, int(source_index)]).permutation(len(eligible))
    return eligible[int(order[variant % len(eligible)])]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None stays None."""
    if text is None or text == "":
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ReidkitError(f"--shard: expected I/N (e.g. 0/4), got '{text}'") from None
    if n < 1 or not 0 <= i < n:
        raise ReidkitError(f"--shard: need 0 <= I < N, got {i}/{n}")
    return i, n


def launcher_shard() -> tuple[int, int] | None:
    """The rank's shard when started by torchrun / accelerate launch (RANK and WORLD_SIZE set)."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None or int(world) <= 1:
        return None
    return int(rank), int(world)


def shard_items(keys: list[tuple[int, int]], shard: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Round-robin over the run's item list: disjoint, deterministic, balanced."""
    if shard is None:
        return list(keys)
    i, n = shard
    return [k for j, k in enumerate(keys) if j % n == i]


def item_groups(keys: list, size: int) -> list[list]:
    """The run's items in fixed groups of ``size`` by plan order: the generator always receives one whole group,
    so an item's batch mates (and so its bytes) never depend on the shard, the resume point or what is already done."""
    return [list(keys[j : j + size]) for j in range(0, len(keys), max(1, int(size)))]


def shard_groups(groups: list[list], shard: tuple[int, int] | None) -> list[list]:
    """Round-robin over whole groups (with groups of one: over items, as ``shard_items``)."""
    if shard is None:
        return list(groups)
    i, n = shard
    return [g for j, g in enumerate(groups) if j % n == i]


def shard_tag(shard: tuple[int, int] | None) -> str:
    """Chunk-name tag: each shard publishes chunks under its own tag, so shards never collide."""
    return "all" if shard is None else f"shard{shard[0]}of{shard[1]}"
