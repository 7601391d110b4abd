"""k-reciprocal re-ranking: reidkit's k-NN-list (sparse) version vs the standard dense implementation.

Market-1501 scale (3,368 x 15,913, random 2048-d features): both, in one run,
with time, peak extra memory and the largest difference between their final
distances (the dense reference is the authors' / torchreid's re_ranking, in
float32, from tests/rerank_reference.py). MSMT17 scale (11,659 x 82,161): the
dense version would need (Nq + Ng)^2 float32 matrices of 35 GB each, so only
reidkit's runs, re-ranking and scoring query chunks without ever holding the
full matrix.

    python benchmarks/bench_rerank.py --scale market --scale msmt
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_eval import SCALES, make_data  # noqa: E402
from eval_measure import machine, measure  # noqa: E402


def progress_printer(total, label):
    state = {"done": 0, "t0": time.perf_counter(), "last": 0.0}

    def update(n):
        state["done"] += n
        now = time.perf_counter() - state["t0"]
        if now - state["last"] > 30 or state["done"] >= total:
            state["last"] = now
            print(f"  {label}: {state['done']}/{total} rows, {now:.0f} s", file=sys.stderr, flush=True)

    return update


def run_sparse(q, g, q_pids, g_pids, q_cams, g_cams, keep_matrix):
    from reidkit.evaluation.ranking import RankScorer, ScoreAccumulator
    from reidkit.evaluation.rerank import KReciprocal

    rec, out, blocks = {}, {}, []
    with measure(rec):
        t0 = time.perf_counter()
        rr = KReciprocal(q, g, 20, 6, 0.3, "cosine", progress=progress_printer(len(q) + len(g), "k-NN pass"))
        out["prepare_s"] = time.perf_counter() - t0
        out["v_entries_per_row"] = float(len(rr.v.data) / rr.n)
        scorer, acc = RankScorer(g_pids, g_cams), ScoreAccumulator()
        report = progress_printer(len(q), "re-ranked blocks")
        for start, block in rr.chunks():
            acc.add(scorer.score(block, q_pids[start : start + len(block)], q_cams[start : start + len(block)]), start)
            if keep_matrix:
                blocks.append(block)
            report(len(block))
        metrics = acc.summary()
    out.update(seconds=rec["seconds"], peak_extra_gb=rec["peak_extra_gb"],
               metrics={k: metrics[k] for k in ("rank1", "mAP", "mINP", "valid_queries")})
    return out, (np.concatenate(blocks) if keep_matrix else None)


def run_dense(q, g, q_pids, g_pids, q_cams, g_cams):
    from reidkit.evaluation.distance import pairwise_distance
    from reidkit.evaluation.ranking import evaluate_scores
    from tests.rerank_reference import re_ranking

    rec = {}
    with measure(rec):
        final = re_ranking(pairwise_distance(q, g), pairwise_distance(q, q), pairwise_distance(g, g), 20, 6, 0.3, dtype=np.float32)
    metrics = evaluate_scores(final, q_pids, g_pids, q_cams, g_cams)
    return {"seconds": rec["seconds"], "peak_extra_gb": rec["peak_extra_gb"],
            "metrics": {k: metrics[k] for k in ("rank1", "mAP", "mINP", "valid_queries")}}, final


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", action="append", choices=sorted(SCALES), help="repeatable; default market")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {"machine": machine(), "runs": []}
    for scale in args.scale or ["market"]:
        q, g, q_pids, g_pids, q_cams, g_cams = make_data(scale, args.dim, args.seed)
        run = {"scale": scale, "queries": len(q), "gallery": len(g), "dim": args.dim}
        if scale == "market":
            run["dense"], dense = run_dense(q, g, q_pids, g_pids, q_cams, g_cams)
            run["reidkit"], mine = run_sparse(q, g, q_pids, g_pids, q_cams, g_cams, keep_matrix=True)
            run["max_abs_difference"] = float(np.abs(dense.astype(np.float64) - mine).max())
            del dense, mine
        else:
            run["reidkit"], _ = run_sparse(q, g, q_pids, g_pids, q_cams, g_cams, keep_matrix=False)
        results["runs"].append(run)
        print(json.dumps(run, indent=1), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
