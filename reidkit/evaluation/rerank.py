"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) from k-nearest-neighbour lists only.

Gives the distances of the standard dense implementation (torchreid's / the
authors' ``re_ranking``: original = d^2 scaled by each row's maximum over all
query + gallery items; k-reciprocal sets with k1, their k1/2 expansion under
the 2/3 rule, Gaussian weights, query expansion over k2 neighbours, Jaccard
distance from the min-sum of weights; final = (1 - lambda) * jaccard +
lambda * original), but never builds an (Nq + Ng)^2 matrix:

1. one pass over square blocks (on and above the diagonal) of the symmetric
   (Nq + Ng) x (Nq + Ng) matrix keeps each row's k nearest neighbours
   (k = max(k1 + 1, k2)), their d^2 and the row's maximum; for float32 cosine
   distances the blocks stay dot products, screened by 64-entry segment
   maxima against a per-row similarity threshold with a rounding margin;
2. the weight vectors V are sparse (at most (k1 + 1) * (k1 / 2 + 2) entries
   a row), built from those lists, their d^2, and a few pairwise distances;
3. query expansion and the Jaccard min-sum run on the sparse rows;
4. final distances are produced for query chunks x the whole gallery (dense
   where jaccard is exactly 1, the pairs sharing weight entries from the
   min-sum), and fed straight to ranking (``chunks``), or gathered
   (``k_reciprocal``). Their query x gallery distances are those of the
   k-NN pass, kept during it (its blocks cover that part of the matrix)
   for as many queries as a memory bound allows (``cache_bytes``), and
   computed again for the others.

Differences from the dense code, by design: neighbour ties are broken by the
lower item index (the dense code's argsort order among exactly equal
distances is unspecified); a row whose maximum distance is 0 is left unscaled
instead of dividing by zero.

Cluster Contrast's Jaccard distance (its ``compute_jaccard_distance``, used to
cluster one set of training features) is the same encoding with three
differences, each a parameter here: one set that is both the queries and the
gallery (``g_feats=None``); k-NN lists of ``neighbours`` = k1 entries, the item
itself included, instead of k1 + 1; weights exp(-d^2) of the squared distance
itself (``scaled=False``: no division by the row's maximum; with
``metric="euclidean"`` on L2-normalised features d^2 = 2 - 2 cos); and
``lambda_=0`` (no mixing with the original distance). The defaults keep the
standard code's results.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from reidkit.evaluation.distance import DistanceComputer, cosine_distance_, rows_per_chunk

_PAIR_BUDGET = 1 << 23  # (query entry, gallery entry) pairs per Jaccard chunk
_KNN_BLOCK = 4096  # k-NN pass block side on the CPU: 2048 ran 1.8x slower here, 6144 and 8192 no faster (64 MB blocks)
_KNN_BLOCK_GPU = 8192
_CACHE_BYTES = 4 << 30  # default bound of the kept query x gallery part: MSMT17's 11,659 x 82,161 float32 (3.6 GiB) fits


_SEGMENT = 64  # entries of a row a screen looks at as one: the segment's maximum similarity says whether any can enter
_SEGMENT_DOWN = 16  # the same down a column (measured: 16-row maxima run faster than 64-row ones, and reads are strided)


def _knn_pass(computer: DistanceComputer, feats: np.ndarray, k: int, rows: int | None = None, progress=None, kept=None):
    """k nearest neighbours (by d^2, ties by index) and max d^2 of every row: the similarity screen for float32
    cosine distances, the distance-block pass otherwise (same lists, same maxima). ``kept``: a _QueryGallery that
    takes the query x gallery part of every block (None: none kept)."""
    if _screens(computer):
        return _knn_pass_screened(computer, len(feats), k, rows, progress, kept)
    return _knn_pass_blocks(computer, feats, k, rows, progress, kept)


def _screens(computer: DistanceComputer) -> bool:
    """Whether the k-NN pass is the similarity screen (its blocks dot products) rather than distance blocks."""
    import torch

    return computer.metric == "cosine" and computer.dtype == torch.float32


