"""DLCR test-time prediction refinement (methods.md 1.5), from query variants made by ``reidkit expand --split query``.

For the original query (k = 0) and each of its K variants, the gallery is
ranked by s_k = 1 + cos(f(q_k), f(g)) after the protocol's junk removal; T_k
holds the top-5 gallery items, s_k(p) the best score of person p among them
and m_k = max_p s_k(p). Each person p of T_0 gets
A(p) = s_0(p) + sum_k [p in T_k] s_k(p)^2 / m_k, and only the ITEMS of T_0
get s'(g) = max(A(pid(g)), s_0(g)); every other item keeps s_0. A query
without variants keeps s_0 exactly.

DLCR's settings are the defaults: K = 4 variants per query, features
without flip averaging, cosine on L2-normalised features, top 5.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError

# DLCR's reference settings (methods.md 1.5); each is a setting of evaluate_refined / reidkit eval
DEFAULTS = {"variants": 4, "top": 5, "flip": False}


def top_items(scores: np.ndarray, valid: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` highest-scoring valid items, best first (ties: lower index first)."""
    candidates = np.flatnonzero(valid)
    return candidates[np.argsort(-scores[candidates], kind="stable")][:top]


def best_per_person(scores: np.ndarray, pids: np.ndarray, items: np.ndarray) -> dict:
    """{person: best score among ``items``} (``items`` sorted best first, so the first seen is the best)."""
    best = {}
    for g in items:
        best.setdefault(int(pids[g]), float(scores[g]))
    return best


def refine_query(scores: np.ndarray, g_pids: np.ndarray, valid: np.ndarray, top: int = 5) -> np.ndarray:
    """Refined scores (higher = closer) of one query; ``scores`` is (K+1) x G, row 0 the original query."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    s0 = scores[0]
    if len(scores) == 1:
        return s0.copy()  # no variants: the query is left exactly as it was
    original_top = top_items(s0, valid, top)
    tops = [best_per_person(s0, g_pids, original_top)]
    tops += [best_per_person(s, g_pids, top_items(s, valid, top)) for s in scores[1:]]
    peaks = [max(t.values()) for t in tops]
    refined = s0.copy()
    for g in original_top:  # only the original top-k items; other items of those persons keep s_0
        p = int(g_pids[g])
        a = tops[0][p] + sum(t[p] ** 2 / m for t, m in zip(tops, peaks) if p in t)
        refined[g] = max(a, s0[g])
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


def choose_variants(run, sources_wanted: np.ndarray, per_query: int) -> np.ndarray:
    """Run items used for refinement: kept variants of the wanted queries, at most ``per_query`` each (lowest variant first)."""
    kept = np.flatnonzero(run.kept())
    kept = kept[np.isin(run.source_index()[kept], sources_wanted)]
    if len(kept) == 0:
        return kept
    order = np.lexsort((run.variant()[kept], run.source_index()[kept]))
    kept = kept[order]
    sources = run.source_index()[kept]
    rank_in_query = np.arange(len(kept)) - np.searchsorted(sources, sources, side="left")
    return kept[rank_in_query < per_query]


def check_refinable(store, protocols):
    """The chosen protocols, refused in one line unless they are image protocols over the whole gallery."""
    from reidkit.evaluation.protocols import select_protocols

    selected = select_protocols(store, protocols)
    for protocol in selected:  # check everything before extracting anything
        if protocol.gallery_sampling != "all" or protocol.unit != "image":
            raise ReidkitError(f"--refine supports image protocols with the whole gallery; '{protocol.name}' is not one")
    return selected


def evaluate_refined(runner, store, features, index, run_name, protocols=None, batch_size=128,
                     variants=DEFAULTS["variants"], top=DEFAULTS["top"], flip=DEFAULTS["flip"]) -> dict:
    """Metrics of every protocol with refined scores.

    ``features``/``index``: the store's test features, extracted with the same ``flip`` setting as the variants.
    """
    from reidkit.evaluation.protocols import person_keys
    from reidkit.evaluation.ranking import evaluate_scores

    if int(variants) < 1 or int(top) < 1:
        raise ReidkitError(f"refinement needs at least 1 variant per query and a top of at least 1 (got {variants}, {top})")
    person = person_keys(store)
    run = store.run(run_name)
    selected = check_refinable(store, protocols)
    chosen = choose_variants(run, np.concatenate([store.split(p.query) for p in selected]), int(variants))
    if len(chosen) == 0:
        split = selected[0].query
        raise ReidkitError(f"run '{run_name}' has no kept variants of the '{split}' split (make one with 'reidkit expand --split {split}')")
    sources = run.source_index()[chosen]
    variant_feats = runner.extract_source(run, chosen, batch_size=batch_size, flip=flip, description="query variants")
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
        refined_queries = len(np.unique(sources[use]))
        result.update(protocol=protocol.name, rule=protocol.rule, unit="image", queries=len(q), gallery=len(g),
                      gallery_sampling="all", trials=1, distance="cosine", refine=run_name, variants=int(use.sum()),
                      refined_queries=refined_queries, refine_settings={"variants": int(variants), "top": int(top), "flip": bool(flip)})
        results[protocol.name] = result
    return results


def _subset(store, indices, cameras):
    indices = indices[~store.junk[indices]]
    return indices if cameras is None else indices[np.isin(store.camera[indices], cameras)]
