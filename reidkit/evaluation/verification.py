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

from dataclasses import dataclass

import numpy as np

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
def protocol_sets(store, protocol, features, row_of, seed=0):
    """(rule, query, [gallery of each trial]) exactly as protocols.evaluate_protocol builds them."""
    from reidkit.evaluation.protocols import _split_images, build_set, single_shot
    from reidkit.evaluation.ranking import check_rule

    rule = check_rule(protocol.rule)
    q_idx = _split_images(store, protocol.query, protocol.query_cameras, "query", protocol)
    g_idx = _split_images(store, protocol.gallery, protocol.gallery_cameras, "gallery", protocol)
    query = build_set(store, q_idx, features, row_of, protocol.unit, "query", protocol)
    gallery = build_set(store, g_idx, features, row_of, protocol.unit, "gallery", protocol)
    if protocol.gallery_sampling == "single_shot":
        trials = max(1, int(protocol.trials))
        return rule, query, [single_shot(gallery, np.random.default_rng([seed, t])) for t in range(trials)]
    return rule, query, [gallery]


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
        from reidkit.evaluation.ranking import SamePerson, check_rule

        self.rule = check_rule(rule)
        self.same = SamePerson(np.asarray(g_person))
        self.g_camera = np.asarray(g_camera)
        self.g_clothes = None if g_clothes is None else np.asarray(g_clothes)

    def pairs(self, start, q_person, q_camera, q_clothes=None) -> BlockPairs:
        from reidkit.evaluation.ranking import positive_mask

        same_idx, real = self.same.lookup(np.asarray(q_person))
        clothes = self.rule != "standard"
        qc = np.asarray(q_clothes)[:, None] if clothes else None
        gc = self.g_clothes[same_idx] if clothes else None
        is_pos = positive_mask(self.rule, np.asarray(q_camera)[:, None], self.g_camera[same_idx], qc, gc) & real
        return BlockPairs(start, same_idx, real, is_pos)


def scan(query, gallery, rule, consumers, distance="cosine", rerank=None, device="cpu", on_rows=None):
    """Produce the protocol's final distance blocks once and hand each to every consumer's ``add_block``."""
    from reidkit.evaluation.protocols import distance_blocks

    clothes = rule != "standard"
    rules = PairRule(rule, gallery.person, gallery.camera, gallery.clothes if clothes else None)
    for start, block in distance_blocks(query, gallery, distance, rerank, device, on_rows):
        if type(block).__module__.split(".")[0] == "torch":
            block = block.cpu().numpy()
        stop = start + len(block)
        pairs = rules.pairs(start, query.person[start:stop], query.camera[start:stop], query.clothes[start:stop] if clothes else None)
        for consumer in consumers:
            consumer.add_block(block, pairs)
        if on_rows:
            on_rows(len(block))


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


def verify_protocol(store, protocol, features, row_of, distance="cosine", rerank=None, device="cpu", seed=0,
                    on_rows=None, verify=True, extra=None) -> dict | None:
    """TPR at FPR for one protocol: a pass over its final distances, separate from the ranking's.

    ``extra(query, gallery, rule)``: more consumers (objects with ``add_block``) for the first trial's pass, e.g.
    ranked lists; ``verify=False`` runs only those (and returns None).
    """
    rule, query, galleries = protocol_sets(store, protocol, features, row_of, seed)
    results = []
    for t, gallery in enumerate(galleries if verify else galleries[:1]):
        verifier = [_Verifier(query, gallery)] if verify else []
        more = list(extra(query, gallery, rule)) if (extra and t == 0) else []
        if verifier or more:
            scan(query, gallery, rule, [*verifier, *more], distance, rerank, device, on_rows)
        if verify:
            results.append(verifier[0].counter.result())
    return average_trials(results) if verify else None


def pass_rows(store, protocol, rerank=False, verify=True) -> int:
    """Rows ``verify_protocol`` reports through ``on_rows`` (as protocols.protocol_rows; one trial without ``verify``)."""
    from reidkit.evaluation.protocols import protocol_rows

    rows = protocol_rows(store, protocol, rerank)
    trials = max(1, int(protocol.trials)) if protocol.gallery_sampling == "single_shot" else 1
    return rows if verify else rows // trials
