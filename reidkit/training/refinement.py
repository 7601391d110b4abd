"""DLCR test-time prediction refinement (methods.md 1.5), from query variants made by ``reidkit expand --split query``.

For the original query (k = 0) and each of its K variants, the gallery is
ranked by s_k = 1 + cos(f(q_k), f(g)) after the protocol's junk removal; T_k
holds the top-5 items, s_k(p) the best score of person p and m_k = max_p s_k(p).
Each person p in T_0 gets A(p) = s_0(p) + sum_k [p in T_k] s_k(p)^2 / m_k and
its gallery items the score max(A(p), s_0(g)); everything else keeps s_0.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError


def _best_per_person(scores, pids, valid, top):
    """Top-``top`` valid items by score, and the best score of each person among them."""
    candidates = np.flatnonzero(valid)
    order = candidates[np.argsort(-scores[candidates], kind="stable")][:top]
    best = {}
    for g in order:
        best.setdefault(int(pids[g]), float(scores[g]))  # first seen = best (sorted)
    return best


def refine_query(scores: np.ndarray, g_pids: np.ndarray, valid: np.ndarray, top: int = 5) -> np.ndarray:
    """Refined scores (higher = closer) of one query; ``scores`` is (K+1) x G, row 0 the original query."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    s0 = scores[0]
    tops = [_best_per_person(s, g_pids, valid, top) for s in scores]
    refined = s0.copy()
    for p, s0p in tops[0].items():
        a = s0p + sum(t[p] ** 2 / max(t.values()) for t in tops if p in t)
        members = valid & (g_pids == p)
        refined[members] = np.maximum(a, s0[members])
    return refined


def refine_scores(q_feats, g_feats, variant_feats, variant_query, q_pids, g_pids, q_cams, g_cams,
                  q_clothes=None, g_clothes=None, rule="standard", top=5) -> np.ndarray:
    """Refined Nq x G score matrix. ``variant_feats[j]`` belongs to query row ``variant_query[j]``."""
    from reidkit.evaluation.ranking import positive_mask

    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    g = unit(g_feats)
    s_query = 1 + unit(q_feats) @ g.T
    s_variant = 1 + unit(variant_feats) @ g.T if len(variant_feats) else np.zeros((0, len(g)))
    variant_query = np.asarray(variant_query, dtype=np.int64)
    out = np.empty_like(s_query)
    for q in range(len(s_query)):
        same = g_pids == q_pids[q]
        pos = positive_mask(rule, q_cams[q], g_cams, None if q_clothes is None else q_clothes[q], g_clothes)
        valid = ~same | pos  # the protocol drops same-person items that are not positives
        out[q] = refine_query(np.vstack([s_query[q:q + 1], s_variant[variant_query == q]]), g_pids, valid, top)
    return out


def evaluate_refined(runner, store, features, index, run_name, protocols=None, batch_size=128, top=5) -> dict:
    """Metrics of every protocol with refined scores; ``features``/``index``: the store's test features."""
    from reidkit.evaluation.protocols import person_keys, select_protocols
    from reidkit.evaluation.ranking import evaluate_scores

    person = person_keys(store)
    run = store.run(run_name)
    selected = select_protocols(store, protocols)
    for protocol in selected:  # check everything before extracting anything
        if protocol.gallery_sampling != "all" or protocol.unit != "image":
            raise ReidkitError(f"--refine supports image protocols with the whole gallery; '{protocol.name}' is not one")
    kept = np.flatnonzero(run.kept())
    kept = kept[np.isin(run.source_index()[kept], np.concatenate([store.split(p.query) for p in selected]))]
    if len(kept) == 0:
        split = selected[0].query
        raise ReidkitError(f"run '{run_name}' has no kept variants of the '{split}' split (make one with 'reidkit expand --split {split}')")
    sources = run.source_index()[kept]
    variant_feats = runner.extract_source(run, kept, batch_size=batch_size, description="query variants")
    row_of = {int(i): r for r, i in enumerate(index)}
    results = {}
    for protocol in selected:
        q = _subset(store, store.split(protocol.query), protocol.query_cameras)
        g = _subset(store, store.split(protocol.gallery), protocol.gallery_cameras)
        qpos = {int(i): r for r, i in enumerate(q)}
        use = np.array([int(s) in qpos for s in sources], dtype=bool)
        clothes = store.clothes_id if protocol.rule != "standard" else None
        scores = refine_scores(features[[row_of[int(i)] for i in q]], features[[row_of[int(i)] for i in g]],
                               variant_feats[use], [qpos[int(s)] for s in sources[use]], person[q], person[g],
                               store.camera[q], store.camera[g], None if clothes is None else clothes[q],
                               None if clothes is None else clothes[g], protocol.rule, top)
        result = evaluate_scores(-scores, person[q], person[g], store.camera[q], store.camera[g],
                                 None if clothes is None else clothes[q], None if clothes is None else clothes[g], protocol.rule)
        result.update(protocol=protocol.name, rule=protocol.rule, unit="image", queries=len(q), gallery=len(g),
                      gallery_sampling="all", trials=1, distance="cosine", refine=run_name, variants=int(use.sum()))
        results[protocol.name] = result
    return results


def _subset(store, indices, cameras):
    indices = indices[~store.junk[indices]]
    return indices if cameras is None else indices[np.isin(store.camera[indices], cameras)]
