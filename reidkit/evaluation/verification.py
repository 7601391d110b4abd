"""Verification figures: TPR at FPR 1e-4, 1e-3 and 1e-2 over a protocol's query-gallery pairs.

Pairs: every query unit with every gallery unit the protocol's ranking keeps. Same-person pairs the rule
drops (same camera; for ``cc`` also same outfit, for ``sc`` also another outfit: ranking.positive_mask, the
ranking's own rule) are left out; store-junk images are in neither set (protocols._split_images). The
remaining same-person pairs are the positives, every different-person pair (distractors included) a
negative. Every query counts, also one without a positive in the gallery (it still has negative pairs),
as in fast-reid's ROC. Distances are the protocol's final ones (after re-ranking and query expansion when
asked).

A pair is accepted when its distance is below a threshold t: TPR(t) = accepted positives / positives,
FPR(t) = accepted negatives / negatives. TPR at FPR f is the ROC curve read at f: the largest TPR over
thresholds whose FPR <= f. With N negatives, m = the largest integer with m / N <= f false accepts are
allowed; the threshold is u, the (m + 1)-th smallest negative distance, so exactly the pairs with distance
< u are accepted (all pairs when m >= N): TPR = #{positives with distance < u} / positives. This equals
scikit-learn's ``roc_curve(labels, -distance, drop_intermediate=False)`` read as max(tpr[fpr <= f])
(tests/test_verification.py), ties included: a negative tied with positives at u is never accepted with them.

Memory: distances are produced a query block at a time (one block: about 2^25 distances on the CPU, as
ranking; a GPU's blocks, up to 2^28, are copied to the host and counted there), and of the negatives only
the smallest floor(1e-2 N) + 1 distances seen so far are kept (a buffer of at most twice that plus one
block's entries below the current cut-off), with every positive distance. At MSMT17 scale (11,659 x 82,161
pairs, about 9.6e8 negatives) that is about 9.6e6 kept float32 distances (38 MiB, 77 MiB at most in the
buffer) beside the 128 MiB block and its 32 MiB boolean mask; the full 3.8 GB matrix is never held.
"""
from __future__ import annotations

import numpy as np

from reidkit.evaluation.ranking import BlockPairs, PairRule  # noqa: F401 (re-exported: callers import them from here)

FPR_KEYS = ("1e-4", "1e-3", "1e-2")


def allowed_false(target: float, n_negative: int) -> int:
    """The largest m with m / n_negative <= target (float64 division, as an ROC curve's FPR)."""
    if n_negative <= 0:
        return 0
    m = max(0, int(np.floor(target * n_negative)))
    while (m + 1) / n_negative <= target:
        m += 1
    while m > 0 and m / n_negative > target:
        m -= 1
    return m


def read_tpr(positives: np.ndarray, smallest_negatives: np.ndarray, n_negative: int, keys=FPR_KEYS) -> tuple[dict, dict]:
    """({key: TPR}, {key: threshold u}) from all positive distances and the smallest negative ones.

    ``smallest_negatives``: at least the allowed_false(f) + 1 smallest negative distances for each target f
    (all of them when there are fewer). TPR None where undefined (no positive or no negative pair); a
    threshold None with a TPR means every pair is accepted.
    """
    positives = np.sort(np.asarray(positives).ravel())
    negatives = np.asarray(smallest_negatives).ravel()
    tpr, threshold = {}, {}
    ms = {key: allowed_false(float(key), n_negative) for key in keys}
    needed = sorted({m for m in ms.values() if m < n_negative})
    if needed and len(negatives) <= needed[-1]:
        raise ValueError(f"need the {needed[-1] + 1} smallest negative distances, got {len(negatives)}")
    part = np.partition(negatives, needed) if needed else negatives
    for key, m in ms.items():
        if n_negative == 0 or m >= n_negative:
            threshold[key] = None  # no negative to bound the FPR, or every pair accepted
            accepted = len(positives) if n_negative else None
        else:
            threshold[key] = float(part[m])
            accepted = np.searchsorted(positives, part[m], side="left")
        tpr[key] = None if (accepted is None or len(positives) == 0) else float(accepted / len(positives))
    return tpr, threshold


def tpr_at_fpr(positive_distances, negative_distances, keys=FPR_KEYS) -> dict:
    """{key: TPR at FPR float(key)} from plain arrays of same-person and different-person pair distances."""
    negatives = np.asarray(negative_distances).ravel()
    return read_tpr(positive_distances, negatives, len(negatives), keys)[0]


