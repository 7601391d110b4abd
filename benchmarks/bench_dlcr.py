"""dlcr generation: batched pipeline calls vs one pipeline call per image (the original code's way).

Same items (same sources, masks, prompts, seeds), same settings, one run,
on the tiny SD inpainting pipeline that the tests use (random weights time
like trained ones of the same size). Run from the repository root:

    python benchmarks/bench_dlcr.py [--images 16] [--batch 8] [--width 128] [--height 384] [--steps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="an inpainting pipeline folder or id (default: build the tiny test pipeline)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from reidkit import open_store
    from reidkit.generation.bank import ensure_bank
    from reidkit.generation.engine import make_item
    from reidkit.plugins.generators.dlcr import DlcrGenerator

    tmp = Path(tempfile.mkdtemp(prefix="bench-dlcr-"))
    store_path = tmp / "w.h5"
    subprocess.run([sys.executable, "-m", "reidkit.cli", "adapt", "synthetic", "--out", str(store_path), "--ids", "8",
                    "--shots", "1"], check=True, capture_output=True)
    model = args.model
    if model is None:
        from tests.tiny_models import build_tiny_inpaint_pipeline

        model = str(build_tiny_inpaint_pipeline(tmp / "tiny-sd"))
    store = open_store(store_path)
    context = {"store": store, "bank": ensure_bank(store, "templates", {}, show_progress=False),
               "mask_set": store.mask_sets()["ground_truth"], "seed": 0}
    keys = [(int(i), 0) for i in store.split("train")[: args.images]]
    items = [make_item(context, k) for k in keys]
    settings = {**DlcrGenerator.defaults, "model": model, "width": args.width, "height": args.height, "steps": args.steps}
    gen = DlcrGenerator(settings, args.device)
    gen.load()
    gen.generate(items[:1])  # warm-up: first-call allocations are not generation time

    def timed(batch):
        sync = torch.cuda.synchronize if str(gen.device).startswith("cuda") else (lambda: None)
        sync()
        t = time.perf_counter()
        outs = []
        for s in range(0, len(items), batch):
            outs += gen.generate(items[s : s + batch])
        sync()
        return time.perf_counter() - t, outs

    t_single, single = timed(1)
    t_batched, batched = timed(args.batch)
    diff = max(float(np.abs(a.astype(np.float32) - b).max()) for a, b in zip(single, batched))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "torch": torch.__version__, "device": str(gen.device), "threads": torch.get_num_threads(),
        "images": len(items), "working_size": f"{args.width}x{args.height}", "steps": args.steps,
        "one_call_per_image_img_s": round(len(items) / t_single, 3),
        f"batched_{args.batch}_img_s": round(len(items) / t_batched, 3),
        "speedup": round(t_single / t_batched, 2),
        "max_abs_diff_grey_levels": diff,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
