"""Evaluating a trained model: extract the test features every chosen protocol needs, then score them.

Used by ``reidkit eval --checkpoint``, by evaluation during training and by the demo.
"""
from __future__ import annotations

import numpy as np


def eval_indices(store, protocols=None) -> np.ndarray:
    """Store indices of every query and gallery image the chosen protocols use."""
    from reidkit.evaluation.protocols import select_protocols

    wanted = select_protocols(store, protocols)
    return np.unique(np.concatenate([np.concatenate([store.split(p.query), store.split(p.gallery)]) for p in wanted]))


def evaluate_runner(runner, store, protocols=None, batch_size=128, refine_run=None, refine=None, rerank=None, num_workers=0,
                    device=None, flip=None):
    """Extract query + gallery features of every protocol and score them, optionally with DLCR refinement.

    ``device``: where distances, ranking and re-ranking's k-NN pass run; default: the model's device
    (a GPU model is evaluated on its GPU, same numbers as on the CPU up to the distances' rounding).

    ``refine``: refinement settings (``variants``, ``top``, ``flip``; DLCR's defaults otherwise). With
    refinement, the test features are extracted with the refinement's ``flip`` setting (DLCR: none).

    ``flip``: test-time flip without refinement; default the runner's (a run's ``test_flip``). Every result
    records the flip used (``flip``).
    """
    from reidkit.evaluation import evaluate_store
    from reidkit.evaluation.refinement import DEFAULTS, check_refinable, evaluate_refined

    settings = {**DEFAULTS, **(refine or {})}
    if refine_run is not None:
        check_refinable(store, protocols)  # before extracting anything
    index = eval_indices(store, protocols)
    if refine_run is not None:
        flip = bool(settings["flip"])
    elif flip is None:
        flip = bool(getattr(runner, "flip", True))
    from reidkit.evaluation.sharded import extract_sharded, rank_and_world

    # under torchrun/accelerate each rank extracts its share; rank 0 alone ranks and scores (others get {})
    features = extract_sharded(lambda idx: runner.extract_source(store, idx, batch_size=batch_size, num_workers=num_workers,
                                                                 flip=flip, description="test features"),
                               index, device=str(getattr(runner, "device", None) or "cpu"))
    if rank_and_world()[0] != 0:
        return {}
    if refine_run is None:
        results = evaluate_store(store, features, index, protocols=protocols, rerank=rerank,
                                 device=str(device or getattr(runner, "device", None) or "cpu"))
    else:
        results = evaluate_refined(runner, store, features, index, refine_run, protocols=protocols, batch_size=batch_size, **settings)
    for r in results.values():
        r["flip"] = flip  # which test features these numbers come from
    return results