class PairCounter:
    """TPR at FPR targets from distance blocks, with bounded memory (see the module's docstring)."""

    def __init__(self, n_negative: int, keys=FPR_KEYS):
        self.n_negative = int(n_negative)
        self.keys = tuple(keys)
        most = max(allowed_false(float(k), self.n_negative) for k in self.keys)
        self.keep = min(most + 1, self.n_negative)  # the (m + 1)-th smallest negative is each target's threshold
        self.positives, self.parts = [], []
        self.buffered, self.seen = 0, 0
        self.cutoff = np.inf

    def add(self, block: np.ndarray, same_idx: np.ndarray, real: np.ndarray, is_pos: np.ndarray):
        """block: (B x Ng) distances; same_idx/real: each query's same-person gallery items; is_pos: the positives among them."""
        rows = np.broadcast_to(np.arange(len(block))[:, None], same_idx.shape)
        self.positives.append(block[rows[is_pos], same_idx[is_pos]])
        self.seen += block.size - int(real.sum())
        if self.keep == 0:
            return
        mask = block <= self.cutoff
        mask[rows[real], same_idx[real]] = False  # same-person pairs: positives counted above, dropped ones not at all
        values = block[mask]
        if len(values):
            self.parts.append(values)
            self.buffered += len(values)
        if self.buffered > 2 * self.keep:
            self._compact()

    def _compact(self):
        values = np.concatenate(self.parts)
        if len(values) > self.keep:
            values = np.partition(values, self.keep - 1)[: self.keep]
            self.cutoff = values.max()
        self.parts, self.buffered = [values], len(values)

    def result(self) -> dict:
        if self.seen != self.n_negative:
            raise RuntimeError(f"counted {self.seen} different-person pairs, expected {self.n_negative}")
        negatives = np.concatenate(self.parts) if self.parts else np.zeros(0)
        positives = np.concatenate(self.positives) if self.positives else np.zeros(0)
        tpr, threshold = read_tpr(positives, negatives, self.n_negative, self.keys)
        return {"tpr_at_fpr": tpr, "fpr_thresholds": threshold,
                "verification_pairs": {"same": int(len(positives)), "different": self.n_negative}}


def negative_pairs(q_person, g_person) -> int:
    """Different-person (query, gallery) pairs: all pairs minus same-person ones."""
    q_person, g_person = np.asarray(q_person), np.asarray(g_person)
    if len(g_person) == 0:
        return 0
    persons, counts = np.unique(g_person, return_counts=True)
    pos = np.clip(np.searchsorted(persons, q_person), 0, len(persons) - 1)
    same = np.where(persons[pos] == q_person, counts[pos], 0)
    return int(len(q_person) * len(g_person) - same.sum())


# -- one pass over a protocol's distance blocks, feeding whatever needs the distances ---------------------------
class _Verifier:
    def __init__(self, query, gallery):
        self.counter = PairCounter(negative_pairs(query.person, gallery.person))

    def add_block(self, block, pairs: BlockPairs):
        self.counter.add(block, pairs.same_idx, pairs.real, pairs.is_pos)


def verify_scores(dist, q_pids, g_pids, q_cams, g_cams, q_clothes=None, g_clothes=None, rule="standard", rows=None,
                  keys=FPR_KEYS) -> dict:
    """TPR at FPR from a precomputed (Nq x Ng) distance matrix (smaller = closer), ``rows`` query rows at a time.

    Same pairs as ``evaluate_scores`` ranks (junk already left out). Returns tpr_at_fpr, fpr_thresholds and
    verification_pairs (same, different).
    """
    from reidkit.evaluation.distance import rows_per_chunk

    dist = np.asarray(dist)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    if dist.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f"distance matrix is {dist.shape}, expected ({len(q_pids)}, {len(g_pids)})")
    counter = PairCounter(negative_pairs(q_pids, g_pids), keys)
    rules = PairRule(rule, g_pids, g_cams, g_clothes if rule != "standard" else None)
    rows = rows or rows_per_chunk(dist.shape[1])
    for s in range(0, len(dist), rows):
        qc = None if q_clothes is None or rule == "standard" else np.asarray(q_clothes)[s : s + rows]
        pairs = rules.pairs(s, q_pids[s : s + rows], np.asarray(q_cams)[s : s + rows], qc)
        counter.add(dist[s : s + rows], pairs.same_idx, pairs.real, pairs.is_pos)
    return counter.result()


def average_trials(results: list[dict]) -> dict:
    """Single-shot protocols: each figure averaged over the trials (None if undefined in any)."""
    if len(results) == 1:
        return results[0]
    mean = lambda vals: None if any(v is None for v in vals) else float(np.mean(vals))  # noqa: E731
    return {"tpr_at_fpr": {k: mean([r["tpr_at_fpr"][k] for r in results]) for k in FPR_KEYS},
            "fpr_thresholds": {k: mean([r["fpr_thresholds"][k] for r in results]) for k in FPR_KEYS},
            "verification_pairs": {"same": int(round(np.mean([r["verification_pairs"]["same"] for r in results]))),
                                   "different": int(round(np.mean([r["verification_pairs"]["different"] for r in results])))}}


class PassConsumers:
    """What rides along the ranking's own pass over a protocol's distance blocks (protocols.score_sets'
    ``consumers``): a verifier per gallery trial (``verify``), and ``extra(query, gallery, rule)``'s consumers
    (objects with ``add_block``, e.g. ranked lists) on the first trial. ``result()``: the verification figures,
    averaged over the trials (None without ``verify``)."""

    def __init__(self, verify=True, extra=None):
        self.verify, self.extra, self.verifiers = verify, extra, []

    def __call__(self, query, gallery, rule, trial):
        out = []
        if self.verify:
            self.verifiers.append(_Verifier(query, gallery))
            out.append(self.verifiers[-1])
        if self.extra and trial == 0:
            out.extend(self.extra(query, gallery, rule))
        return out

    def result(self) -> dict | None:
        return average_trials([v.counter.result() for v in self.verifiers]) if self.verify else None
