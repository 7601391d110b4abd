"""k-reciprocal re-ranking: the k-NN pass (its cost at scale) old vs new, on two feature kinds; optionally the whole re-ranking.

k-NN pass: every row's k1 + 1 nearest neighbours and maximum over the
(Nq + Ng) x (Nq + Ng) distances, at MSMT17 scale (93,820 items) with random
2048-d and clustered 256-d features (benchmarks/eval_features.py), one run.
New: reidkit's pass (square blocks of the symmetric matrix, each computed once
and used for its rows and, transposed, its columns' rows), run in full. Old: the
previous pass (tall row blocks against all items, torch.topk per block), timed on
its first --old-rows rows and extrapolated linearly (its cost is the same for
every row block); the two agree on those rows' neighbour lists (checked in the run).
Wall and CPU time (time.process_time) for both, and the ratio.

--full also runs reidkit's whole re-ranking + scoring (reusing the k-NN lists
just timed), by stage, times the previous Jaccard block (dense float64 over each
query chunk) on the first --old-chunks chunks, scaled, and reports the whole
re-ranking old vs new: old k-NN pass + shared stages (weights, expansion,
scoring) + old blocks against the new ones. With --full the new k-NN pass also
keeps its query x gallery dot products (as many queries as --cache-bytes
allows; reidkit's default bound when not given), which the new Jaccard blocks
read instead of a second product: its time includes those copies, and the
whole run's peak memory the kept matrix. The first --old-chunks chunks are
also timed the recomputing way (the product again, as with --cache-bytes 0),
scaled, for the stage's figure. --dense (Market scale only)
also runs the dense reference (the authors' / torchreid's re_ranking, float32)
and reports the largest difference of final distances. --device cuda runs the
k-NN pass (and the distances) on the GPU, and with it the sparse stages (weights,
expansion, Jaccard blocks: reidkit/evaluation/rerank_device.py); --sparse-numpy
keeps those in numpy on the host (the previous way), --sparse-on-device runs the
torch code on the CPU too.

--scale msmt-quarter / msmt-half: MSMT17's numbers of queries and gallery
items divided by 4 / 2 (same persons and cameras ratios), to compare methods
before a full-scale run. Each run records the load average before and after
(the machine is shared: CPU time is the steadier measure).

    python benchmarks/bench_rerank.py --scale msmt [--kind random --kind clustered] [--full] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from eval_features import KINDS, SCALES, make_data  # noqa: E402
from eval_measure import Clock, machine, measure  # noqa: E402


def old_knn_rows(computer, feats, k, n_rows, rows=None):
    """The previous k-NN pass, on the first n_rows rows: (2^25 / N)-row blocks against all items (torch product), topk per block."""
    import torch

    from reidkit.evaluation.distance import rows_per_chunk

    n = len(feats)
    fetch = min(n, k + 8)  # its margin for ties at the k-th place
    rows = rows or rows_per_chunk(n)
    knn, row_max = [], []
    for s in range(0, n_rows, rows):
        with torch.no_grad():  # the previous DistanceComputer.block (cosine), unchanged
            q = computer._prepare(feats[s : min(s + rows, n_rows)])
            d = (q @ computer.gallery.T).neg_().add_(1.0).clamp_(0.0, 2.0)
        d2 = d.numpy()
        np.square(d2, out=d2)
        vals, idx = torch.topk(torch.from_numpy(d2), fetch, dim=1, largest=False, sorted=True)
        vals, idx = vals.numpy(), idx.numpy()
        order = np.lexsort((idx, vals), axis=-1)
        knn.append(np.take_along_axis(idx, order, axis=1)[:, :k])
        row_max.append(d2.max(axis=1))
    return np.concatenate(knn), np.concatenate(row_max)


def bench_knn(q, g, old_rows, device="cpu", k=21, keep=False, cache_bytes=None):
    """The k-NN pass new vs old; keep: also return the new pass's result, with the query x gallery part it kept
    (the whole re-ranking's pass: it keeps what cache_bytes allows, as KReciprocal does)."""
    import torch

    from reidkit.evaluation.distance import DistanceComputer
    from reidkit.evaluation.rerank import _knn_pass, _query_gallery

    feats = np.concatenate([q, g])
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    new_clock, old_clock, rec = Clock(), Clock(), {}
    with measure(rec), new_clock:
        computer = DistanceComputer(feats, "cosine", device)
        kept = _query_gallery(computer, len(q), len(q), cache_bytes) if keep else None
        knn, row_max, knn_d2 = _knn_pass(computer, feats, k, progress=progress_printer(len(feats), "new k-NN pass"), kept=kept)
        sync()
    old_rows = min(old_rows, len(feats))
    computer = DistanceComputer(feats, "cosine", "cpu")
    with old_clock:
        old_knn, old_max = old_knn_rows(computer, feats, k, old_rows)
    factor = len(feats) / old_rows
    old = {key: v * factor for key, v in old_clock.report().items()}
    return {"items": len(feats), "dim": feats.shape[1],
            "new": {**new_clock.report(), "peak_extra_gb": rec["peak_extra_gb"], "kept_queries": 0 if kept is None else len(kept.data),
                    "kept_gb": 0.0 if kept is None else kept.data.nbytes / 2**30},
            "old": {**old, "measured_rows": old_rows, "measured": old_clock.report(), "extrapolated": old_rows < len(feats)},
            "same_lists_on_old_rows": bool((old_knn == knn[:old_rows]).all()),
            **list_differences(feats, old_knn, knn[:old_rows]),
            "max_rel_difference_row_max": float(np.abs(old_max / row_max[:old_rows] - 1).max()),
            "speedup": {key: old[key] / new_clock.report()[key] for key in ("wall", "cpu")}}, ((knn, row_max, knn_d2), kept) if keep else None


def list_differences(feats, want, got):
    """Rows whose neighbour lists differ, and the largest gap between the two lists' float64 cosine d^2, place by
    place (near-ties that the two matrix products round apart give gaps at float32 rounding, about 1e-7)."""
    rows = np.nonzero((want != got).any(1))[0]
    unit = feats / np.linalg.norm(feats.astype(np.float64), axis=1, keepdims=True)
    gap = 0.0
    for r in rows:
        d2 = lambda idx: np.square(np.clip(1.0 - unit[idx] @ unit[r], 0.0, 2.0))
        gap = max(gap, float(np.abs(d2(want[r]) - d2(got[r])).max()))
    return {"rows_with_different_lists": int(len(rows)), "max_float64_d2_gap_in_those_rows": gap}


def progress_printer(total, label):
    state = {"done": 0, "t0": time.perf_counter(), "last": 0.0}

    def update(n):
        state["done"] += n
        now = time.perf_counter() - state["t0"]
        if now - state["last"] > 30 or state["done"] >= total:
            state["last"] = now
            print(f"  {label}: {state['done']}/{total} rows, {now:.0f} s", file=sys.stderr, flush=True)

    return update


def host_sparse(rr):
    """(V as SparseRows, col_ptr, col_rows, col_vals) in numpy: the device path's tensors copied to the host."""
    from reidkit.evaluation.rerank import SparseRows

    if not rr.sparse_on_device:
        return rr.v, rr.col_ptr, rr.col_rows, rr.col_vals
    v = SparseRows(*(t.cpu().numpy() for t in (rr.v.indptr, rr.v.indices, rr.v.data)))
    return (v, *(t.cpu().numpy() for t in (rr.col_ptr, rr.col_rows, rr.col_vals)))


def old_jaccard_block(rr, start, stop, host):
    """The previous KReciprocal.block: dense float64 min-sum, Jaccard and original distances over the whole block.
    host: host_sparse(rr)."""
    from reidkit.evaluation.rerank import expand_ranges

    v, col_ptr, col_rows, col_vals = host
    q_rows = np.arange(start, stop)
    which, cols, vq = v.gather(q_rows)
    rep, pos = expand_ranges(col_ptr[cols], col_ptr[cols + 1])
    mins = np.minimum(vq[rep], col_vals[pos])
    keys = which[rep] * rr.ng + col_rows[pos]
    temp_min = np.bincount(keys, weights=mins, minlength=len(q_rows) * rr.ng).reshape(len(q_rows), rr.ng)
    jaccard = 1.0 - temp_min / (2.0 - temp_min)
    orig = rr.computer.block(rr.feats[start:stop], slice(rr.nq, rr.n)).astype(np.float64) ** 2
    orig /= rr.row_max[start:stop, None]
    return ((1.0 - rr.lambda_) * jaccard + rr.lambda_ * orig).astype(np.float32)


def reuse(timed):
    """A stand-in for rerank._knn_pass giving the timed pass's result: its lists, and the query x gallery part it kept."""
    lists, timed_kept = timed

    def knn_pass(computer, feats, k, rows=None, progress=None, kept=None):
        assert (kept is None) == (timed_kept is None) and (kept is None or kept.data.shape == timed_kept.data.shape)
        if kept is not None:
            kept.data = timed_kept.data
        return lists

    return knn_pass


def run_sparse(q, g, q_pids, g_pids, q_cams, g_cams, device, keep_matrix, knn=None, old_chunks=0, cache_bytes=None,
               sparse_on_device=None):
    """reidkit's whole re-ranking + scoring, by stage. knn: the k-NN pass's result and what it kept (bench_knn's),
    already timed (reused, not rerun). old_chunks: also time the previous Jaccard block, and the recomputing new one,
    on the first query chunks (results compared), to scale. sparse_on_device: KReciprocal's (None: off the CPU)."""
    import reidkit.evaluation.rerank as rerank
    from reidkit.evaluation.ranking import RankScorer, ScoreAccumulator

    rec, out, blocks = {}, {}, []
    clock, prep_clock, block_clock, score_clock, old_clock, again_clock = Clock(), Clock(), Clock(), Clock(), Clock(), Clock()
    saved = rerank._knn_pass
    if knn is not None:
        rerank._knn_pass = reuse(knn)
        cache_bytes = 0 if knn[1] is None else knn[1].data.nbytes  # the same bound: the same queries kept
    try:
        with measure(rec), clock:
            with prep_clock:
                rr = rerank.KReciprocal(q, g, 20, 6, 0.3, "cosine", device, cache_bytes=cache_bytes,
                                        progress=progress_printer(len(q) + len(g), "k-NN pass"), sparse_on_device=sparse_on_device)
            out["v_entries_per_row"] = float(len(rr.v.data) / rr.n)
            out["sparse_on_device"] = rr.sparse_on_device
            scorer, acc = RankScorer(g_pids, g_cams), ScoreAccumulator()
            report = progress_printer(len(q), "re-ranked blocks")
            # evaluation's blocks: device tensors ranked there when the sparse stages run off the CPU, else numpy
            chunks, old_done, old_rows, differ, differ_again = rr.chunks(tensors=None), 0, 0, 0.0, 0.0
            while True:
                with block_clock:
                    item = next(chunks, None)
                if item is None:
                    break
                start, block = item
                with score_clock:
                    acc.add(scorer.score(block, q_pids[start : start + len(block)], q_cams[start : start + len(block)]), start)
                if not isinstance(block, np.ndarray) and (keep_matrix or old_done < old_chunks):
                    block = block.cpu().numpy()  # untimed: only for the comparisons
                if keep_matrix:
                    blocks.append(block)
                if old_done < old_chunks:  # the first old_chunks chunks again, the previous way
                    host = host if old_done else host_sparse(rr)  # untimed: the old block's inputs in numpy
                    with old_clock:
                        old = old_jaccard_block(rr, start, start + len(block), host)
                    differ = max(differ, float(np.abs(old.astype(np.float64) - block).max()))
                    with again_clock:
                        again = recomputed_block(rr, start, start + len(block))
                    differ_again = max(differ_again, float(np.abs(again.astype(np.float64) - block).max()))
                    old_done, old_rows = old_done + 1, old_rows + len(block)
                report(len(block))
            metrics = acc.summary()
    finally:
        rerank._knn_pass = saved
    out.update(seconds=rec["seconds"], cpu_seconds=clock.cpu, peak_extra_gb=rec["peak_extra_gb"],
               stages={"weights_and_expansion" if knn is not None else "knn_weights_and_expansion": prep_clock.report(),
                       "jaccard_blocks": block_clock.report(), "scoring": score_clock.report()},
               metrics={k: metrics[k] for k in ("rank1", "mAP", "mINP", "valid_queries")})
    if old_rows:
        out["old_jaccard_blocks"] = {"measured_queries": old_rows, "measured": old_clock.report(),
                                     "scaled": {k: v * len(q) / old_rows for k, v in old_clock.report().items()},
                                     "max_abs_difference_from_new": differ}
        out["recomputing_jaccard_blocks"] = {"measured_queries": old_rows, "measured": again_clock.report(),
                                             "scaled": {k: v * len(q) / old_rows for k, v in again_clock.report().items()},
                                             "max_abs_difference_from_new": differ_again}
    out["kept_queries"] = 0 if rr.kept is None else len(rr.kept.data)
    return out, (np.concatenate(blocks) if keep_matrix else None)


def recomputed_block(rr, start, stop):
    """KReciprocal.block with nothing kept: the query x gallery product computed again (--cache-bytes 0's way)."""
    from reidkit.evaluation.rerank import _torch_threads

    kept, rr.kept = rr.kept, None
    try:
        with _torch_threads(1):  # as chunks() runs it: numpy's product beside one torch thread
            return rr.block(start, stop)
    finally:
        rr.kept = kept


def whole(run):
    """Whole re-ranking + scoring, new and old: the old k-NN pass and Jaccard blocks (scaled) with the shared stages.
    The new one's peak extra memory: the pass's (the kept matrix included), or the kept matrix and the later stages'."""
    full, knn = run["reidkit"], run["knn_pass"]
    st = full["stages"]
    shared = {k: st["weights_and_expansion"][k] + st["scoring"][k] for k in ("wall", "cpu")}
    new = {k: knn["new"][k] + shared[k] + st["jaccard_blocks"][k] for k in ("wall", "cpu")}
    peak = max(knn["new"]["peak_extra_gb"], knn["new"]["kept_gb"] + full["peak_extra_gb"])
    if "old_jaccard_blocks" not in full:  # --old-chunks 0: the new way alone (compared with another run's)
        return {"new": new, "new_peak_extra_gb": peak}
    old = {k: knn["old"][k] + shared[k] + full["old_jaccard_blocks"]["scaled"][k] for k in ("wall", "cpu")}
    return {"new": new, "old": old, "speedup": {k: old[k] / new[k] for k in ("wall", "cpu")}, "new_peak_extra_gb": peak}


def run_dense(q, g, q_pids, g_pids, q_cams, g_cams):
    from reidkit.evaluation.distance import pairwise_distance
    from reidkit.evaluation.ranking import evaluate_scores
    from tests.rerank_reference import re_ranking

    rec, clock = {}, Clock()
    with measure(rec), clock:
        final = re_ranking(pairwise_distance(q, g), pairwise_distance(q, q), pairwise_distance(g, g), 20, 6, 0.3, dtype=np.float32)
    metrics = evaluate_scores(final, q_pids, g_pids, q_cams, g_cams)
    return {"seconds": rec["seconds"], "cpu_seconds": clock.cpu, "peak_extra_gb": rec["peak_extra_gb"],
            "metrics": {k: metrics[k] for k in ("rank1", "mAP", "mINP", "valid_queries")}}, final


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", action="append", choices=sorted(SCALES), help="repeatable; default msmt")
    ap.add_argument("--kind", action="append", choices=KINDS, help="repeatable; default both")
    ap.add_argument("--dim", type=int, help="feature dimension (default: 2048 random, 256 clustered)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--old-rows", type=int, default=4096, help="rows the old k-NN pass is timed on, then extrapolated")
    ap.add_argument("--full", action="store_true", help="also time reidkit's whole re-ranking + scoring (reusing the timed k-NN pass)")
    ap.add_argument("--old-chunks", type=int, default=8, help="with --full: query chunks the previous Jaccard block is timed on, then scaled")
    ap.add_argument("--cache-bytes", type=int, help="with --full: bound of the kept query x gallery products (default: reidkit's; 0: none kept)")
    ap.add_argument("--dense", action="store_true", help="also run the dense reference (Market scale only)")
    ap.add_argument("--device", default="cpu", help="torch device of the k-NN pass and distances")
    ap.add_argument("--sparse-on-device", dest="sparse_on_device", action="store_const", const=True,
                    help="with --full: weights, expansion and Jaccard blocks in torch on --device (default: off the CPU only)")
    ap.add_argument("--sparse-numpy", dest="sparse_on_device", action="store_const", const=False,
                    help="with --full: those stages in numpy on the host even with a GPU --device (the previous way)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.device != "cpu":
        from reidkit.errors import ReidkitError
        from reidkit.devices import check_device

        try:
            check_device(args.device)
        except ReidkitError as exc:
            sys.exit(f"error: {exc}")
    results = {"machine": machine(), "runs": []}
    for scale in args.scale or ["msmt"]:
        for kind in args.kind or list(KINDS):
            q, g, q_pids, g_pids, q_cams, g_cams = make_data(scale, kind, args.dim, args.seed)
            run = {"scale": scale, "kind": kind, "queries": len(q), "gallery": len(g), "dim": q.shape[1], "device": args.device,
                   "load_average_before": os.getloadavg()}
            run["knn_pass"], knn = bench_knn(q, g, args.old_rows, args.device, keep=args.full, cache_bytes=args.cache_bytes)
            run["load_average_after"] = os.getloadavg()
            print(json.dumps(run, indent=1), flush=True)
            if args.dense and scale == "market":
                run["dense"], dense = run_dense(q, g, q_pids, g_pids, q_cams, g_cams)
            if args.full or (args.dense and scale == "market"):
                run["reidkit"], mine = run_sparse(q, g, q_pids, g_pids, q_cams, g_cams, args.device,
                                                  keep_matrix=args.dense and scale == "market", knn=knn, old_chunks=args.old_chunks,
                                                  cache_bytes=args.cache_bytes, sparse_on_device=args.sparse_on_device)
                if args.full:
                    run["whole"] = whole(run)
                if args.dense and scale == "market":
                    run["max_abs_difference"] = float(np.abs(dense.astype(np.float64) - mine).max())
                    del dense, mine
                del knn  # the kept matrix goes before the next kind's pass
                print(json.dumps(run, indent=1), flush=True)
            results["runs"].append(run)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
