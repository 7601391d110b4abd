"""CMC, mAP and mINP from query x gallery distances, exact and vectorised, one query chunk at a time.

Only the ranks of a query's positives matter. For a chunk of queries, the
rank of each positive is counted, not sorted: distances become monotone
integer keys (the IEEE-754 bit pattern, made order-preserving), a per-row
histogram of the keys over the range up to the farthest positive gives how
many gallery items lie in the bins below each positive (items beyond the
farthest positive share a last bin of their own), and the few items that
share a positive's bin are compared exactly. Same-person items (the
positives themselves and the ones the rule drops) are then subtracted, so
dropped items never need masking out of the whole row. Blocks given as torch
tensors (a GPU evaluation) are ranked on their device by
``positive_ranks_torch``: the same counts, from a per-row searchsorted.

Tie rule (documented in docs/eval.md, and used by the tests' reference):
valid gallery items are ordered by distance, and a negative at exactly the
same distance as a positive is ranked before it (pessimistic; the result does
not depend on gallery order). Positives at equal distance take consecutive ranks.

Rules, for gallery items of the query's person (everything else is a negative):
standard: positive = another camera (same camera: dropped);
cc: positive = another camera and other clothes (same camera or same clothes: dropped);
sc: positive = another camera and same clothes (same camera or other clothes: dropped).
Queries with no positive are skipped (not counted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from reidkit.errors import ReidkitError

RULES = ("standard", "cc", "sc")
MAX_BINS = 1 << 14  # histogram bins per query row: about 8 gallery items a bin, at most this many
_PAIR_BUDGET = 1 << 24  # elements of the (rows x positives x same-person) comparison, per sub-chunk


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ReidkitError(f"unknown evaluation rule '{rule}' (expected one of: {', '.join(RULES)})")
    return rule


def positive_mask(rule, q_cams, g_cams, q_clothes=None, g_clothes=None):
    """Among same-person pairs (broadcast arrays): which are positives under ``rule``."""
    other_camera = q_cams != g_cams
    if rule == "standard":
        return other_camera
    if q_clothes is None or g_clothes is None:
        raise ReidkitError(f"rule '{rule}' needs clothes labels for query and gallery")
    same_clothes = q_clothes == g_clothes
    return other_camera & (~same_clothes if rule == "cc" else same_clothes)


def monotone_keys(x: np.ndarray, signed: bool) -> np.ndarray:
    """Unsigned integer keys with key(a) <= key(b) iff a <= b (no NaN, no -0.0 in x).

    signed=False is the fast path, valid when every value compared is >= 0;
    keys of arrays compared with each other must use the same ``signed``.
    """
    utype = np.uint32 if x.dtype == np.float32 else np.uint64
    u = x.view(utype)
    if not signed:
        return u  # non-negative floats already order like their bit patterns
    high = utype(1) << utype(8 * x.itemsize - 1)
    return u ^ np.where(u >= high, ~utype(0), high).astype(utype)


class SamePerson:
    """Gallery items grouped by person id, for looking up a query's same-person items."""

    def __init__(self, g_pids):
        g_pids = np.asarray(g_pids)
        self.order = np.argsort(g_pids, kind="stable")
        self.pids, self.starts, self.counts = np.unique(g_pids[self.order], return_index=True, return_counts=True)

    def lookup(self, q_pids):
        """(B x M) gallery indices of each query's person, and which entries are real (not padding)."""
        q_pids = np.asarray(q_pids)
        if len(self.pids) == 0:
            return np.zeros((len(q_pids), 0), np.int64), np.zeros((len(q_pids), 0), bool)
        pos = np.clip(np.searchsorted(self.pids, q_pids), 0, len(self.pids) - 1)
        count = np.where(self.pids[pos] == q_pids, self.counts[pos], 0)
        width = int(count.max()) if len(count) else 0
        steps = np.arange(width)
        real = steps[None, :] < count[:, None]
        idx = self.order[np.where(real, self.starts[pos][:, None] + steps[None, :], 0)]
        return idx, real


