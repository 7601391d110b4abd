"""A generated run of 200K+ small items: opened, read through the training data loader (2 workers), compacted, read
again; wall time, open files and peak RSS per process, with the bounded handle LRU and with the old behaviour
(one handle per chunk kept forever, simulated by REIDKIT_OPEN_CHUNKS=1000000).

    .venv/bin/python benchmarks/bench_run_scale.py --out /tmp/scale --items 200000

The run's images are real ``recolor`` outputs: ``reidkit expand`` (weight-free) makes a pool of them on a
32x16 synthetic world, and the run is written from that pool through the store's chunk API in 64-item chunks
(``reidkit expand`` itself makes ~110 images/s on 2 shared cores: 30 minutes for 200K). Each item gets its own
(source index, variant) key over the world's train images. Results: OUT/results.json and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD = "1000000"  # an LRU this large never closes a handle: the old behaviour
NEW = ""  # the default (reidkit.store.chunks.OPEN_CHUNKS)


def reidkit(*args):
    exe = Path(sys.executable).parent / "reidkit"
    subprocess.run([str(exe), *map(str, args)], check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def make_run(out: Path, items: int, chunk: int) -> Path:
    import numpy as np

    from reidkit import open_store
    from reidkit.store import chunks

    store_path = out / "w.h5"
    if not store_path.exists():
        reidkit("adapt", "synthetic", "--out", store_path, "--ids", 500, "--outfits", 2, "--cameras", 4, "--shots", 2,
                "--height", 32, "--width", 16)
        reidkit("expand", store_path, "--variants", 1, "--limit", 1000, "--name", "pool", "--chunk-size", 256,
                "--batch-size", 64)
    store = open_store(store_path)
    d = chunks.part_dir(store, "runs", "big")
    if chunks.chunk_files(d):
        return store_path
    pool = store.run("pool")
    pool_cols = {c: pool.column(c) for c in ("prompt", "target_clothes_key", "scores")}
    images = [pool.image_bytes(i) for i in range(len(pool))]
    train = store.split("train")
    d = chunks.create_part(store, "runs", "big", {"generator": "recolor", "settings": {"pool": "pool", "items": items}})
    t0 = time.perf_counter()
    for start in range(0, items, chunk):
        rows = range(start, min(items, start + chunk))
        src = [int(train[i % len(train)]) for i in rows]
        chunks.write_chunk(d, "shard0of1", {
            "image": [images[i % len(images)] for i in rows], "source_index": src,
            "variant": [i // len(train) for i in rows], "pid": [int(store.pid[s]) for s in src],
            "camera": [int(store.camera[s]) for s in src],
            "target_clothes_key": [str(pool_cols["target_clothes_key"][i % len(images)]) for i in rows],
            "prompt": [str(pool_cols["prompt"][i % len(images)]) for i in rows], "seed": list(rows),
            "kept": [True] * len(rows), "reject_reason": [""] * len(rows),
            "scores": [str(pool_cols["scores"][i % len(images)]) for i in rows]})
    print(f"wrote {items} items in {len(chunks.chunk_files(d))} chunks in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    np.save(out / "order.npy", np.random.default_rng(0).permutation(items))
    return store_path


def _status(key: str) -> int:
    """kB from /proc/self/status (VmHWM: peak RSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def measure_open(store_path) -> dict:
    """Child process: open the run and build the training table (what every training start does)."""
    from reidkit import open_store
    from reidkit.store import chunks
    from reidkit.training.data import build_items

    opened = []
    real = chunks.chunk_items
    chunks.chunk_items = lambda p: opened.append(p) or real(p)
    t0 = time.perf_counter()
    store = open_store(store_path)
    n = len(store.run("big"))
    t_len = time.perf_counter() - t0
    items = build_items(store, ["big"])
    return {"len_s": t_len, "build_items_s": time.perf_counter() - t0, "items": n, "table": len(items.kind),
            "chunks_opened_to_count": len(opened), "fds": _fds(), "peak_rss_mb": _status("VmHWM") / 1024}


def measure_read(store_path, count: int, workers: int) -> dict:
    """Child process: the training data loader (TrainDataset, 2 workers) over ``count`` generated items, random order."""
    import numpy as np
    import torch

    from reidkit import open_store
    from reidkit.training.data import GENERATED, TrainDataset, build_items

    class Probe(TrainDataset):
        def __getitem__(self, key):
            out = super().__getitem__(key)
            probe = key % 256 == 0  # listing /proc/self/fd per item would cost more than the read
            out["fds"] = _fds() if probe else 0
            out["rss_kb"] = _status("VmHWM") if probe else 0
            return out

    store = open_store(store_path)
    t0 = time.perf_counter()
    items = build_items(store, ["big"])
    gen = np.flatnonzero(items.kind == GENERATED)
    order = gen[np.load(Path(store_path).parent / "order.npy")[:count]]
    ds = Probe(store, items, 32, 16, augment_images=False)
    loader = torch.utils.data.DataLoader(ds, sampler=order.tolist(), batch_size=256, num_workers=workers)
    fds = rss = seen = 0
    for batch in loader:
        fds, rss = max(fds, int(batch["fds"].max())), max(rss, int(batch["rss_kb"].max()))
        seen += len(batch["item"])
    wall = time.perf_counter() - t0
    return {"items": seen, "wall_s": wall, "items_per_s": seen / wall, "worker_fds_max": fds,
            "worker_peak_rss_mb": rss / 1024, "main_fds": _fds(), "main_peak_rss_mb": _status("VmHWM") / 1024}


def measure_compact(store_path) -> dict:
    """Child process: ``reidkit compact`` (the library call behind it), timed, with its peak RSS."""
    from reidkit.store.compact import compact_run

    t0 = time.perf_counter()
    out = compact_run(store_path, "big")
    return {**out, "wall_s": time.perf_counter() - t0, "peak_rss_mb": _status("VmHWM") / 1024}


def child(mode: str, store_path, lru: str, **kw) -> dict:
    env = {**os.environ, "REIDKIT_OPEN_CHUNKS": lru}
    code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.bench_run_scale import *; "
            f"print(json.dumps(measure_{mode}({str(store_path)!r}, **{kw!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode:
        return {"failed": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--read", type=int, default=0, help="items read per pass (0: all)")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    count = a.read or a.items
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
           "load_before": os.getloadavg(), "items": a.items, "chunk": a.chunk, "read": count, "workers": a.workers}
    t0 = time.perf_counter()
    store_path = make_run(a.out, a.items, a.chunk)
    res["write_s"] = time.perf_counter() - t0
    from reidkit import open_store
    from reidkit.store import chunks

    d = open_store(store_path).run("big").dir
    res["chunks_before"] = len(chunks.chunk_files(d))
    index = d / chunks.INDEX_NAME
    res["open_index"] = child("open", store_path, NEW)
    kept = index.read_bytes()
    index.unlink()  # a part from before the index: every chunk opened to count it
    res["open_no_index"] = child("open", store_path, NEW)
    index.write_bytes(kept)
    for name, lru in (("new", NEW), ("old", OLD)):
        res[f"read_{name}"] = child("read", store_path, lru, count=count, workers=a.workers)
        print(name, res[f"read_{name}"], file=sys.stderr)
    res["compact"] = child("compact", store_path, NEW)
    res["open_compacted"] = child("open", store_path, NEW)
    for name, lru in (("new", NEW), ("old", OLD)):
        res[f"read_compacted_{name}"] = child("read", store_path, lru, count=count, workers=a.workers)
    res["load_after"] = os.getloadavg()
    (a.out / "results.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
