"""Cluster Contrast's pieces (Dai et al.; alibaba/cluster-contrast-reid, as its README runs it): the Jaccard distance
of the k-reciprocal encoding over one set of features, DBSCAN on it, and the cluster memory.

- Jaccard distance: the reference's ``compute_jaccard_distance`` is k-reciprocal re-ranking's encoding with k-NN
  lists of k1 entries (the item itself included), weights exp(-(2 - 2 cos)) (no division by the row's maximum), query
  expansion over k2 neighbours, and no mixing with the original distance. It is computed by
  ``reidkit.evaluation.rerank.KReciprocal`` (one set, ``neighbours=k1``, ``scaled=False``, ``lambda_=0``, Euclidean
  distances of the L2-normalised features, whose square is 2 - 2 cos), a block of rows at a time: memory stays
  bounded, never N x N.
- DBSCAN (scikit-learn, ``metric="precomputed"``) reads only the pairs at most ``eps`` apart: a sparse graph of them
  gives the labels the dense matrix gives (pairs whose encodings share no entry are at distance exactly 1).
- The memory: one L2-normalised mean feature per cluster, rebuilt at every epoch's start; the loss is cross-entropy
  over q . c_k / temperature; after each optimiser step each sample of the batch, one at a time in batch order, moves
  its cluster's entry c <- m c + (1 - m) x and renormalises it (``hard``: only the batch's least similar member of
  each cluster moves it).

Heavy imports (torch, scikit-learn, scipy) are inside the functions.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError


def jaccard_blocks(features, k1: int = 30, k2: int = 6, device: str = "cpu", rows: int | None = None):
    """Yield ``(first row, block)``: rows of the N x N Jaccard distances of the k-reciprocal encoding over one set of
    L2-normalised ``features`` (N x D), as Cluster Contrast computes them; values clipped at 0 below (the reference's
    ``jaccard_dist[jaccard_dist < 0] = 0``)."""
    from reidkit.evaluation.rerank import KReciprocal

    feats = np.ascontiguousarray(features, dtype=np.float32)
    rr = KReciprocal(feats, None, k1, k2, 0.0, metric="euclidean", device=device, rows=rows, neighbours=k1, scaled=False)
    for start, block in rr.chunks():
        yield start, np.maximum(block, 0.0)


def jaccard_distance(features, k1: int = 30, k2: int = 6, device: str = "cpu") -> np.ndarray:
    """The whole N x N matrix of :func:`jaccard_blocks` (small sets: tests, inspection)."""
    blocks = [b for _, b in jaccard_blocks(features, k1, k2, device)]
    return np.concatenate(blocks, axis=0) if blocks else np.zeros((0, 0))


def neighbour_graph(features, eps: float, k1: int = 30, k2: int = 6, device: str = "cpu"):
    """A sparse N x N CSR matrix of the Jaccard distances at most ``eps`` (the diagonal included): all DBSCAN reads."""
    from scipy import sparse

    n = len(features)
    rows, cols, vals = [], [], []
    for start, block in jaccard_blocks(features, k1, k2, device):
        r, c = np.nonzero(block <= eps)
        rows.append(r + start)
        cols.append(c)
        vals.append(block[r, c])
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype)) if rows else (lambda parts, dtype: np.zeros(0, dtype))
    return sparse.csr_matrix((cat(vals, np.float64), (cat(rows, np.int64), cat(cols, np.int64))), shape=(n, n))


def dbscan_labels(features, eps: float = 0.6, min_samples: int = 4, k1: int = 30, k2: int = 6, device: str = "cpu") -> np.ndarray:
    """Pseudo labels of L2-normalised ``features``: DBSCAN (eps, min_samples, precomputed) on their Jaccard distances;
    -1 for an item in no cluster. Clusters are numbered as DBSCAN finds them (from the lowest item index)."""
    import warnings

    from sklearn.cluster import DBSCAN
    from sklearn.exceptions import EfficiencyWarning

    graph = neighbour_graph(features, eps, k1, k2, device)
    with warnings.catch_warnings():  # scikit-learn 1.3 warns that rows are by index, not by distance: on purpose
        warnings.simplefilter("ignore", EfficiencyWarning)
        return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(graph).astype(np.int64)


def camera_centred(features, cameras) -> np.ndarray:
    """``features`` with each camera's mean feature subtracted, rows L2-normalised again (a row equal to its camera's
    mean stays zero): clustering then sees what differs within a camera, not the camera's own cast and background."""
    feats = np.asarray(features, dtype=np.float64).copy()
    cameras = np.asarray(cameras)
    for c in np.unique(cameras):
        rows = cameras == c
        feats[rows] -= feats[rows].mean(axis=0)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return (feats / np.maximum(norms, 1e-12)).astype(np.float32)


