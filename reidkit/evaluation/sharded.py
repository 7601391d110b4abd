"""Test features extracted by every rank of a torchrun/accelerate job, each its share, then gathered.

Rank r extracts rows r, r + W, r + 2W, ... of the evaluation's index (balanced whatever the order of the
store), the rows are gathered on every rank in index order, and one rank ranks and scores them: extraction,
the costly part, is split W ways and no rank waits through another's whole evaluation. Works with gloo
(CPU) and nccl (GPU) process groups; a single process extracts everything itself.
"""
from __future__ import annotations

import numpy as np


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def extract_sharded(extract, index, device: str = "cpu") -> np.ndarray:
    """``extract(indices) -> N x D`` on this rank's share of ``index``; every rank returns all rows, in index order."""
    index = np.asarray(index)
    rank, world = rank_and_world()
    if world == 1:
        return extract(index)
    import torch
    import torch.distributed as dist

    local = np.asarray(extract(index[rank::world]), dtype=np.float32)
    # shapes first: a rank with no rows (fewer rows than ranks) still has to learn D and join the gather
    shape = torch.tensor([local.shape[0], local.shape[1] if local.ndim == 2 and local.size else 0], device=device)
    shapes = [torch.zeros_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    rows = [int(s[0]) for s in shapes]
    dim = max(int(s[1]) for s in shapes)
    padded = torch.zeros(max(rows), dim, dtype=torch.float32, device=device)  # all_gather needs equal shapes
    if rows[rank]:
        padded[: rows[rank]] = torch.from_numpy(local).to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    out = np.empty((len(index), dim), np.float32)
    for r, part in enumerate(parts):
        out[r::world] = part[: rows[r]].cpu().numpy()
    return out
