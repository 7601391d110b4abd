"""The sparse stages of k-reciprocal re-ranking (weights, query expansion, gallery index, Jaccard blocks) in torch.

The same steps as rerank.py's numpy code (``_expansion_sets``, ``KReciprocal._weights``, ``_expand``,
``_index_gallery``, ``block``), on the computer's device: ``KReciprocal`` uses them off the CPU, or on it with
``sparse_on_device=True`` (how the tests run them). Weights and min-sums are float64 as in the numpy code; the
Jaccard blocks keep the numpy code's bound (``_PAIR_BUDGET`` pairs a query chunk, chosen by ``chunks``), and are
returned as numpy arrays or, for evaluation, as device tensors that ranking.py scores where they are.
"""
from __future__ import annotations

import numpy as np


def _reciprocal(nn, rows):
    """mask[r, j]: item rows[r] is among the neighbours of its neighbour nn[rows[r], j]."""
    return (nn[nn[rows]] == rows[:, None, None]).any(-1)


def expansion_sets(knn, k1: int, rows):
    """Padded (len(rows) x W) sorted unique k-reciprocal expansion sets, -1 = empty slot (knn, rows: tensors)."""
    import torch

    f = knn[:, : k1 + 1]
    half = int(np.around(k1 / 2.0))  # numpy's rounding (half to even), as the numpy code and the dense reference
    h = knn[:, : half + 1]
    r_sets = torch.where(_reciprocal(f, rows), f[rows], -1)  # R(i), -1 = not reciprocal
    cand_safe = r_sets.clamp(min=0)
    h_recip = _reciprocal(h, cand_safe.reshape(-1)).reshape(r_sets.shape + (h.shape[1],))
    h_sets = torch.where(h_recip, h[cand_safe], -2)  # R(c, k1/2), -2 never matches R(i)
    h_size = h_recip.sum(-1)
    inter = (h_sets[..., None] == r_sets[:, None, None, :]).any(-1).sum(-1)
    keep = (r_sets >= 0) & (inter > 2.0 / 3 * h_size.double())  # float64: the numpy code's comparison exactly
    added = torch.where(keep[..., None] & h_recip, h_sets, -1).reshape(len(rows), -1)
    sets = torch.sort(torch.cat([r_sets, added], 1), 1).values
    dup = torch.zeros_like(sets, dtype=torch.bool)
    dup[:, 1:] = sets[:, 1:] == sets[:, :-1]
    return torch.sort(sets.masked_fill(dup, -1), 1).values


def expand_ranges(starts, stops):
    """For ranges [starts[r], stops[r]) (tensors): (r of each element, element), concatenated."""
    import torch

    lengths = stops - starts
    total = int(lengths.sum()) if len(lengths) else 0
    which = torch.repeat_interleave(torch.arange(len(starts), device=starts.device), lengths)
    first = torch.cumsum(lengths, 0) - lengths  # each range's first place in the output
    pos = torch.repeat_interleave(starts - first, lengths) + torch.arange(total, device=starts.device)
    return which, pos


