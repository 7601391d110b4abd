"""Evaluation with verification figures and ranked lists: one pass over the distance blocks vs two.

``reidkit eval`` reports rank-1 / mAP / mINP, TPR at FPR (verification) and, with ``--ranks``, ranked lists.
Since 2026-12-08 the verifier and the ranked lists read the ranking's own distance blocks (one pass); before, they
took a second pass that produced every block again (the distance product, or with ``--rerank`` the whole
re-ranking). This times both ways in one run, on the same features and sets, and checks they give the same
figures. The second way is the previous code's loop (``verification.scan``: blocks from ``distance_blocks``
handed to the consumers after the ranking's pass), rebuilt here from the same parts.

    python benchmarks/bench_eval_pass.py [--scale market] [--kind clustered] [--rerank] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_features import KINDS, SCALES, make_data  # noqa: E402


def sets(scale, kind, seed):
    from reidkit.evaluation.protocols import EvalSet

    q, g, q_pids, g_pids, q_cams, g_cams = make_data(scale, kind, seed=seed)
    zeros = lambda n: np.zeros(n, np.int64)  # noqa: E731 - the standard rule reads no clothes
    return (EvalSet(q, q_pids, q_cams, zeros(len(q)), np.arange(len(q))),
            EvalSet(g, g_pids, g_cams, zeros(len(g)), np.arange(len(g))))


def riders(query, gallery):
    from reidkit.evaluation.ranked_lists import RankedLists
    from reidkit.evaluation.verification import PassConsumers

    consumers = PassConsumers(True, lambda q, g, rule: [RankedLists(q, g, rule, 10)])
    return consumers, consumers(query, gallery, "standard", 0)


def one_pass(query, gallery, rerank):
    from reidkit.evaluation.protocols import score_sets

    consumers, made = riders(query, gallery)
    result = score_sets(query, gallery, "standard", "cosine", rerank, "cpu", consumers=made)
    return result, consumers.result()


def two_passes(query, gallery, rerank):
    """The previous way: the ranking's pass, then every block produced again for the verifier and the lists."""
    from reidkit.evaluation.protocols import distance_blocks, score_sets
    from reidkit.evaluation.ranking import PairRule

    result = score_sets(query, gallery, "standard", "cosine", rerank, "cpu")
    consumers, made = riders(query, gallery)
    rule = PairRule("standard", gallery.person, gallery.camera)
    for start, block in distance_blocks(query, gallery, "cosine", rerank, "cpu"):
        stop = start + len(block)
        pairs = rule.pairs(start, query.person[start:stop], query.camera[start:stop])
        for c in made:
            c.add_block(block, pairs)
    return result, consumers.result()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="market", choices=sorted(SCALES))
    ap.add_argument("--kind", default="clustered", choices=KINDS)
    ap.add_argument("--rerank", action="store_true", help="with k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each way, alternating")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    query, gallery = sets(args.scale, args.kind, args.seed)
    rerank = {"k1": 20, "k2": 6, "lambda": 0.3} if args.rerank else None
    times, results = {"one_pass": [], "two_passes": []}, {}
    two_passes(query.take(np.arange(64)), gallery.take(np.arange(2000)), rerank)  # warm-up (imports, first calls)
    for _ in range(args.repeats):
        for name, way in (("one_pass", one_pass), ("two_passes", two_passes)):
            t = time.perf_counter()
            results[name] = way(query, gallery, rerank)
            times[name].append(round(time.perf_counter() - t, 2))
    (a, va), (b, vb) = results["one_pass"], results["two_passes"]
    same = a["mAP"] == b["mAP"] and a["cmc"] == b["cmc"] and va == vb
    median = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"scale": args.scale, "kind": args.kind, "rerank": bool(rerank), "queries": len(query),
                      "gallery": len(gallery), "seconds": times, "median_s": median,
                      "speedup": round(median["two_passes"] / median["one_pass"], 2), "same_figures": same,
                      "mAP": round(a["mAP"], 4), "tpr_at_fpr": va["tpr_at_fpr"],
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                      "load_before_after": os.getloadavg()}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"seconds": times, "same_figures": same}))


if __name__ == "__main__":
    main()