class _QueryGallery:
    """The k-NN pass's query x gallery blocks, kept in host memory so the Jaccard blocks need no second product.

    Holds queries 0..rows (as many as the memory bound allows) x the whole gallery, as the pass's dot products
    (``products``: the similarity screen; cosine_distance_ gives the distances) or its distances."""

    def __init__(self, rows: int, g0: int, n: int, dtype, products: bool):
        self.data = np.empty((rows, n - g0), dtype)
        self.g0, self.products = g0, products

    def keep(self, block, s, e, s2, e2):
        """Copy what block (items s..e x s2..e2) and, off the diagonal, its transpose cover of the kept part."""
        self._copy(block, s, e, s2, e2)
        if s2 != s:  # the block also stands for its transpose (one set: queries are gallery items too)
            self._copy(block.T, s2, e2, s, e)

    def _copy(self, block, s, e, s2, e2):
        import torch

        stop, first = min(e, len(self.data)), max(s2, self.g0)
        if s < stop and first < e2:
            torch.from_numpy(self.data)[s:stop, first - self.g0 : e2 - self.g0].copy_(block[: stop - s, first - s2 :])

    def distances(self, start, stop):
        """Distances of kept queries start..stop to the gallery, a new tensor (the kept ones stay: chunks may rerun)."""
        import torch

        d = torch.from_numpy(self.data[start:stop]).clone()
        return cosine_distance_(d) if self.products else d