class DeviceRows:
    """CSR rows as tensors: indptr (n+1), indices, data (float64)."""

    def __init__(self, indptr, indices, data):
        self.indptr, self.indices, self.data = indptr, indices, data

    @classmethod
    def from_coo(cls, n_rows, rows, cols, vals, n_cols):
        """Sum duplicates (unique keys, then index_add), sort by (row, col)."""
        import torch

        uniq, inverse = torch.unique(rows * n_cols + cols, sorted=True, return_inverse=True)
        data = torch.zeros(len(uniq), dtype=vals.dtype, device=vals.device).index_add_(0, inverse.reshape(-1), vals)
        indptr = torch.searchsorted(uniq // n_cols, torch.arange(n_rows + 1, device=uniq.device))
        return cls(indptr, uniq % n_cols, data)

    @classmethod
    def concat(cls, parts):
        import torch

        indptr, offset = [parts[0].indptr[:1] * 0], 0
        for p in parts:
            indptr.append(p.indptr[1:] + offset)
            offset += int(p.indptr[-1])
        return cls(torch.cat(indptr), torch.cat([p.indices for p in parts]), torch.cat([p.data for p in parts]))

    def gather(self, rows):
        """COO (position in rows, col, val) of the given rows (a tensor)."""
        which, pos = expand_ranges(self.indptr[rows], self.indptr[rows + 1])
        return which, self.indices[pos], self.data[pos]


def weights(computer, knn, knn_d2, row_max, k1: int, width: int, chunk: int = 4096) -> DeviceRows:
    """Weight rows exp(-d^2 / row max) over each item's expansion set, normalised (KReciprocal._weights)."""
    import torch

    n, device = len(knn), knn.device
    # the k-NN pass's d^2 of each row's neighbours, by (row, item): most expansion-set members are among them
    by_item = torch.argsort(knn, 1)
    listed = (torch.arange(n, device=device)[:, None] * n + knn.gather(1, by_item)).reshape(-1)  # increasing
    listed_d2 = knn_d2.gather(1, by_item).reshape(-1).double()
    parts = []
    for s in range(0, n, chunk):
        rows = torch.arange(s, min(n, s + chunk), device=device)
        sets = expansion_sets(knn[:, :width], k1, rows)
        r, c = torch.nonzero(sets >= 0, as_tuple=True)
        cols, i = sets[r, c], rows[r]
        at = torch.searchsorted(listed, i * n + cols).clamp_(max=len(listed) - 1)
        d2 = listed_d2[at]
        missing = torch.nonzero(listed[at] != i * n + cols).squeeze(1)
        if len(missing):  # the others: computed by the same formula as on the numpy path (few pairs)
            got = computer.pairs(i[missing].cpu().numpy(), cols[missing].cpu().numpy()).astype(np.float64) ** 2
            d2[missing] = torch.as_tensor(got, device=device)
        w = torch.exp(-(d2 / row_max[i]))
        total = torch.zeros(len(rows), dtype=torch.float64, device=device).index_add_(0, r, w)
        indptr = torch.cat([r.new_zeros(1), torch.cumsum(torch.bincount(r, minlength=len(rows)), 0)])
        parts.append(DeviceRows(indptr, cols, w / total[r]))
    return DeviceRows.concat(parts)


def expand(v: DeviceRows, nbrs, chunk: int = 8192) -> DeviceRows:
    """Query expansion: row i becomes the mean of the rows of its k2 nearest neighbours (nbrs: n x k2 tensor)."""
    import torch

    n, k2 = nbrs.shape
    parts = []
    for s in range(0, n, chunk):
        rows = torch.arange(s, min(n, s + chunk), device=nbrs.device)
        which, cols, vals = v.gather(nbrs[rows].reshape(-1))
        parts.append(DeviceRows.from_coo(len(rows), which // k2, cols, vals / k2, n))
    return DeviceRows.concat(parts)


def gallery_index(v: DeviceRows, g0: int, n: int):
    """Column-major view of the gallery rows of V, for the Jaccard min-sum: (col_ptr, col_rows, col_vals)."""
    import torch

    g_row, cols, vals = v.gather(torch.arange(g0, n, device=v.indptr.device))
    order = torch.argsort(cols, stable=True)
    col_ptr = torch.searchsorted(cols[order], torch.arange(n + 1, device=cols.device))
    return col_ptr, g_row[order], vals[order]


def sparse_stages(computer, knn: np.ndarray, knn_d2: np.ndarray, row_max: np.ndarray, k1: int, k2: int, width: int, g0: int):
    """(V, col_ptr, col_rows, col_vals, row_max tensor) on the computer's device from the k-NN pass's lists."""
    import torch

    device = computer.device
    knn_t = torch.as_tensor(knn, device=device)
    row_max_t = torch.as_tensor(row_max, dtype=torch.float64, device=device)
    v = weights(computer, knn_t, torch.as_tensor(knn_d2, device=device), row_max_t, k1, width)
    if k2 != 1:
        v = expand(v, knn_t[:, :k2])
    return (v, *gallery_index(v, g0, len(knn)), row_max_t)


def jaccard_pairs(rr, q_rows: np.ndarray) -> np.ndarray:
    """Number of (query entry, gallery entry) pairs each query row creates, float64 numpy (chunks' pair budget)."""
    import torch

    which, cols, _ = rr.v.gather(torch.as_tensor(q_rows, device=rr.v.indptr.device))
    per_entry = (rr.col_ptr[cols + 1] - rr.col_ptr[cols]).double()
    return torch.zeros(len(q_rows), dtype=torch.float64, device=per_entry.device).index_add_(0, which, per_entry).cpu().numpy()


def _min_sums(rr, start: int, stop: int):
    """(flat (query, gallery) positions sharing weight entries, sorted; their min-sums, float64) of queries start..stop."""
    import torch

    which, cols, vq = rr.v.gather(torch.arange(start, stop, device=rr.v.indptr.device))
    rep, pos = expand_ranges(rr.col_ptr[cols], rr.col_ptr[cols + 1])
    temp_min = torch.zeros((stop - start) * rr.ng, dtype=torch.float64, device=vq.device)
    temp_min.index_add_(0, which[rep] * rr.ng + rr.col_rows[pos], torch.minimum(vq[rep], rr.col_vals[pos]))
    # weights are positive, so a (query, gallery) pair shares entries exactly where its min-sum is > 0
    shared = torch.nonzero(temp_min).squeeze(1)
    return shared, temp_min[shared]


def block(rr, start: int, stop: int, tensors: bool = False):
    """KReciprocal.block on the device: final distances of queries start..stop to the whole gallery, numpy (or the
    device tensor itself with ``tensors``)."""
    import torch

    shared, temp_min = _min_sums(rr, start, stop)
    jaccard = 1.0 - temp_min / (2.0 - temp_min)
    if rr.lambda_ == 0:  # the original distances are weighted 0: final is the Jaccard distance alone
        final = torch.ones((stop - start, rr.ng), dtype=rr.computer.dtype, device=jaccard.device)
        final.view(-1)[shared] = jaccard.to(final.dtype)
        return final if tensors else final.cpu().numpy()
    d = rr._distances(start, stop)
    shared = shared.to(d.device)
    original = d.view(-1)[shared].double() ** 2 / rr.row_max_t.to(d.device)[start + shared // rr.ng]
    # the scale computed as on the numpy path (numpy's float64 division), then cast to the distances' precision
    scale = torch.as_tensor(rr.lambda_ / rr.row_max[start:stop], dtype=d.dtype, device=d.device)
    final = d.square_().mul_(scale[:, None]).add_(1.0 - rr.lambda_)
    final.view(-1)[shared] = ((1.0 - rr.lambda_) * jaccard.to(d.device) + rr.lambda_ * original).to(final.dtype)
    return final if tensors else final.cpu().numpy()
