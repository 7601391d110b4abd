"""Evaluating a trained model: extract the test features every chosen protocol needs, then score them.

One path for everyone: :func:`checkpoint_features` extracts (``reidkit eval --checkpoint`` and
:func:`evaluate_runner`), :func:`evaluate_features` scores (``reidkit eval`` with its extras, and
:func:`evaluate_runner` for evaluation during training, the report and the demo).
"""
from __future__ import annotations

import numpy as np


def eval_indices(store, protocols=None) -> np.ndarray:
    """Store indices of every query and gallery image the chosen protocols use."""
    from reidkit.evaluation.protocols import select_protocols

    wanted = select_protocols(store, protocols)
    return np.unique(np.concatenate([np.concatenate([store.split(p.query), store.split(p.gallery)]) for p in wanted]))


def checkpoint_features(runner, store, protocols=None, flip=None, batch_size=128, num_workers=0):
    """(features N x D, index N): every query and gallery image the protocols use, through ``runner`` (flipped as
    ``flip`` says; default the runner's). Under torchrun/accelerate each rank extracts its share; all get them all."""
    from reidkit.evaluation.sharded import extract_sharded

    index = eval_indices(store, protocols)
    flip = bool(getattr(runner, "flip", True)) if flip is None else bool(flip)
    features = extract_sharded(lambda idx: runner.extract_source(store, idx, batch_size=batch_size, num_workers=num_workers,
                                                                 flip=flip, description="test features"),
                               index, device=str(getattr(runner, "device", None) or "cpu"))
    return features, index


def evaluate_runner(runner, store, protocols=None, batch_size=128, refine_run=None, refine=None, rerank=None, num_workers=0,
                    device=None, flip=None, ranks=None):
    """Extract query + gallery features of every protocol and score them, optionally with DLCR refinement.

    ``device``: where distances, ranking and re-ranking's k-NN pass run; default: the model's device
    (a GPU model is evaluated on its GPU, same numbers as on the CPU up to the distances' rounding).

    ``refine``: refinement settings (``variants``, ``top``, ``flip``; DLCR's defaults otherwise). With
    refinement, the test features are extracted with the refinement's ``flip`` setting (DLCR: none).

    ``flip``: test-time flip without refinement; default the runner's (a run's ``test_flip``). Every result
    records the flip used (``flip``).

    ``ranks``: None or ranked-list settings ({n, k, queries}: ranked_lists.py), without refinement: each result
    then holds ``ranked_lists`` (from the ranking's own pass; see ``evaluate_features``).
    """
    from reidkit.evaluation.refinement import DEFAULTS, check_refinable, evaluate_refined
    from reidkit.evaluation.sharded import rank_and_world

    settings = {**DEFAULTS, **(refine or {})}
    if refine_run is not None:
        check_refinable(store, protocols)  # before extracting anything
        flip = bool(settings["flip"])
    elif flip is None:
        flip = bool(getattr(runner, "flip", True))
    features, index = checkpoint_features(runner, store, protocols, flip, batch_size, num_workers)
    if rank_and_world()[0] != 0:
        return {}  # rank 0 alone ranks and scores
    if refine_run is None:
        results = evaluate_features(store, features, index, protocols, rerank=rerank, ranks=ranks,
                                    device=str(device or getattr(runner, "device", None) or "cpu"))
    else:
        results = evaluate_refined(runner, store, features, index, refine_run, protocols=protocols, batch_size=batch_size, **settings)
    for r in results.values():
        r["flip"] = flip  # which test features these numbers come from
    return results


def evaluate_features(store, features, index, protocols=None, distance="cosine", rerank=None, aqe=None, verification=False,
                      ranks=None, device="cpu", seed=0, max_rank=50, on_rows=None) -> dict:
    """``evaluate_store`` (same metrics, protocol by protocol) with the optional extras of ``reidkit eval``.

    ``aqe``: None or {k, alpha} (query_expansion.py): each protocol's query and gallery images are expanded
    first, then distances, re-ranking and everything below use the expanded features (fast-reid's order).
    ``verification``: TPR at FPR 1e-4 / 1e-3 / 1e-2 (verification.py; ``tpr_at_fpr``, ``fpr_thresholds``,
    ``verification_pairs`` in each result), from the ranking's own pass over the protocol's distances.
    ``ranks``: None or {n, k, queries} (ranked_lists.py): ``ranked_lists`` in each result, from that pass too.
    Every result records ``aqe`` (None when off).
    """
    from reidkit.evaluation.protocols import evaluate_protocol, normalise_rerank, validate_inputs
    from reidkit.evaluation.query_expansion import check_protocol, expand_protocol, normalise_aqe
    from reidkit.evaluation.ranked_lists import check_queries, collector, normalise_ranks
    from reidkit.evaluation.verification import PassConsumers

    features, row_of, selected = validate_inputs(store, features, index, protocols, distance)
    rerank, aqe, ranks = normalise_rerank(rerank), normalise_aqe(aqe), normalise_ranks(ranks)
    if aqe:
        for p in selected:
            check_protocol(p)
    if ranks:
        check_queries(store, selected, ranks["queries"])
    results, cache = {}, {}
    for p in selected:
        feats, rows = expand_protocol(store, p, features, row_of, aqe, device, cache, on_rows) if aqe else (features, row_of)
        lists = collector(ranks) if ranks else None
        riders = PassConsumers(verification, lists) if (verification or ranks) else None
        result = evaluate_protocol(store, p, feats, rows, distance, rerank, device, seed, max_rank, on_rows, riders)
        result["aqe"] = aqe
        if verification:
            result.update(riders.result())
        if ranks:
            result["ranked_lists"] = lists.made[0].entries(ranks["n"])
        results[p.name] = result
    return results


def evaluation_rows(store, protocols, rerank=False, aqe=False, verification=False, ranks=False) -> int:
    """Rows ``evaluate_features`` reports through ``on_rows``, for a progress bar (``verification`` and ``ranks`` add
    none: they read the ranking's own pass)."""
    from reidkit.evaluation.protocols import protocol_rows
    from reidkit.evaluation.query_expansion import protocol_images

    total, pools = 0, set()
    for p in protocols:
        total += protocol_rows(store, p, bool(rerank))  # verification and ranked lists ride along that pass
        if aqe:
            images = protocol_images(store, p)
            if images.tobytes() not in pools:
                pools.add(images.tobytes())
                total += len(images)
    return total
