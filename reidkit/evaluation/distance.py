"""Query x gallery distances, computed in chunks of queries so memory stays bounded.

cosine: 1 - <q, g> on L2-normalised features, clamped to [0, 2].
euclidean: sqrt(max(|q|^2 + |g|^2 - 2 <q, g>, 0)).
The matrix product runs in torch (CPU or GPU); blocks come back as numpy float32,
or stay on the device as torch tensors (``chunks(tensors=True)``, the default
off the CPU) so that ranking runs there too.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from reidkit.errors import ReidkitError

METRICS = ("cosine", "euclidean")
# Elements per distance block: bounds the block and the ranking work buffers (about 21 bytes an element).
DEFAULT_BLOCK_ELEMENTS = 1 << 25


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ReidkitError(f"unknown distance '{metric}' (expected one of: {', '.join(METRICS)})")
    return metric


def rows_per_chunk(n_cols: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    return max(1, block_elements // max(1, n_cols))


def device_block_elements(device) -> int:
    """Distance elements per block on ``device``: the CPU default, or what a GPU's free memory allows."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return DEFAULT_BLOCK_ELEMENTS
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(1 << 28, max(1 << 22, free // 64)))  # ranking a block needs about 24 bytes an element: keep a wide margin


def cosine_distance_(similarity):
    """1 - s clamped to [0, 2], in place: the one formula, so blocks and re-checked entries round alike."""
    return similarity.neg_().add_(1.0).clamp_(0.0, 2.0)


class DistanceComputer:
    """Holds the prepared gallery (normalised or with squared norms) and yields query blocks."""

    def __init__(self, gallery: np.ndarray, metric: str = "cosine", device: str = "cpu", dtype=None):
        import torch

        self.metric = check_metric(metric)
        self.device = torch.device(device)
        self.dtype = dtype or (torch.float64 if np.asarray(gallery).dtype == np.float64 else torch.float32)
        self.gallery = self._prepare(gallery)
        self.gallery_sq = (self.gallery * self.gallery).sum(1) if metric == "euclidean" else None

    def _prepare(self, x):
        import torch

        t = torch.as_tensor(np.ascontiguousarray(x)).to(self.device, self.dtype)
        if self.metric == "cosine":
            t = torch.nn.functional.normalize(t, dim=1)
        return t

    def _distances(self, q, q_sq, columns: slice, blas: str = "numpy"):
        """Distances of prepared rows ``q`` (squared norms ``q_sq`` for euclidean) to gallery[columns], a tensor."""
        d = self._products(q, self.gallery[columns], blas=blas)
        if self.metric == "cosine":
            cosine_distance_(d)
        else:
            d.mul_(-2.0).add_(q_sq[:, None]).add_(self.gallery_sq[columns][None, :]).clamp_(min=0.0).sqrt_()
        return d

    def _products(self, q, g, out=None, blas="numpy"):
        """q @ g.T; ``out`` (a contiguous tensor of that shape) receives it when given.

        blas="torch" keeps the CPU product in torch's thread pool: numpy's OpenBLAS threads spin after each call
        and slowed torch's reductions of the block that follow (1.6x at 256-d)."""
        import torch

        if self.device.type == "cpu" and blas == "numpy":  # numpy's BLAS ran these float products 10-20% faster than torch's here
            return torch.from_numpy(np.matmul(q.numpy(), g.numpy().T, out=None if out is None else out.numpy()))
        return torch.mm(q, g.T, out=out) if out is not None else q @ g.T

    def self_products(self, rows: slice, columns: slice, out=None):
        """Dot products among the prepared items (cosine: similarities; cosine_distance_ of them gives the distances)."""
        import torch

        with torch.no_grad():
            return self._products(self.gallery[rows], self.gallery[columns], out, blas=self.self_blas())

    def self_blas(self):
        # square blocks then reduced in torch: torch's product keeps one thread pool (1.5x faster whole k-NN pass at
        # 256-d, equal at 1024-d); above that the pass is product-bound and numpy's is faster (1.17x at 2048-d)
        return "numpy" if self.gallery.shape[1] > 1024 else "torch"

    def block_tensor(self, queries: np.ndarray, columns: slice = slice(None)):
        """Distances of a (small) set of queries to the gallery (or the ``columns`` slice of it), on the device."""
        import torch

        q = self._prepare(queries)
        with torch.no_grad():
            return self._distances(q, (q * q).sum(1) if self.metric == "euclidean" else None, columns)

    def self_block(self, rows: slice, columns: slice):
        """Distances among the prepared gallery's own items (rows x columns), on the device: re-ranking's k-NN pass."""
        import torch

        with torch.no_grad():
            return self._distances(self.gallery[rows], None if self.gallery_sq is None else self.gallery_sq[rows], columns, self.self_blas())

    def block(self, queries: np.ndarray, columns: slice = slice(None)) -> np.ndarray:
        """Distances of a (small) set of queries to the gallery (or the ``columns`` slice of it), numpy."""
        return self.block_tensor(queries, columns).cpu().numpy()

    def pairs(self, i: np.ndarray, j: np.ndarray, budget: int = 1 << 23) -> np.ndarray:
        """Distances of gallery items i[n] and j[n] (same formula as ``block``), in bounded pieces."""
        import torch

        out = np.empty(len(i), np.float64 if self.dtype == torch.float64 else np.float32)
        step = max(1, budget // self.gallery.shape[1])
        with torch.no_grad():
            for s in range(0, len(i), step):
                a = self.gallery[torch.as_tensor(i[s : s + step], device=self.device)]
                b = self.gallery[torch.as_tensor(j[s : s + step], device=self.device)]
                dot = (a * b).sum(1)
                if self.metric == "cosine":
                    d = cosine_distance_(dot)
                else:
                    d = ((a * a).sum(1) + (b * b).sum(1) - 2.0 * dot).clamp_(min=0.0).sqrt_()
                out[s : s + step] = d.cpu().numpy()
        return out

    def chunks(self, queries: np.ndarray, rows: int | None = None, tensors: bool | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first query row, block) over all queries.

        tensors: blocks as device tensors (ranked there) instead of numpy; default: off the CPU only.
        """
        tensors = self.device.type != "cpu" if tensors is None else tensors
        rows = rows or rows_per_chunk(self.gallery.shape[0], device_block_elements(self.device))
        for start in range(0, len(queries), rows):
            part = queries[start : start + rows]
            yield start, (self.block_tensor(part) if tensors else self.block(part))


def pairwise_distance(q_feats: np.ndarray, g_feats: np.ndarray, metric: str = "cosine", device: str = "cpu") -> np.ndarray:
    """The full (Nq x Ng) matrix: for small sets (tests, re-ranking references, DLCR refinement)."""
    computer = DistanceComputer(g_feats, metric, device)
    return np.concatenate([b for _, b in computer.chunks(q_feats, tensors=False)], axis=0) if len(q_feats) else np.zeros((0, len(g_feats)), np.float32)


def distance_chunks(q_feats, g_feats, metric="cosine", device="cpu", rows=None, tensors=None):
    """Yield (start, block) distance blocks of query rows: the memory-bounded path (device tensors off the CPU)."""
    yield from DistanceComputer(g_feats, metric, device).chunks(q_feats, rows, tensors)