def _cache_bound(cache_bytes: int | None) -> int:
    """``cache_bytes``, or by default 4 GiB but at most half the memory available now (Linux's MemAvailable)."""
    if cache_bytes is not None:
        return max(0, int(cache_bytes))
    try:
        with open("/proc/meminfo") as fh:
            available = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return _CACHE_BYTES
    return min(_CACHE_BYTES, available // 2)


def _query_gallery(computer: DistanceComputer, nq: int, g0: int, cache_bytes: int | None = None):
    """A _QueryGallery for the first queries that fit ``cache_bytes`` (see _cache_bound), or None: off the CPU
    (a GPU's second product costs little, and keeping it would cost host copies) or where no query fits."""
    import torch

    if computer.device.type != "cpu":
        return None
    n = len(computer.gallery)
    dtype = np.float64 if computer.dtype == torch.float64 else np.float32
    row_bytes = max(1, (n - g0) * np.dtype(dtype).itemsize)
    rows = min(nq, _cache_bound(cache_bytes) // row_bytes)
    return _QueryGallery(rows, g0, n, dtype, _screens(computer)) if rows > 0 and n > g0 else None


def _threshold(far):
    """Lowest similarity s whose cosine d^2 = round(round(1 - s)^2) can be at or below ``far`` (float32, rounded down).

    1 - s rounds by at most 2^-23 (|1 - s| <= 2) and the square by a relative 2^-24; the margins below are 8x
    those, so no entry that can enter is screened out (the few extra ones are re-checked exactly)."""
    import torch

    far = far.double()
    t = 1.0 - far.sqrt() * (1.0 + 2.0**-20) - 2.0**-20
    t = torch.where(far >= 4.0, float("-inf"), t)  # d^2 = 4 is the clamp: every s at or below -1 has it
    t32 = t.float()
    return torch.where(t32.double() > t, torch.nextafter(t32, torch.tensor(float("-inf"), device=t32.device)), t32)


def _at_or_above(sims, thr, transposed=False, dense_above=6):
    """(row, column, value) of the entries at or above their row's threshold.

    The rows are those of ``sims``, or its columns when ``transposed``. Rows are screened a segment at a time by
    the segments' maxima, taken along the contiguous axis (64 entries of a row, or 16 down a column: faster than
    a reduction over the transposed view, and fewer strided reads per passing segment), and only passing
    segments are read; when more than ``dense_above`` segments a row pass (a row block's first blocks), one
    comparison of the whole block and a scan of its mask 8 bytes at a time is cheaper."""
    import torch

    n_rows, n_cols = sims.shape
    width = _SEGMENT_DOWN if transposed else _SEGMENT
    if (n_rows if transposed else n_cols) % width or sims.numel() % 8:
        return _dense_at_or_above(sims, thr, transposed)
    if transposed:  # segments of `width` rows of one column: maxima (n_rows / width, n_cols)
        top = sims.unflatten(0, (n_rows // width, width)).amax(1)
        seg = torch.nonzero((top >= thr[None, :]).view(-1)).squeeze(1)
        if len(seg) > dense_above * len(thr) * (_SEGMENT // width):
            return _dense_at_or_above(sims, thr, transposed)
        row, first = seg % n_cols, (seg // n_cols) * width
        at = (first * n_cols + row)[:, None] + torch.arange(width, device=seg.device) * n_cols
    else:  # segments of `width` entries of one row: maxima (n_rows, n_cols / width)
        top = sims.unflatten(1, (n_cols // width, width)).amax(2)
        seg = torch.nonzero((top >= thr[:, None]).view(-1)).squeeze(1)
        if len(seg) > dense_above * len(thr):
            return _dense_at_or_above(sims, thr, transposed)
        row, first = seg // (n_cols // width), (seg % (n_cols // width)) * width
        at = (row * n_cols + first)[:, None] + torch.arange(width, device=seg.device)
    vals = sims.view(-1)[at]
    hit = torch.nonzero((vals >= thr[row][:, None]).view(-1)).squeeze(1)
    which, offset = hit // width, hit % width
    return row[which], first[which] + offset, vals.view(-1)[hit]


def _dense_at_or_above(sims, thr, transposed):
    """_at_or_above by one comparison of the whole block; the mask is scanned as 8-byte words, most of them zero."""
    import torch

    mask = sims >= (thr[None, :] if transposed else thr[:, None])
    if mask.numel() % 8:
        flat = torch.nonzero(mask.view(-1)).squeeze(1)
    else:
        words = torch.nonzero(mask.view(-1).view(torch.int64)).squeeze(1)
        h, b = torch.nonzero(mask.view(-1, 8)[words], as_tuple=True)
        flat = words[h] * 8 + b
    row, col = flat // sims.shape[1], flat % sims.shape[1]
    vals = sims.reshape(-1)[flat]
    return (col, row, vals) if transposed else (row, col, vals)


def _keys(s, cols):
    """Sort keys of entries: (bits of d^2, index); d^2 >= 0, so its float32 bits order like its value."""
    import torch

    d2 = cosine_distance_(s.clone()).square_()
    return (d2.view(torch.int32).to(torch.int64) << 32) | cols


def _by_row(rows, n_rows, *columns):
    """Entries grouped by row (``rows`` ascending) laid out as (n_rows x widest row) matrices: one per (values, fill)."""
    import torch

    counts = torch.bincount(rows, minlength=n_rows)
    slot = torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    width = int(counts.max())
    out = []
    for values, fill in columns:
        laid = torch.full((n_rows, width), fill, dtype=values.dtype, device=values.device)
        laid[rows, slot] = values
        out.append(laid)
    return out


class _Lists:
    """One row block's k nearest so far ((R x k) keys, unordered), its screen, its minimum similarities, and entries waiting to join."""

    NONE = (0x7F800000 << 32) | 0xFFFFFFFF  # +inf distance: an empty slot, sorts last

    def __init__(self, n_rows, k, device):
        import torch

        self.k = k
        self.kept = torch.full((n_rows, k), self.NONE, dtype=torch.int64, device=device)
        self.thr = torch.full((n_rows,), float("-inf"), device=device)
        self.min_s = torch.full((n_rows,), float("inf"), device=device)
        self.waiting, self.count = [], 0

    def add(self, rows, keys):
        self.waiting.append((rows, keys))
        self.count += len(rows)
        if self.count >= len(self.kept):  # about one new entry a row: merge, so the threshold tightens
            self.merge()

    def merge(self):
        import torch

        if not self.waiting:
            return
        rows, keys = (torch.cat(t) for t in zip(*self.waiting))
        self.waiting, self.count = [], 0
        hit, rows = torch.unique(rows, return_inverse=True)
        order = torch.argsort(rows)
        rows, keys = rows[order], keys[order]
        (extra,) = _by_row(rows, len(hit), (keys, self.NONE))
        kept = torch.topk(torch.cat([self.kept[hit], extra], 1), self.k, dim=1, largest=False, sorted=False).values
        self.kept[hit] = kept
        self.thr[hit] = _threshold((kept.amax(1) >> 32).to(torch.int32).view(torch.float32))


def _block_products(computer: DistanceComputer, spans, order):
    """(a, b, dot products of row blocks a x b) in ``order``, into one reused buffer (no page faults per block)."""
    import torch

    size = max(e - s for s, e in spans)
    buffer = torch.empty(size * size, device=computer.device)
    for a, b in order:
        (s, e), (s2, e2) = spans[a], spans[b]
        yield a, b, computer.self_products(slice(s, e), slice(s2, e2), buffer[: (e - s) * (e2 - s2)].view(e - s, e2 - s2))


@contextlib.contextmanager
def _torch_threads(n: int):
    """torch's CPU threads set to n (0: unchanged) inside the block.

    numpy's BLAS threads spin for a while after each product: torch's work right after one ran faster on one
    thread beside them than on two contending with them (the k-NN pass at 2048-d: 8%; Jaccard blocks: 10-20%)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _knn_pass_screened(computer: DistanceComputer, n: int, k: int, rows: int | None = None, progress=None, kept=None):
    """The k-NN pass for float32 cosine distances (``_screened``), with torch's threads set for the product's BLAS."""
    with _torch_threads(1 if computer.device.type == "cpu" and computer.self_blas() == "numpy" else 0):
        return _screened(computer, n, k, rows, progress, kept)


def _screened(computer: DistanceComputer, n: int, k: int, rows: int | None = None, progress=None, kept=None):
    """The k-NN pass for cosine distances, screening similarities instead of transforming every distance.

    Same square blocks of the symmetric matrix (on and above the diagonal, each used for its rows and, transposed,
    its columns' rows), but a block stays a block of dot products s: d^2 = round(1 - s)^2 falls as s rises, so a
    row's maximum d^2 is that of its minimum s, and only entries at or above a similarity threshold (from the row's
    farthest kept entry, with a margin for rounding) can enter its list. Rows are screened a segment of 64 entries
    at a time by the segment's maximum; the few entries that pass get their exact d^2 and join the row's list by
    (d^2, index). Each row block first takes its own diagonal block's k nearest, so no screen starts open.
    ``kept`` (a _QueryGallery, or None) takes each block's query x gallery dot products.
    """
    import torch

    k = min(k, n)
    device = computer.device
    step = rows or (_KNN_BLOCK_GPU if device.type == "cuda" else _KNN_BLOCK)
    spans = [(s, min(n, s + step)) for s in range(0, n, step)]
    lists = [_Lists(e - s, k, device) for s, e in spans]
    knn = np.empty((n, k), np.int64)
    knn_d2 = np.empty((n, k), np.float32)
    row_max = np.empty(n, np.float64)

    def offer(rows_of, sims, offset, transposed=False):
        """rows_of's lists take the entries of sims (their rows, or columns if transposed, x items offset..) that pass."""
        torch.minimum(rows_of.min_s, sims.amin(0 if transposed else 1), out=rows_of.min_s)
        r, c, v = _at_or_above(sims, rows_of.thr, transposed)
        if len(r):
            rows_of.add(r, _keys(v, c + offset))

    def finish(a):
        s, e = spans[a]
        done, lists[a] = lists[a], None
        done.merge()
        keys = np.sort(done.kept.cpu().numpy(), axis=1)
        knn[s:e] = keys & 0xFFFFFFFF
        knn_d2[s:e] = (keys >> 32).astype(np.int32).view(np.float32)
        row_max[s:e] = cosine_distance_(done.min_s.clone()).square_().cpu().numpy()
        if progress:
            progress(e - s)

    # diagonal blocks first (each row block's own k-th nearest opens its screen), then the blocks above them
    order = [(a, a) for a in range(len(spans))] + [(a, b) for a in range(len(spans)) for b in range(a + 1, len(spans))]
    for a, b, sims in _block_products(computer, spans, order):
        (s, e), (s2, e2) = spans[a], spans[b]
        if kept is not None:
            kept.keep(sims, s, e, s2, e2)
        if a == b:
            if e - s >= k:
                kth = torch.topk(sims, k, dim=1, sorted=False).values.amin(1)
                lists[a].thr = _threshold(cosine_distance_(kth).square_())
            offer(lists[a], sims, s)
            lists[a].merge()
            continue
        offer(lists[a], sims, s2)
        offer(lists[b], sims, s, transposed=True)
        if b == len(spans) - 1:
            finish(a)
    finish(len(spans) - 1)
    row_max[row_max == 0] = 1.0
    return knn, row_max, knn_d2


def _knn_pass_blocks(computer: DistanceComputer, feats: np.ndarray, k: int, rows: int | None = None, progress=None,
                     kept=None):
    """k nearest neighbours (by d^2, ties by index) and max d^2 of every row, from square blocks of the symmetric matrix.

    Only blocks on and above the diagonal are computed: each serves its rows, and transposed its
    columns' rows, so the matrix product is done half (square blocks also run the product faster than
    tall ones). Each row keeps its k nearest so far by (d^2, index) and its maximum; only the entries
    of a new block at or below its farthest kept one can enter (a comparison, not a top-k over the
    whole block), so ties at the k-th place are resolved by index exactly, however many. A row block
    is final once its own row of blocks is done. Runs on the computer's device; only the lists come back.
    ``kept`` (a _QueryGallery, or None) takes each block's query x gallery distances.
    """
    import torch

    n = len(feats)
    k = min(k, n)
    step = rows or (_KNN_BLOCK_GPU if computer.device.type == "cuda" else _KNN_BLOCK)
    spans = [(s, min(n, s + step)) for s in range(0, n, step)]
    best = [None] * len(spans)  # (values, indices) of each row block's nearest so far
    peak = [None] * len(spans)
    knn = np.empty((n, k), np.int64)
    knn_d2 = np.empty((n, k), np.float64 if computer.dtype == torch.float64 else np.float32)
    row_max = np.empty(n, np.float64)

    def keep_nearest(b, vals, idx):
        """Block b's rows keep their k nearest by (d^2, index) among the kept ones and the new entries."""
        if best[b] is not None:
            vals, idx = torch.cat([best[b][0], vals], 1), torch.cat([best[b][1], idx], 1)
        if vals.shape[1] > k and vals.dtype == torch.float32:
            # d^2 >= 0, so its bits order like its value: one int64 key (bits, index) per entry, one top-k
            key = torch.topk((vals.view(torch.int32).to(torch.int64) << 32) | idx, k, dim=1, largest=False, sorted=False).values
            vals, idx = (key >> 32).to(torch.int32).view(torch.float32), key & 0xFFFFFFFF
        elif vals.shape[1] > k:
            by_index = torch.argsort(idx, dim=1, stable=True)
            vals, idx = vals.gather(1, by_index), idx.gather(1, by_index)
            by_value = torch.argsort(vals, dim=1, stable=True)[:, :k]  # stable: equal distances stay in index order
            vals, idx = vals.gather(1, by_value), idx.gather(1, by_value)
        best[b] = (vals, idx)

    def merge(b, d2, offset, transposed):
        """Rows of block b against the columns offset.. of d2 (or of d2.T: rows of b are d2's columns)."""
        axis = 0 if transposed else 1
        low, top = d2.amin(axis), d2.amax(axis)
        peak[b] = top if peak[b] is None else torch.maximum(peak[b], top)
        if best[b] is not None and best[b][0].shape[1] == k:
            far = best[b][0].amax(1)  # only entries at or below a row's farthest kept one can enter
        elif d2.shape[axis] >= k:  # first entries of these rows: the block's own k-th
            far = torch.topk(d2.T if transposed else d2, k, dim=1, largest=False, sorted=False).values.amax(1)
        else:
            far = torch.full((d2.shape[1 - axis],), float("inf"), dtype=d2.dtype, device=d2.device)
        hit = torch.nonzero(low <= far).squeeze(1)  # rows of b with any entry to keep: few once lists settle
        if len(hit) == 0:
            return
        if 2 * len(hit) < len(far):
            part = d2[:, hit] if transposed else d2[hit]
        else:
            hit, part = None, d2
        lim = far if hit is None else far[hit]
        r, c = (part <= (lim[None, :] if transposed else lim[:, None])).nonzero(as_tuple=True)
        vals = part[r, c]
        row, col = (c, r) if transposed else (r, c)
        if hit is not None:
            row = hit[row]
        if transposed:  # nonzero lists entries by d2's row: regroup them by block b's row
            order = torch.argsort(row, stable=True)
            row, col, vals = row[order], col[order], vals[order]
        keep_nearest(b, *_by_row(row, len(far), (vals, float("inf")), (col + offset, n)))  # padding sorts last

    for a, (s, e) in enumerate(spans):
        for b in range(a, len(spans)):
            s2, e2 = spans[b]
            d = computer.self_block(slice(s, e), slice(s2, e2))
            if kept is not None:
                kept.keep(d, s, e, s2, e2)
            d2 = d.square_()
            merge(a, d2, s2, False)
            if b > a:
                merge(b, d2, s, True)
        vals, idx = (t.cpu().numpy() for t in best[a])
        order = np.lexsort((idx, vals), axis=-1)[:, :k]  # by distance, then by index
        knn[s:e] = np.take_along_axis(idx, order, axis=1)
        knn_d2[s:e] = np.take_along_axis(vals, order, axis=1)
        row_max[s:e] = peak[a].cpu().numpy()
        best[a] = peak[a] = None
        if progress:
            progress(e - s)
    row_max[row_max == 0] = 1.0
    return knn, row_max, knn_d2


def _reciprocal(nn: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """mask[r, j]: item rows[r] is among the neighbours of its neighbour nn[rows[r], j]."""
    return (nn[nn[rows]] == rows[:, None, None]).any(-1)


def _expansion_sets(knn: np.ndarray, k1: int, rows: np.ndarray):
    """Padded (len(rows) x W) sorted unique k-reciprocal expansion sets, -1 = empty slot."""
    f = knn[:, : k1 + 1]
    half = int(np.around(k1 / 2.0))
    h = knn[:, : half + 1]
    recip = _reciprocal(f, rows)
    r_sets = np.where(recip, f[rows], -1)  # R(i), -1 = not reciprocal
    cand = r_sets
    cand_safe = np.maximum(cand, 0)
    h_recip = _reciprocal(h, cand_safe.ravel()).reshape(cand.shape + (h.shape[1],))
    h_sets = np.where(h_recip, h[cand_safe], -2)  # R(c, k1/2), -2 never matches R(i)
    h_size = h_recip.sum(-1)
    inter = (h_sets[..., None] == r_sets[:, None, None, :]).any(-1).sum(-1)
    keep = (cand >= 0) & (inter > 2.0 / 3 * h_size)
    added = np.where(keep[..., None] & h_recip, h_sets, -1).reshape(len(rows), -1)
    sets = np.sort(np.concatenate([r_sets, added], axis=1), axis=1)
    dup = np.zeros_like(sets, dtype=bool)
    dup[:, 1:] = sets[:, 1:] == sets[:, :-1]
    sets[dup] = -1
    return np.sort(sets, axis=1)


def expand_ranges(starts, stops):
    """For ranges [starts[r], stops[r]): (r of each element, element), concatenated."""
    lengths = stops - starts
    which = np.repeat(np.arange(len(starts)), lengths)
    pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(starts.dtype), lengths) + np.arange(lengths.sum())
    return which, pos


class SparseRows:
    """CSR rows: indptr (n+1), indices, data."""

    def __init__(self, indptr, indices, data):
        self.indptr, self.indices, self.data = indptr, indices, data

    @classmethod
    def from_coo(cls, n_rows, rows, cols, vals, n_cols):
        """Sum duplicates, sort by (row, col)."""
        keys = rows.astype(np.int64) * n_cols + cols
        uniq, inverse = np.unique(keys, return_inverse=True)
        data = np.bincount(inverse.ravel(), weights=vals, minlength=len(uniq))
        r = uniq // n_cols
        indptr = np.searchsorted(r, np.arange(n_rows + 1))
        return cls(indptr, (uniq % n_cols).astype(np.int64), data)

    @classmethod
    def concat(cls, parts):
        indptr = [np.zeros(1, np.int64)]
        offset = 0
        for p in parts:
            indptr.append(p.indptr[1:] + offset)
            offset += p.indptr[-1]
        return cls(np.concatenate(indptr), np.concatenate([p.indices for p in parts]), np.concatenate([p.data for p in parts]))

    def gather(self, rows):
        """COO (position in rows, col, val) of the given rows."""
        which, pos = expand_ranges(self.indptr[rows], self.indptr[rows + 1])
        return which, self.indices[pos], self.data[pos]


class KReciprocal:
    """Re-ranked query x gallery distances, produced a query chunk at a time."""

    def __init__(self, q_feats, g_feats, k1=20, k2=6, lambda_=0.3, metric="cosine", device="cpu", rows=None,
                 progress=None, neighbours=None, scaled=True, cache_bytes=None, sparse_on_device=None):
        """``g_feats=None``: one set, its items both the queries and the gallery (N x N distances).
        ``neighbours``: entries of each k-NN list the k-reciprocal sets are read from, the item itself included
        (None: k1 + 1, the standard code's; Cluster Contrast's: k1). ``scaled``: original distances divided by
        their row's maximum (the standard code), or not (Cluster Contrast's weights exp(-d^2)).

        ``cache_bytes``: memory bound of the query x gallery distances kept from the k-NN pass for the final
        blocks (Nq x Ng in the features' precision: float32 at MSMT17 scale, 11,659 x 82,161, is 3.6 GiB). The
        first queries that fit are kept and the others' distances computed again, as all are with 0. None: 4 GiB,
        at most half the memory available when the pass starts (Linux's MemAvailable). Kept on the CPU only, in
        host memory: on a GPU the second product costs little and every distance is computed again. With
        ``lambda_=0`` the original distances do not enter the result, and none are kept or computed.

        ``sparse_on_device``: the sparse stages (weights, expansion, gallery index, Jaccard blocks) in torch on the
        computer's device (rerank_device.py; True on the CPU tests that code), or in numpy on the host (False).
        None: on the device off the CPU, numpy on it."""
        self.k1, self.k2, self.lambda_ = int(k1), int(k2), float(lambda_)
        one_set = g_feats is None
        feats = np.asarray(q_feats) if one_set else np.concatenate([np.asarray(q_feats), np.asarray(g_feats)], axis=0)
        self.n = len(feats)
        self.nq = len(q_feats)
        self.g0 = 0 if one_set else self.nq  # the gallery's first item
        self.ng = self.n - self.g0
        self.computer = DistanceComputer(feats, metric, device)
        self.rows = rows
        width = self.k1 + 1 if neighbours is None else int(neighbours)
        self.kept = _query_gallery(self.computer, self.nq, self.g0, 0 if self.lambda_ == 0 else cache_bytes)
        knn, self.row_max, knn_d2 = _knn_pass(self.computer, feats, max(width, self.k2), rows, progress, self.kept)
        if not scaled:
            self.row_max = np.ones(self.n)  # original distances as they are: d^2 itself
        self.width = width
        self.sparse_on_device = self.computer.device.type != "cpu" if sparse_on_device is None else bool(sparse_on_device)
        if self.sparse_on_device:  # torch tensors on the device: V, its gallery column index, row maxima
            from reidkit.evaluation import rerank_device

            self.v, self.col_ptr, self.col_rows, self.col_vals, self.row_max_t = rerank_device.sparse_stages(
                self.computer, knn, knn_d2, self.row_max, self.k1, self.k2, width, self.g0)
        else:
            v = self._weights(knn, knn_d2)
            if self.k2 != 1:
                v = self._expand(v, knn[:, : self.k2])
            self.v = v
            self._index_gallery()
        self.feats = feats

    def _weights(self, knn, knn_d2, chunk=4096) -> SparseRows:
        # the k-NN pass's d^2 of each row's neighbours, by (row, item): most expansion-set members are among them
        by_item = np.argsort(knn, axis=1)
        listed = (np.arange(self.n)[:, None] * self.n + np.take_along_axis(knn, by_item, axis=1)).ravel()  # increasing
        listed_d2 = np.take_along_axis(knn_d2, by_item, axis=1).ravel().astype(np.float64)
        parts = []
        for s in range(0, self.n, chunk):
            rows = np.arange(s, min(self.n, s + chunk))
            sets = _expansion_sets(knn[:, : self.width], self.k1, rows)
            r, c = np.nonzero(sets >= 0)
            cols = sets[r, c]
            i = rows[r]
            at = np.minimum(np.searchsorted(listed, i * self.n + cols), len(listed) - 1)
            found = listed[at] == i * self.n + cols
            d2 = listed_d2[at]
            d2[~found] = self.computer.pairs(i[~found], cols[~found]).astype(np.float64) ** 2  # the others: computed
            orig = d2 / self.row_max[i]
            w = np.exp(-orig)
            total = np.bincount(r, weights=w, minlength=len(rows))
            indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=len(rows)))])
            parts.append(SparseRows(indptr, cols, w / total[r]))
        return SparseRows.concat(parts)

    def _expand(self, v: SparseRows, nbrs, chunk=8192) -> SparseRows:
        """Query expansion: row i becomes the mean of the rows of its k2 nearest neighbours."""
        parts = []
        k2 = nbrs.shape[1]
        for s in range(0, self.n, chunk):
            rows = np.arange(s, min(self.n, s + chunk))
            which, cols, vals = v.gather(nbrs[rows].ravel())
            parts.append(SparseRows.from_coo(len(rows), which // k2, cols, vals / k2, self.n))
        return SparseRows.concat(parts)

    def _index_gallery(self):
        """Column-major view of the gallery rows of V, for the Jaccard min-sum."""
        g = self.v.gather(np.arange(self.g0, self.n))
        g_row, cols, vals = g
        order = np.argsort(cols, kind="stable")
        self.col_ptr = np.searchsorted(cols[order], np.arange(self.n + 1))
        self.col_rows = g_row[order]
        self.col_vals = vals[order]

    def _jaccard_pairs(self, q_rows):
        """Number of (query entry, gallery entry) pairs each query row creates."""
        if self.sparse_on_device:
            from reidkit.evaluation import rerank_device

            return rerank_device.jaccard_pairs(self, q_rows)
        which, cols, _ = self.v.gather(q_rows)
        per_entry = self.col_ptr[cols + 1] - self.col_ptr[cols]
        return np.bincount(which, weights=per_entry, minlength=len(q_rows))

    def block(self, start: int, stop: int, tensors: bool = False):
        """Final distances of queries start..stop to the whole gallery (numpy; ``tensors``: a torch tensor, on the
        device where the sparse stages run there).

        final = (1 - lambda) * jaccard + lambda * original. A query and a gallery item whose weight rows share no
        entry (most pairs) have jaccard exactly 1: those entries are (1 - lambda) + lambda * d^2 / max, computed
        over the whole block in the features' precision; the pairs that share entries get their Jaccard distance
        from the min-sum, in float64, and replace them."""
        import torch

        if self.sparse_on_device:
            from reidkit.evaluation import rerank_device

            return rerank_device.block(self, start, stop, tensors)

        q_rows = np.arange(start, stop)
        which, cols, vq = self.v.gather(q_rows)
        rep, pos = expand_ranges(self.col_ptr[cols], self.col_ptr[cols + 1])
        # weights are positive, so a (query, gallery) pair shares entries exactly where its min-sum is > 0
        temp_min = np.bincount(which[rep] * self.ng + self.col_rows[pos], weights=np.minimum(vq[rep], self.col_vals[pos]),
                               minlength=len(q_rows) * self.ng)
        shared = np.flatnonzero(temp_min)  # flat (query, gallery) positions in the block, sorted
        temp_min = temp_min[shared]
        jaccard = 1.0 - temp_min / (2.0 - temp_min)
        if self.lambda_ == 0:  # the original distances are weighted 0: final is the Jaccard distance alone
            final = np.ones((len(q_rows), self.ng), np.float64 if self.computer.dtype == torch.float64 else np.float32)
            final.reshape(-1)[shared] = jaccard
            return torch.from_numpy(final) if tensors else final
        d = self._distances(start, stop)
        at = torch.as_tensor(shared, device=d.device)
        original = d.view(-1)[at].cpu().numpy().astype(np.float64) ** 2 / self.row_max[start + shared // self.ng]
        scale = torch.as_tensor(self.lambda_ / self.row_max[start:stop], dtype=d.dtype, device=d.device)
        final = d.square_().mul_(scale[:, None]).add_(1.0 - self.lambda_).cpu().numpy()
        final.reshape(-1)[shared] = (1.0 - self.lambda_) * jaccard + self.lambda_ * original
        return torch.from_numpy(final) if tensors else final

    def _distances(self, start: int, stop: int):
        """Distances of queries start..stop to the gallery, a new tensor: the k-NN pass's where kept, else computed."""
        import torch

        held = min(stop, len(self.kept.data)) if self.kept is not None else start
        parts = [self.kept.distances(start, held)] if start < held else []
        if max(start, held) < stop:
            parts.append(self.computer.block_tensor(self.feats[max(start, held) : stop], slice(self.g0, self.n)))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def chunks(self, rows: int | None = None, tensors: bool | None = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first query, final distances block) with bounded memory.

        tensors: blocks as torch tensors (ranked where they are: on the device when the sparse stages run there)
        instead of numpy; None: tensors when the sparse stages run off the CPU (evaluation's choice)."""
        if tensors is None:
            tensors = self.sparse_on_device and self.computer.device.type != "cpu"
        cap = rows or self.rows or rows_per_chunk(self.ng, 1 << 24)
        pairs = np.cumsum(self._jaccard_pairs(np.arange(self.nq))) if self.nq else np.zeros(0)
        start = 0
        while start < self.nq:
            # as many queries as fit in the pair budget (at least one), at most cap
            done = pairs[start - 1] if start else 0.0
            stop = int(np.searchsorted(pairs, done + _PAIR_BUDGET, side="right"))
            stop = min(max(stop, start + 1), start + cap, self.nq)
            # its product is numpy's on the CPU; with kept products, one thread also ran faster here (1.2x, shared machine)
            with _torch_threads(1 if self.computer.device.type == "cpu" else 0):
                block = self.block(start, stop, tensors)
            yield start, block
            start = stop


def k_reciprocal(q_feats, g_feats, k1=20, k2=6, lambda_=0.3, metric="cosine", device="cpu", rows=None,
                 cache_bytes=None) -> np.ndarray:
    """Re-ranked (Nq x Ng) distances; for large sets prefer ``KReciprocal(...).chunks()``."""
    rr = KReciprocal(q_feats, g_feats, k1, k2, lambda_, metric, device, rows, cache_bytes=cache_bytes)
    blocks = [b for _, b in rr.chunks()]
    return np.concatenate(blocks, axis=0) if blocks else np.zeros((0, len(g_feats)))
