"""Ranking and scoring (CMC, mAP, mINP): reidkit against the classic full argsort + per-query loop, on two feature kinds.

Features (benchmarks/eval_features.py): random 2048-d vectors, and clustered
256-d ones shaped like a trained model's (persons as tight clusters), at
Market-1501 scale (3,368 x 15,913) and MSMT17 scale (11,659 x 82,161), one run
for both kinds. The distance matrix product is the same for both methods and is
timed separately from ranking + scoring; every time is given as wall and CPU
(time.process_time: both cores' work, robust to other jobs on a shared machine).
At MSMT17 scale the classic approach needs about 15 GB (float32 distances, int64
argsort, int32 matches) and minutes of sorting, so it runs on the first
--classic-queries queries: its times are extrapolated linearly and its memory is
the size of those three full matrices (said so in the output); both methods are
checked to agree exactly on that subset. ``--device cuda`` computes distances,
ranking and scoring on the GPU (blocks stay on the device); the classic
approach stays on the CPU.

    python benchmarks/bench_eval.py --scale msmt [--kind random --kind clustered] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_features import KINDS, SCALES, make_data  # noqa: E402
from eval_measure import Clock, machine, measure  # noqa: E402


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


def tied_positives(dist, q_pids, g_pids, q_cams, g_cams) -> int:
    """How many (query, positive) pairs lie at exactly the distance of one of the query's negatives."""
    total = 0
    for i in range(len(dist)):
        same = g_pids == q_pids[i]
        total += int(np.isin(dist[i][same & (g_cams != q_cams[i])], dist[i][~same]).sum())
    return total


def run_reidkit(q, g, q_pids, g_pids, q_cams, g_cams, device="cpu"):
    import torch

    from reidkit.evaluation.distance import DistanceComputer
    from reidkit.evaluation.ranking import RankScorer, ScoreAccumulator

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    rec, dist_clock, rank_clock = {}, Clock(), Clock()
    with measure(rec):
        computer = DistanceComputer(g, "cosine", device)
        scorer = RankScorer(g_pids, g_cams, None, "standard")
        acc = ScoreAccumulator()
        chunks = computer.chunks(q)
        while True:
            with dist_clock:
                item = next(chunks, None)
                sync()
            if item is None:
                break
            start, block = item
            with rank_clock:
                acc.add(scorer.score(block, q_pids[start : start + len(block)], q_cams[start : start + len(block)]), start)
            del block, item
        metrics = acc.summary()
    return metrics, {"distance": dist_clock.report(), "ranking": rank_clock.report(), "total_wall": rec["seconds"],
                     "peak_extra_gb": rec["peak_extra_gb"]}


def run_classic(dist, q_pids, g_pids, q_cams, g_cams):
    rec, clock = {}, Clock()
    with measure(rec), clock:
        metrics = classic_eval(dist, q_pids, g_pids, q_cams, g_cams)
    return metrics, {"ranking": clock.report(), "peak_extra_gb": rec["peak_extra_gb"]}


def bench(scale, kind, dim, seed, classic_queries, device="cpu"):
    from reidkit.evaluation.distance import pairwise_distance
    from reidkit.evaluation.ranking import evaluate_scores

    q, g, q_pids, g_pids, q_cams, g_cams = make_data(scale, kind, dim, seed)
    nq, ng = len(q), len(g)
    out = {"scale": scale, "kind": kind, "queries": nq, "gallery": ng, "dim": q.shape[1], "device": device}
    mine, t_mine = run_reidkit(q, g, q_pids, g_pids, q_cams, g_cams, device)
    out["reidkit"] = {**t_mine, "metrics": {k: mine[k] for k in ("rank1", "mAP", "mINP", "valid_queries")}}
    sub = nq if not classic_queries or classic_queries >= nq else classic_queries
    dist_clock = Clock()
    with dist_clock:
        dist = pairwise_distance(q[:sub], g, "cosine")
    classic, t_classic = run_classic(dist, q_pids[:sub], g_pids, q_cams[:sub], g_cams)
    factor = nq / sub
    scaled = lambda t: {k: v * factor for k, v in t.items()}
    out["classic"] = {"measured_queries": sub, "extrapolated": sub < nq, "metrics": classic,
                      "distance": scaled(dist_clock.report()), "ranking": scaled(t_classic["ranking"]),
                      "measured": {"distance": dist_clock.report(), **t_classic},
                      # distances float32 + argsort int64 + matches int32, all (Nq x Ng) at once
                      "peak_extra_gb": dist.nbytes / 2**30 + t_classic["peak_extra_gb"] if sub == nq else nq * ng * 16 / 2**30}
    # Same metrics on the classic's queries: the two methods must agree. With float32 distances a positive can tie
    # exactly with a negative, where the classic's argsort order is arbitrary and reidkit ranks the negative first
    # (docs/eval.md): such ties are counted, and the exact agreement is checked on float64 distances of the same
    # features, where they do not occur (counted too).
    labels = (q_pids[:sub], g_pids, q_cams[:sub], g_cams)
    same = lambda a, b: all(abs(a[k] - b[k]) < 1e-6 for k in ("rank1", "mAP", "mINP")) and a["valid_queries"] == b["valid_queries"]
    out["agree_float32"] = same(evaluate_scores(dist, *labels), classic)
    out["ties_float32"] = tied_positives(dist, *labels)
    del dist
    dist64 = pairwise_distance(q[:sub].astype(np.float64), g.astype(np.float64), "cosine")
    out["ties_float64"] = tied_positives(dist64, *labels)
    out["agree"] = same(evaluate_scores(dist64, *labels), classic_eval(dist64, *labels))
    out["speedup_ranking"] = {k: out["classic"]["ranking"][k] / out["reidkit"]["ranking"][k] for k in ("wall", "cpu")}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", action="append", choices=sorted(SCALES), help="repeatable; default market")
    ap.add_argument("--kind", action="append", choices=KINDS, help="repeatable; default both")
    ap.add_argument("--dim", type=int, help="feature dimension (default: 2048 random, 256 clustered)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device for reidkit's distances, ranking and scoring")
    ap.add_argument("--classic-queries", type=int, default=2000, help="classic on this many queries at MSMT17 scale, then extrapolated")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    import torch

    if args.device != "cpu":
        from reidkit.errors import ReidkitError
        from reidkit.devices import check_device

        try:
            check_device(args.device)
        except ReidkitError as exc:
            sys.exit(f"error: {exc}")
    results = {"machine": machine(), "torch_threads": torch.get_num_threads(), "runs": []}
    for scale in args.scale or ["market"]:
        for kind in args.kind or list(KINDS):
            r = bench(scale, kind, args.dim, args.seed, args.classic_queries if scale == "msmt" else None, args.device)
            results["runs"].append(r)
            print(json.dumps(r, indent=1), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