def count_clusters(labels) -> int:
    labels = np.asarray(labels)
    return int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0


def cluster_centres(features, labels, num_clusters: int) -> np.ndarray:
    """``num_clusters`` x D: each cluster's mean feature, L2-normalised (items labelled -1 left out)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    keep = labels >= 0
    sums = np.zeros((num_clusters, features.shape[1]))
    np.add.at(sums, labels[keep], features[keep])
    means = sums / np.bincount(labels[keep], minlength=num_clusters)[:, None]
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)


def occurrence(labels):
    """For each row, how many earlier rows of the batch have its label (0 for a cluster's first sample)."""
    import torch

    n = len(labels)
    same = labels[:, None] == labels[None, :]
    earlier = torch.ones(n, n, dtype=torch.bool, device=labels.device).tril(-1)
    return (same & earlier).sum(1)


def momentum_update_(memory, x, labels, momentum: float):
    """Cluster Contrast's update, in place: for each row of ``x`` in order, ``memory[label] <- m memory[label] + (1 - m)
    x`` then renormalised. Rows of different clusters do not interact, so the rows that are each cluster's j-th sample
    are applied together, j = 0, 1, ...: the same result as one row at a time."""
    import torch

    labels = labels.long()
    if len(labels) == 0:
        return memory
    rank = occurrence(labels)
    for j in range(int(rank.max()) + 1):
        rows = torch.nonzero(rank == j).squeeze(1)
        idx = labels[rows]
        moved = momentum * memory[idx] + (1.0 - momentum) * x[rows]
        memory[idx] = moved / moved.norm(dim=1, keepdim=True)
    return memory


def hard_update_(memory, x, labels, momentum: float):
    """The hard variant (the reference's ``CM_Hard``): per cluster in the batch, only its member least similar to
    the cluster's entry (the first of equals) moves it: ``memory[c] <- m memory[c] + (1 - m) x_hard``, renormalised."""
    import torch

    labels = labels.long()
    if len(labels) == 0:
        return memory
    sims = (x * memory[labels]).sum(1)
    clusters = torch.unique(labels)
    # per cluster, the row of least similarity (ties: the earliest row)
    order = torch.argsort(sims, stable=True)
    first = torch.full((int(labels.max()) + 1,), len(labels), dtype=torch.long, device=labels.device)
    # scatter_reduce amin over positions in the sorted order: the first position of each cluster in it
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=order.device)
    first.scatter_reduce_(0, labels, position, reduce="amin")
    hardest = order[first[clusters]]
    moved = momentum * memory[clusters] + (1.0 - momentum) * x[hardest]
    memory[clusters] = moved / moved.norm(dim=1, keepdim=True)
    return memory


class ClusterMemory:
    """The cluster memory of one epoch (a float32 tensor on the training device, not a model weight): rebuilt from the
    features at every epoch's start; a checkpoint written inside an epoch (SIGTERM) holds it with the epoch's labels."""

    MODES = ("all", "hard")

    def __init__(self, temperature: float = 0.05, momentum: float = 0.1, mode: str = "all"):
        if mode not in self.MODES:
            raise ReidkitError(f"memory must be one of {', '.join(self.MODES)} (got {mode!r})")
        self.temperature, self.momentum, self.mode = float(temperature), float(momentum), mode
        self.features = None
        self.pending = None  # (normalised features, labels, valid rows) of the last step: the after_step hook applies it

    def reset(self, centres, device="cpu"):
        import torch

        self.features = torch.as_tensor(np.asarray(centres, np.float32), device=device).clone()
        self.pending = None

    def logits(self, q):
        """q . c_k / temperature for every cluster (float32; N x 0 before the first clustering)."""
        import torch

        if self.features is None:
            return q.new_zeros((len(q), 0))
        with torch.autocast(q.device.type, enabled=False):
            return q.float() @ self.features.t() / self.temperature

    def update(self, x, labels):
        """The memory moved by a batch's L2-normalised features ``x`` and their cluster ``labels``, in batch order."""
        import torch

        with torch.no_grad():
            (hard_update_ if self.mode == "hard" else momentum_update_)(self.features, x.float(), labels, self.momentum)
