"""Resizing kernels (issue 25): the data pipeline's per-image cost with cv2-bilinear vs pil-bilinear vs pil-bicubic.

What a loader worker does for one training image, on LTCC-like person crops
(JPEGs of about 350 x 140, sizes varied): decode (the store's decoder) ->
augment_geometry (CAL's: resize, enlarge + crop with p 0.5, flip 0.5) ->
to_chw; at 384 x 192 (CAL) and 256 x 128 (BoT, CAL's video); and the resize
alone. Every repeat times each kernel over the same images, kernels
interleaved, so a shared machine's load falls on all of them alike; the
figure is the median over repeats, in microseconds per image.

    python benchmarks/bench_resize.py [--images 200] [--repeats 9]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

KERNELS = ("cv2-bilinear", "pil-bilinear", "pil-bicubic")
SIZES = ((384, 192), (256, 128))


def person_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """LTCC-like crops: heights 300..400, widths 120..160; a smooth body, clothing edges and sensor noise (JPEG q 95)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        h, w = int(rng.integers(300, 401)), int(rng.integers(120, 161))
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([yy * 0.6, xx * 1.5, (yy + xx) * 0.4], -1) + rng.integers(0, 80, 3)
        top, legs = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        body = (np.abs(xx - w / 2) < w * 0.3)
        img[body & (yy > h * 0.2) & (yy < h * 0.55)] = top
        img[body & (yy >= h * 0.55)] = legs
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        img = cv2.GaussianBlur(img, (0, 0), 0.7)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(buf.tobytes())
    return out


def per_image_us(fn, items) -> float:
    start = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - start) / len(items) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="Distinct JPEGs (default 200).")
    parser.add_argument("--repeats", type=int, default=9, help="Timed passes per kernel; the median is reported (default 9).")
    args = parser.parse_args()

    import cv2
    import PIL

    from reidkit.store.imagecodec import decode_rgb
    from reidkit.training.data import CAL_AUGMENT, augment_geometry, to_chw
    from reidkit.training.resizing import resize

    cv2.setNumThreads(1)  # a loader worker is one process on one core (reidkit's loaders run one per core)
    jpegs = person_jpegs(args.images)
    decoded = [decode_rgb(b) for b in jpegs]
    shapes = np.array([d.shape[:2] for d in decoded])
    print(f"{len(jpegs)} JPEGs, {np.mean([len(b) for b in jpegs]) / 1e3:.1f} kB each, median size "
          f"{int(np.median(shapes[:, 0]))} x {int(np.median(shapes[:, 1]))}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, OpenCV {cv2.__version__}, Pillow {PIL.__version__}")

    def pipeline(height, width, kernel):
        def one(pair):
            seed, data = pair
            image = decode_rgb(data)
            return to_chw(augment_geometry(image, height, width, np.random.default_rng(seed), CAL_AUGMENT, kernel))
        return one

    cases = {}
    for height, width in SIZES:
        for kernel in KERNELS:
            cases[(f"decode + CAL geometry at {height}x{width}", kernel)] = (pipeline(height, width, kernel), list(enumerate(jpegs)))
            cases[(f"resize alone to {height}x{width}", kernel)] = (lambda im, h=height, w=width, k=kernel: resize(im, h, w, k),
                                                                    decoded)
    cases[("decode alone", "-")] = (decode_rgb, jpegs)
    times = {key: [] for key in cases}
    for fn, items in cases.values():  # warm-up: imports, first allocations
        fn(items[0])
    for _ in range(args.repeats):
        for key, (fn, items) in cases.items():
            times[key].append(per_image_us(fn, items))

    print(f"\nmicroseconds per image, median of {args.repeats} passes over {len(jpegs)} images (min-max in brackets)")
    rows = sorted({k[0] for k in cases if k[1] != "-"}, key=lambda s: (s.split(" ")[-1], s))
    print(f"{'step':<40}" + "".join(f"{k:>26}" for k in KERNELS))
    for row in rows:
        cells = []
        for kernel in KERNELS:
            t = times[(row, kernel)]
            cells.append(f"{statistics.median(t):8.0f} [{min(t):.0f}-{max(t):.0f}]")
        print(f"{row:<40}" + "".join(f"{c:>26}" for c in cells))
    t = times[("decode alone", "-")]
    print(f"{'decode alone':<40}{statistics.median(t):8.0f} [{min(t):.0f}-{max(t):.0f}]")
    # how far apart the kernels' pictures are on these crops (grey levels, mean over pixels and images)
    for height, width in SIZES:
        old = [resize(d, height, width, "cv2-bilinear").astype(np.int16) for d in decoded]
        gaps = {k: np.mean([np.abs(resize(d, height, width, k) - o).mean() for d, o in zip(decoded, old)]) for k in KERNELS[1:]}
        print(f"mean |kernel - cv2-bilinear| at {height}x{width}: " + ", ".join(f"{k} {v:.2f}" for k, v in gaps.items()))


if __name__ == "__main__":
    main()