def n_bins(n_gallery: int) -> int:
    """Histogram bins for a row of ``n_gallery`` items: a power of two, about 8 items a bin."""
    return int(min(MAX_BINS, max(256, 1 << max(0, int(n_gallery // 8).bit_length()))))


def _count_le_row(keys, t_keys, lo, values, t_values, buf: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """#{g : values[g] <= t} for each sorted threshold t of one row, exactly.

    keys/t_keys: order-preserving integer keys of values/t_values (``keys`` is
    overwritten); lo: the row's smallest key. Keys are binned over [lo, farthest
    threshold] into all bins but the last; keys beyond go to the last bin, which
    holds no threshold (so the many far items of a clustered row are never
    compared one by one). A histogram gives the count below each threshold's
    bin, and the items that share a threshold's bin are compared exactly. The
    bin is a monotone function of the value, so within the selected items
    "value <= t" minus "bin below t's bin" is exactly the count inside t's bin.
    """
    utype = keys.dtype.type
    lo = utype(lo)
    last = len(lut) - 1
    shift = utype((int(t_keys[-1] - lo) // last).bit_length())  # smallest shift putting the farthest threshold below bin `last`
    np.subtract(keys, lo, out=keys)
    np.right_shift(keys, shift, out=keys)
    np.minimum(keys, utype(last), out=buf, casting="unsafe")  # clip while unsigned: now below len(lut), fits any integer type
    hist = np.bincount(buf, minlength=len(lut))
    below = np.cumsum(hist) - hist
    t_bin = ((t_keys - lo) >> shift).astype(np.int64)
    lut[t_bin] = True
    sel = np.flatnonzero(lut[buf])
    lut[t_bin] = False
    in_bin = np.searchsorted(np.sort(values[sel]), t_values, side="right") - np.searchsorted(np.sort(buf[sel]), t_bin, side="left")
    return below[t_bin] + in_bin


def _count_le_same(d_same: np.ndarray, real: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """#{same-person items m : d_same[b, m] <= thresholds[b, k]} (small arrays, broadcast in sub-chunks)."""
    rows, width = thresholds.shape
    out = np.empty((rows, width), np.int64)
    step = max(1, _PAIR_BUDGET // max(1, width * d_same.shape[1]))
    masked = np.where(real, d_same, np.inf)
    for s in range(0, rows, step):
        out[s : s + step] = (masked[s : s + step, None, :] <= thresholds[s : s + step, :, None]).sum(-1)
    return out


@dataclass
class QueryScores:
    """Per-query results of one chunk: valid queries only (others skipped)."""

    query: np.ndarray  # row index of each valid query
    first: np.ndarray  # rank (1-based) of the first positive
    ap: np.ndarray
    inp: np.ndarray
    positives: np.ndarray


def positive_ranks(block, same_idx, real, is_pos):
    """Ranks (1-based) of each query's positives in its valid gallery, sorted ascending; 0 = padding.

    block: (B x Ng) distances; same_idx/real: the query's same-person gallery items;
    is_pos: which of them are positives (the rest are dropped). Returns (rows, ranks, n_pos).
    """
    block = np.asarray(block)
    dtype = np.float32 if block.dtype in (np.float32, np.float16) else np.float64
    block = np.ascontiguousarray(block, dtype=dtype)
    n_pos = (is_pos & real).sum(1)
    rows = np.flatnonzero(n_pos > 0)
    if len(rows) == 0:
        return rows, np.zeros((0, 0), np.int64), n_pos[rows]
    n_pos, same_idx, real, is_pos = n_pos[rows], same_idx[rows], real[rows], is_pos[rows]
    # Adding 0 turns -0.0 into +0.0, so bit patterns order like values.
    d_same = np.add(block[rows[:, None], same_idx], 0, dtype=dtype)
    width = int(n_pos.max())
    s = np.sort(np.where(is_pos, d_same, np.inf), axis=1)[:, :width]
    pad = np.arange(width)[None, :] >= n_pos[:, None]
    s = np.ascontiguousarray(np.where(pad, s[np.arange(len(rows)), n_pos - 1][:, None], s))  # padding repeats the farthest positive
    utype = np.uint32 if dtype == np.float32 else np.uint64
    magnitude = utype(~(utype(1) << utype(8 * np.dtype(dtype).itemsize - 1)))  # all bits but the sign
    le_all = np.empty((len(rows), width), np.int64)
    keys = np.empty(block.shape[1], utype)  # per-row buffers stay in cache
    buf = np.empty(block.shape[1], np.int64)
    lut = np.zeros(n_bins(block.shape[1]), bool)
    for i, r in enumerate(rows):
        x = block[r]
        low = x.min()
        if np.isnan(low):
            raise ReidkitError("distance matrix holds NaN values")
        if low >= 0:  # usual case: clearing the sign bit maps -0.0 to +0.0, then bits order like values
            np.bitwise_and(x.view(utype), magnitude, out=keys)
            lo = np.array(low, dtype).view(utype) & magnitude
            le_all[i] = _count_le_row(keys, s[i].view(utype) & magnitude, lo, x, s[i], buf, lut)
        else:
            row_keys = monotone_keys(np.add(x, 0, dtype=dtype), True)
            le_all[i] = _count_le_row(row_keys, monotone_keys(s[i], True), row_keys.min(), x, s[i], buf, lut)
    le_same = _count_le_same(d_same, real, s)
    ranks = np.arange(1, width + 1)[None, :] + le_all - le_same
    ranks[pad] = 0
    return rows, ranks, n_pos


def positive_ranks_torch(block, same_idx, real, is_pos):
    """``positive_ranks`` for a torch tensor block, on its device (GPU evaluation; tested on the CPU).

    Each distance is located among its row's sorted positives' distances by
    ``torch.searchsorted`` (left side: how many positives lie strictly closer),
    so a per-row histogram of those positions, summed up, gives exactly how many
    gallery items lie at or below each positive. Same counts as the numpy path.
    """
    import torch

    n_pos = (is_pos & real).sum(1)
    rows = np.flatnonzero(n_pos > 0)
    if len(rows) == 0:
        return rows, np.zeros((0, 0), np.int64), n_pos[rows]
    if bool(torch.isnan(block).any()):
        raise ReidkitError("distance matrix holds NaN values")
    n_pos, same_idx, real, is_pos = n_pos[rows], same_idx[rows], real[rows], is_pos[rows]
    dev = block.device
    width = int(n_pos.max())
    r_t = torch.as_tensor(rows, device=dev)
    sub = block if len(rows) == block.shape[0] else block[r_t]
    d_same = sub.gather(1, torch.as_tensor(same_idx, device=dev))
    inf = torch.tensor(float("inf"), dtype=block.dtype, device=dev)
    s = torch.sort(torch.where(torch.as_tensor(is_pos, device=dev), d_same, inf), dim=1).values[:, :width]
    n_pos_t = torch.as_tensor(n_pos, device=dev)
    pad = torch.arange(width, device=dev)[None, :] >= n_pos_t[:, None]
    s = torch.where(pad, s.gather(1, (n_pos_t - 1)[:, None]), s).contiguous()  # padding repeats the farthest positive
    where = torch.searchsorted(s, sub.contiguous())  # per item: how many positives lie strictly closer
    where += (torch.arange(len(rows), device=dev) * (width + 1))[:, None]
    le_all = torch.bincount(where.view(-1), minlength=len(rows) * (width + 1)).view(len(rows), width + 1).cumsum(1)[:, :width]
    masked = torch.where(torch.as_tensor(real, device=dev), d_same, inf)
    le_same = (masked[:, None, :] <= s[:, :, None]).sum(-1)
    ranks = (torch.arange(1, width + 1, device=dev)[None, :] + le_all - le_same).masked_fill_(pad, 0)
    return rows, ranks.cpu().numpy().astype(np.int64), n_pos


def _is_tensor(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


@dataclass
class BlockPairs:
    """One block's same-person bookkeeping: gallery items of each query's person, and which are positives."""

    start: int
    same_idx: np.ndarray
    real: np.ndarray
    is_pos: np.ndarray


class PairRule:
    """Which (query, gallery) pairs of a block are same-person, and which of those the rule keeps as positives:
    the ranking's own bookkeeping (ranking.SamePerson, ranking.positive_mask)."""

    def __init__(self, rule, g_person, g_camera, g_clothes=None):
        self.rule = check_rule(rule)
        self.same = SamePerson(np.asarray(g_person))
        self.g_camera = np.asarray(g_camera)
        self.g_clothes = None if g_clothes is None else np.asarray(g_clothes)

    def pairs(self, start, q_person, q_camera, q_clothes=None) -> BlockPairs:
        same_idx, real = self.same.lookup(np.asarray(q_person))
        clothes = self.rule != "standard"
        qc = np.asarray(q_clothes)[:, None] if clothes and q_clothes is not None else None  # None: positive_mask says so
        gc = self.g_clothes[same_idx] if clothes else None
        is_pos = positive_mask(self.rule, np.asarray(q_camera)[:, None], self.g_camera[same_idx], qc, gc) & real
        return BlockPairs(start, same_idx, real, is_pos)


class RankScorer:
    """Scores query chunks against one gallery under one rule."""

    def __init__(self, g_pids, g_cams, g_clothes=None, rule="standard"):
        self.rule = check_rule(rule)
        self.g_pids = np.asarray(g_pids)
        self.g_cams = np.asarray(g_cams)
        self.g_clothes = None if g_clothes is None else np.asarray(g_clothes)
        if rule != "standard" and self.g_clothes is None:
            raise ReidkitError(f"rule '{rule}' needs gallery clothes labels")
        self.pair_rule = PairRule(self.rule, self.g_pids, self.g_cams, self.g_clothes)

    def pairs(self, start, q_pids, q_cams, q_clothes=None) -> BlockPairs:
        """The block's same-person bookkeeping, for ``score_pairs`` and for whatever else reads the block."""
        return self.pair_rule.pairs(start, q_pids, q_cams, q_clothes)

    def score(self, block, q_pids, q_cams, q_clothes=None) -> QueryScores:
        """block: (B x Ng) distances, numpy (ranked on the CPU) or a torch tensor (ranked on its device)."""
        return self.score_pairs(block, self.pairs(0, q_pids, q_cams, q_clothes))

    def score_pairs(self, block, pairs: BlockPairs) -> QueryScores:
        """``score`` of a block whose pairs are already looked up."""
        same_idx, real, is_pos = pairs.same_idx, pairs.real, pairs.is_pos
        if tuple(block.shape) != (len(same_idx), len(self.g_pids)):
            raise ReidkitError(f"distance block is {block.shape}, expected ({len(same_idx)}, {len(self.g_pids)})")
        rank = positive_ranks_torch if _is_tensor(block) else positive_ranks  # device tensors are ranked where they are
        rows, ranks, n_pos = rank(block, same_idx, real, is_pos)
        if len(rows) == 0:
            empty = np.zeros(0)
            return QueryScores(rows, empty.astype(np.int64), empty, empty, empty.astype(np.int64))
        k = np.arange(1, ranks.shape[1] + 1)[None, :]
        precision = np.where(ranks > 0, k / np.maximum(ranks, 1), 0.0)
        last = ranks[np.arange(len(rows)), n_pos - 1]
        return QueryScores(rows, ranks[:, 0], precision.sum(1) / n_pos, n_pos / last, n_pos)


@dataclass
class ScoreAccumulator:
    """Collects per-query scores over chunks and summarises them."""

    max_rank: int = 50
    parts: list = field(default_factory=list)

    def add(self, scores: QueryScores, offset: int = 0):
        scores.query = scores.query + offset
        self.parts.append(scores)

    def per_query(self) -> dict:
        cat = lambda name, dtype: np.concatenate([getattr(p, name) for p in self.parts]).astype(dtype) if self.parts else np.zeros(0, dtype)
        return {"query": cat("query", np.int64), "first": cat("first", np.int64), "ap": cat("ap", float), "inp": cat("inp", float)}

    def summary(self) -> dict:
        pq = self.per_query()
        n = len(pq["first"])
        if n == 0:
            cmc = np.zeros(self.max_rank)
        else:
            hits = np.bincount(np.minimum(pq["first"], self.max_rank + 1) - 1, minlength=self.max_rank + 1)[: self.max_rank]
            cmc = np.cumsum(hits) / n
        at = lambda r: float(cmc[min(r, self.max_rank) - 1]) if n else 0.0
        return {
            "rank1": at(1),
            "rank5": at(5),
            "rank10": at(10),
            "mAP": float(pq["ap"].mean()) if n else 0.0,
            "mINP": float(pq["inp"].mean()) if n else 0.0,
            "valid_queries": int(n),
            "cmc": [float(c) for c in cmc],
        }


def evaluate_chunks(chunks: Iterable, q_pids, g_pids, q_cams, g_cams, q_clothes=None, g_clothes=None,
                    rule="standard", max_rank=50, per_query=False) -> dict:
    """Metrics from an iterable of (first query row, distance block): the memory-bounded path."""
    q_pids, q_cams = np.asarray(q_pids), np.asarray(q_cams)
    q_clothes = None if q_clothes is None else np.asarray(q_clothes)
    scorer = RankScorer(g_pids, g_cams, g_clothes, rule)
    acc = ScoreAccumulator(max_rank)
    for start, block in chunks:
        stop = start + len(block)
        qc = None if q_clothes is None else q_clothes[start:stop]
        acc.add(scorer.score(block, q_pids[start:stop], q_cams[start:stop], qc), start)
    result = acc.summary()
    result["rule"] = rule
    if per_query:
        result["per_query"] = acc.per_query()
    return result


def evaluate_scores(dist, q_pids, g_pids, q_cams, g_cams, q_clothes=None, g_clothes=None, rule="standard",
                    max_rank=50, per_query=False) -> dict:
    """Metrics from a precomputed (Nq x Ng) distance matrix (smaller = closer).

    Junk images must already be left out of query and gallery; distractors stay
    in the gallery as negatives. Returns rank1, rank5, rank10, mAP, mINP
    (fractions), valid_queries and cmc (ranks 1..max_rank).
    """
    from reidkit.evaluation.distance import rows_per_chunk

    dist = np.asarray(dist)
    if dist.ndim != 2 or dist.shape != (len(q_pids), len(g_pids)):
        raise ReidkitError(f"distance matrix is {dist.shape}, expected ({len(q_pids)}, {len(g_pids)}) for the given ids")
    rows = rows_per_chunk(dist.shape[1])
    chunks = ((s, dist[s : s + rows]) for s in range(0, dist.shape[0], rows))
    return evaluate_chunks(chunks, q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes, rule, max_rank, per_query)
