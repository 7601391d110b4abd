"""Adapting speed: `reidkit adapt market1501` on a Market-1501 of the real size vs. reading every file once.

Builds Market-1501-v15.09.15 with all 36,036 published file names (12,936
train, 3,368 query, 19,732 gallery incl. junk and distractors) as 128x64
JPEGs (distinct files, Market's crop size), then in one run:
  1. baseline: read every file once (plain Python, one thread), images/s;
  2. reidkit: the `reidkit adapt market1501` console script end to end
     (scan, read, validate, write HDF5, print the summary), images/s;
  3. validation alone over the same bytes, images/s: imagecodec.probe by
     full decode (what the writer did first) and by structure (what it does now).

    python benchmarks/bench_adapt.py [--work DIR] [--keep]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ helpers

import numpy as np  # noqa: E402

from tests.miniature_layouts import REAL_FOLDERS, real_size_names  # noqa: E402


def market_jpegs(count: int = 64) -> list[bytes]:
    """A few distinct 128x64 person-sized JPEGs (smooth body + noise, so sizes are realistic)."""
    import cv2

    out = []
    for k in range(count):
        rng = np.random.default_rng(k)
        yy, xx = np.mgrid[0:128, 0:64]
        img = (np.stack([yy * 2, xx * 4, (yy + xx) * 1.5], -1) + rng.integers(0, 60, 3)) % 255
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def build(work: Path) -> tuple[Path, list[Path]]:
    base = work / REAL_FOLDERS["market1501"]
    jpegs = market_jpegs()
    files = []
    for folder, names in real_size_names("market1501").items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            path = base / folder / name
            path.write_bytes(jpegs[i % len(jpegs)])
            files.append(path)
    return base, files


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for the layout and the store (default: a temp folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the layout and the store.")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_adapt_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        seconds, (base, files) = timed(lambda: build(work))
        n = len(files)
        size = sum(p.stat().st_size for p in files)
        print(f"layout: {n} files, {size / 1e6:.1f} MB, built in {seconds:.1f} s")

        read_s, blobs = timed(lambda: [p.read_bytes() for p in files])
        print(f"baseline  read every file once        : {read_s:6.2f} s  {n / read_s:9.0f} images/s")

        from reidkit.store.imagecodec import probe

        decode_s, _ = timed(lambda: [probe(b, decode=True) for b in blobs])
        print(f"validation by full decode (1 thread)   : {decode_s:6.2f} s  {n / decode_s:9.0f} images/s")
        probe_s, _ = timed(lambda: [probe(b) for b in blobs])
        print(f"validation by structure (1 thread)     : {probe_s:6.2f} s  {n / probe_s:9.0f} images/s")
        del blobs

        exe = shutil.which("reidkit", path=str(Path(sys.executable).parent)) or "reidkit"
        store = work / "market.h5"
        cmd = [exe, "adapt", "market1501", "--root", str(base), "--out", str(store), "--force"]
        adapt_s, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True))
        if proc.returncode != 0:
            raise SystemExit(f"reidkit adapt failed: {proc.stderr.strip().splitlines()[-1]}")
        print(f"reidkit adapt market1501 (end to end)  : {adapt_s:6.2f} s  {n / adapt_s:9.0f} images/s"
              f"  (store {store.stat().st_size / 1e6:.1f} MB)")
        print(f"adapt / baseline time: {adapt_s / read_s:.1f}x")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
