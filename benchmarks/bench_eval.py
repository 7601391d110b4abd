"""Ranking and scoring (CMC, mAP, mINP): reidkit's chunked counting vs the classic full argsort + per-query loop.

Random 2048-d features at Market-1501 scale (3,368 x 15,913) and MSMT17 scale
(11,659 x 82,161), one run. The distance matrix product is the same for both
and is timed separately from ranking + scoring. At MSMT17 scale the classic
approach needs about 15 GB (float32 distances, int64 argsort, int32 matches)
and minutes of sorting, so it runs on the first --classic-queries queries: its
times are extrapolated linearly and its memory is the size of those three
full matrices (said so in the output); both methods are checked to agree
exactly on that subset.

    python benchmarks/bench_eval.py --scale market --scale msmt
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_measure import machine, measure  # noqa: E402

SCALES = {  # queries, gallery, identities, cameras, distractors in the gallery
    "market": (3368, 15913, 750, 6, 2793),
    "msmt": (11659, 82161, 3060, 15, 0),
}


def make_data(scale, dim, seed):
    nq, ng, ids, cams, distractors = SCALES[scale]
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, ids + 1, nq)
    g_pids = np.concatenate([rng.integers(1, ids + 1, ng - distractors), np.zeros(distractors, np.int64)])
    q_cams, g_cams = rng.integers(0, cams, nq), rng.integers(0, cams, ng)
    q = rng.standard_normal((nq, dim), dtype=np.float32)
    g = rng.standard_normal((ng, dim), dtype=np.float32)
    return q, g, q_pids, g_pids, q_cams, g_cams


def classic_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """torchreid's eval_market1501 (full argsort, then per-query masking), with AP vectorised per query."""
    num_q, num_g = distmat.shape
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_AP, all_INP = [], [], []
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        pos_max_idx = np.max(np.where(raw_cmc == 1))
        all_INP.append(cmc[pos_max_idx] / (pos_max_idx + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp = raw_cmc.cumsum() / np.arange(1, len(raw_cmc) + 1) * raw_cmc
        all_AP.append(tmp.sum() / raw_cmc.sum())
    cmc = np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_cmc)
    return {"rank1": float(cmc[0]), "mAP": float(np.mean(all_AP)), "mINP": float(np.mean(all_INP)), "valid_queries": len(all_AP)}


def run_reidkit(q, g, q_pids, g_pids, q_cams, g_cams):
    from reidkit.evaluation.distance import DistanceComputer
    from reidkit.evaluation.ranking import RankScorer, ScoreAccumulator

    rec, times = {}, {"distance": 0.0, "ranking": 0.0}
    with measure(rec):
        computer = DistanceComputer(g, "cosine")
        scorer = RankScorer(g_pids, g_cams, None, "standard")
        acc = ScoreAccumulator()
        chunks = computer.chunks(q)
        while True:
            t0 = time.perf_counter()
            item = next(chunks, None)
            t1 = time.perf_counter()
            times["distance"] += t1 - t0
            if item is None:
                break
            start, block = item
            acc.add(scorer.score(block, q_pids[start : start + len(block)], q_cams[start : start + len(block)]), start)
            times["ranking"] += time.perf_counter() - t1
        metrics = acc.summary()
    return metrics, {**times, "total": rec["seconds"], "peak_extra_gb": rec["peak_extra_gb"]}


def run_classic(q, g, q_pids, g_pids, q_cams, g_cams):
    from reidkit.evaluation.distance import pairwise_distance

    rec_d, rec_r = {}, {}
    with measure(rec_d):
        dist = pairwise_distance(q, g, "cosine")
    with measure(rec_r):
        metrics = classic_eval(dist, q_pids, g_pids, q_cams, g_cams)
    peak = rec_d["peak_extra_gb"] + rec_r["peak_extra_gb"]  # the matrix stays alive during ranking
    return metrics, {"distance": rec_d["seconds"], "ranking": rec_r["seconds"], "peak_extra_gb": peak}


def bench(scale, dim, seed, classic_queries):
    q, g, q_pids, g_pids, q_cams, g_cams = make_data(scale, dim, seed)
    nq, ng = len(q), len(g)
    out = {"scale": scale, "queries": nq, "gallery": ng, "dim": dim}
    mine, t_mine = run_reidkit(q, g, q_pids, g_pids, q_cams, g_cams)
    out["reidkit"] = {**t_mine, "metrics": {k: mine[k] for k in ("rank1", "mAP", "mINP", "valid_queries")}}
    sub = nq if not classic_queries or classic_queries >= nq else classic_queries
    classic, t_classic = run_classic(q[:sub], g, q_pids[:sub], g_pids, q_cams[:sub], g_cams)
    factor = nq / sub
    out["classic"] = {"measured_queries": sub, "extrapolated": sub < nq, "metrics": classic,
                      "distance": t_classic["distance"] * factor, "ranking": t_classic["ranking"] * factor,
                      "measured": t_classic,
                      # distances float32 + argsort int64 + matches int32, all (Nq x Ng) at once
                      "peak_extra_gb": t_classic["peak_extra_gb"] if sub == nq else nq * ng * 16 / 2**30}
    # Same metrics on the classic's queries: the two methods must agree exactly.
    from reidkit.evaluation.ranking import evaluate_scores
    from reidkit.evaluation.distance import pairwise_distance

    check = evaluate_scores(pairwise_distance(q[:sub], g, "cosine"), q_pids[:sub], g_pids, q_cams[:sub], g_cams)
    out["agree"] = all(abs(check[k] - classic[k]) < 1e-6 for k in ("rank1", "mAP", "mINP")) and check["valid_queries"] == classic["valid_queries"]
    out["speedup_ranking"] = out["classic"]["ranking"] / out["reidkit"]["ranking"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", action="append", choices=sorted(SCALES), help="repeatable; default market")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classic-queries", type=int, default=2000, help="classic on this many queries at MSMT17 scale, then extrapolated")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    import torch

    results = {"machine": machine(), "torch_threads": torch.get_num_threads(), "runs": []}
    for scale in args.scale or ["market"]:
        r = bench(scale, args.dim, args.seed, args.classic_queries if scale == "msmt" else None)
        results["runs"].append(r)
        print(json.dumps(r, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
