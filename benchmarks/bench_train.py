"""Training throughput: the real data pipeline (store -> decode -> augment -> DataLoader) vs the same batches from memory.

One run measures both on the same model, strategy and batch shape, and
reports images/s and the share of step time spent waiting for data.

    python benchmarks/bench_train.py                      # CPU, the demo's backbone (resnet18, 64x32)
    python benchmarks/bench_train.py --device cuda --amp bf16 --backbone resnet50 --height 256 --width 128 \
        --batch 16,4 --ids 200 --steps 60 --workers 8     # GPU: ResNet-50, batch 64
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def make_store(directory: Path, ids: int, height: int, width: int) -> Path:
    from reidkit.plugin_manager import get_plugins
    from reidkit.store.writer import write_store

    path = directory / f"bench-{ids}-{height}x{width}.h5"
    if not path.exists():
        settings = {"ids": ids, "height": height, "width": width, "seed": 0}
        layout = get_plugins().get("adapters", "synthetic")().scan(None, dict(settings))
        layout.settings = {**settings, **layout.settings, "adapter": "synthetic", "root": None}
        write_store(path, layout)
    return path


def run_steps(model, strategy, optimizer, batches, steps, device, amp_dtype, warmup=3):
    """Train ``steps`` steps from an iterator of batches; returns (images/s, share of time waiting for data)."""
    import torch

    images, wait, total = 0, 0.0, 0.0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(batches)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        t1 = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            outputs = model(batch["image"])
        loss, _ = strategy.loss(outputs, batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= warmup:
            images += len(batch["image"])
            wait += t1 - t0
            total += t2 - t0
    return images / total, wait / total


def main():
    import torch

    from reidkit import open_store
    from reidkit.training.config import backbone_settings, resolve_config
    from reidkit.training.data import IdentityBatchSampler, TrainDataset, build_items
    from reidkit.training.engine import _amp_dtype
    from reidkit.training.model import build_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", default="8,4")
    ap.add_argument("--ids", type=int, default=48)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none")
    ap.add_argument("--dir", default=None, help="Folder for the benchmark store (default: a temporary one).")
    args = ap.parse_args()

    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench-train-"))
    directory.mkdir(parents=True, exist_ok=True)
    store_path = make_store(directory, args.ids, max(128, args.height), max(64, args.width))
    p, k = (int(x) for x in args.batch.split(","))
    config = resolve_config("baseline", {}, {"height": args.height, "width": args.width, "ids_per_batch": p, "images_per_id": k,
                                             "num_workers": args.workers, "device": args.device, "amp": args.amp})
    config["backbone"] = backbone_settings(config, args.backbone)
    store = open_store(store_path)
    items = build_items(store)
    torch.manual_seed(0)
    model, strategy = build_model(config, items.num_classes, items.num_clothes, items.clothes_of_class)
    model.to(args.device).train()
    optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=3.5e-4)
    amp_dtype = _amp_dtype(args.amp, args.device)
    sampler = IdentityBatchSampler(items, p, k, seed=0)
    dataset = TrainDataset(store, items, args.height, args.width)

    def pipeline():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=args.workers,
                                                 pin_memory=args.device.startswith("cuda"),
                                                 prefetch_factor=4 if args.workers else None)
            yield from loader
            epoch += 1

    first = next(iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0)))
    memory_batch = {k: v.to(args.device) for k, v in first.items()}

    def memory():
        while True:
            yield memory_batch

    results = {}
    for name, source in (("memory", memory()), ("pipeline", pipeline())):
        rate, wait = run_steps(model, strategy, optimizer, source, args.steps, args.device, amp_dtype)
        results[name] = {"images_per_s": round(rate, 1), "data_wait_share": round(wait, 3)}
    results["pipeline_cost"] = round(1 - results["pipeline"]["images_per_s"] / results["memory"]["images_per_s"], 3)
    results["settings"] = {**vars(args), "batch_images": p * k, "python": platform.python_version(), "torch": str(torch.__version__),
                           "threads": torch.get_num_threads(),
                           "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
