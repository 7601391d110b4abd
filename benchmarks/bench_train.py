"""Training throughput: (a) the real data pipeline vs the same batches from memory, (b) epoch wall time vs pure step time.

(a) One model, strategy (BoT baseline) and batch shape, stepped exactly as the
engine steps (uint8 batches normalised and erased on the device, channels_last,
cuDNN benchmark and fused Adam on CUDA, losses read back every 20 steps): once
fed by the real pipeline (store HDF5 -> decode -> resize/flip/crop in
persistent DataLoader workers -> pinned uint8 batches), once from a few of the
same batches already on the device. Reports images/s, the share of step time
spent waiting for data, and the pipeline's cost (1 - pipeline / memory rate).

(b) The engine itself (`reidkit.training.engine.train`) for a few epochs of
`--steps` steps with its default checkpoint policy (every epoch, written in
the background): each epoch's wall time against `steps` x the pure step time
of (a), and the fixed costs named (loader start = the first batch's wait,
evaluation, checkpoint), averaged over the middle epochs and extrapolated to
an epoch of `--epoch-images` images (Market-1501's 12,936).

(c) With --writer-cost: the background checkpoint writer's cost to the next
epoch, the engine's epochs with a checkpoint after every epoch against one only
after the last, side by side (issue 30's goal: under 2 % of an epoch).

Nothing is downloaded: random start weights, a synthetic store written first.
Prints one JSON object.

    python benchmarks/bench_train.py                      # CPU: resnet18, 128x64, batch 4x4
    python benchmarks/bench_train.py --device cuda --amp bf16 --backbone resnet50 --height 256 --width 128 \
        --batch 16,4 --ids 200 --steps 60 --workers 8     # GPU: ResNet-50, batch 64
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
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


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_steps(model, strategy, optimizer, batches, steps, device, amp_dtype, augment_settings, warmup=5, every=20):
    """``steps`` training steps as the engine takes them, from an iterator of CPU (pipeline) or device (memory)
    batches; returns images/s, the share of the time spent waiting for data, and seconds per step."""
    import torch

    from reidkit.training.data import erase_generator
    from reidkit.training.engine import LossMeter, device_batch

    channels_last = device.startswith("cuda")
    meter = LossMeter(device, every)
    images, wait = 0, 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start, images, wait = time.perf_counter(), 0, 0.0
        t0 = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t0
        batch = device_batch(batch, device, augment_settings, erase_generator(0, 0, i), channels_last)
        with torch.autocast(device.split(":")[0], dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            outputs = model(batch["image"])
        loss, parts = strategy.loss(outputs, batch, 0)
        meter.add(i, loss, parts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += len(batch["image"])
        if (i + 1) % every == 0:
            meter.read(0)  # the engine's periodic read-back (one host sync)
    meter.read(0)
    _sync(device)
    total = time.perf_counter() - start
    return {"images_per_s": round(images / total, 1), "data_wait_share": round(wait / total, 4),
            "step_s": round(total / steps, 5)}


def measure_pipeline(args, config, store, items, p, k):
    """(a): the same model stepped from the real pipeline and from memory."""
    import torch

    from reidkit.training.config import default_workers
    from reidkit.training.data import BOT_AUGMENT, TrainDataset
    from reidkit.training.samplers import IdentityBatchSampler, RunBatches
    from reidkit.training.engine import _amp_dtype, _cuda_setup, _fused_adam, make_loader
    from reidkit.training.model import build_model

    device = args.device
    _cuda_setup(device)
    torch.manual_seed(0)
    model, strategy = build_model(config, items.num_classes, items.num_clothes, items.clothes_of_class)
    model.to(device).train()
    if device.startswith("cuda"):
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=3.5e-4, **_fused_adam(device))
    amp_dtype = _amp_dtype(args.amp, device)
    augment_settings = {**BOT_AUGMENT, **config.get("augment", {})}
    sampler = IdentityBatchSampler(items, p, k, seed=0)
    dataset = TrainDataset(store, items, args.height, args.width, augment_settings=augment_settings)
    workers = default_workers() if args.workers is None else args.workers
    # as the engine: one loader, one iterator over epoch after epoch (workers prefetch across epoch ends)
    loader = make_loader(dataset, RunBatches(sampler, 0, 10**6), workers, device)
    source = iter(loader)
    memory_batches = [{k: v.to(device) for k, v in next(source).items()} for _ in range(4)]

    def memory():
        i = 0
        while True:
            yield memory_batches[i % len(memory_batches)]
            i += 1

    results = {}
    for name, batches in (("memory", memory()), ("pipeline", source)):
        warmup = args.warmup if args.warmup is not None else (10 if device.startswith("cuda") else 3)
        results[name] = run_steps(model, strategy, optimizer, batches, args.steps, device, amp_dtype, augment_settings, warmup)
    results["pipeline_cost"] = round(1 - results["pipeline"]["images_per_s"] / results["memory"]["images_per_s"], 4)
    results["workers"] = workers
    from reidkit.training.engine import _close_loader

    _close_loader(loader)
    return results


def measure_epochs(args, config, store_path, directory: Path, step_s: float, pipeline_step_s: float, batch_images: int,
                   checkpoint_every: int = 1):
    """(b): the engine's epochs (loop, loader start, eval, checkpoint) against ``steps`` x the pure step time.

    ``fixed_s``: what the epoch spends outside its steps in the training thread (first batch's wait, evaluation,
    checkpoint copy); ``overhead_s``: epoch wall time minus ``steps`` x the pipeline-fed step time of (a), so it
    also counts what slows the steps down (the background checkpoint writer, the epoch's end read-back)."""
    from reidkit.evaluation.during_training import TestSetEvaluator
    from reidkit.training.engine import train

    run_config = {**config, "epochs": args.epochs, "eval_every": args.eval_every, "warmup_epochs": 0, "milestones": [],
                  "num_workers": args.workers, "backbone": {**config["backbone"], "weights": None},
                  "checkpoint_every": checkpoint_every}
    timings = []
    out = Path(tempfile.mkdtemp(prefix="run-", dir=directory))
    train(store_path, run_config, out, progress=False, max_steps=args.steps, timings=timings, evaluator=TestSetEvaluator())
    rows = []
    for t in timings:
        pure = t["steps"] * step_s
        fixed = t["first_batch_s"] + t["eval_s"] + t["checkpoint_s"]
        rows.append({**{k: (round(v, 4) if isinstance(v, float) else v) for k, v in t.items()},
                     "pure_steps_s": round(pure, 4), "share_beyond_pure_steps": round(1 - pure / t["epoch_s"], 4),
                     "fixed_s": round(fixed, 4), "fixed_share": round(fixed / t["epoch_s"], 4),
                     "overhead_s": round(t["epoch_s"] - t["steps"] * pipeline_step_s, 4)})
    # the first epoch also starts the workers and builds cuDNN plans; the last one waits for its checkpoint to be
    # on disk (the others write theirs in the background): both reported, not averaged
    later = rows[1:-1] or rows[1:] or rows
    fixed = sum(r["fixed_s"] for r in later) / len(later)
    overhead = max(0.0, sum(r["overhead_s"] for r in later) / len(later))
    per_step = sum((r["loop_s"] - r["first_batch_s"]) / r["steps"] for r in later) / len(later)
    epoch_steps = max(1, args.epoch_images // batch_images)
    return {"epochs": rows, "mean_fixed_s": round(fixed, 4), "mean_overhead_s": round(overhead, 4), "loop_step_s": round(per_step, 5),
            "fixed_share_at_epoch_images": round(fixed / (fixed + epoch_steps * pipeline_step_s), 4),
            "overhead_share_at_epoch_images": round(overhead / (overhead + epoch_steps * pipeline_step_s), 4),
            "epoch_images": args.epoch_images}


def writer_cost(args, config, store_path, directory: Path, a: dict, batch_images: int) -> dict:
    """The background checkpoint writer's cost to the epoch after it: the engine's middle epochs with a checkpoint
    after every epoch against the same run with one only after the last, run in turn (--writer-repeats times each,
    alternating, so a drift of the machine falls on both); the slowdown is the ratio of their mean loop step time."""
    runs = {"every_epoch": [], "last_only": []}
    for _ in range(args.writer_repeats):
        for name, every in (("every_epoch", 1), ("last_only", 10**6)):
            runs[name].append(measure_epochs(args, config, store_path, directory, a["memory"]["step_s"],
                                             a["pipeline"]["step_s"], batch_images, checkpoint_every=every)["loop_step_s"])
    mean = {k: sum(v) / len(v) for k, v in runs.items()}
    # the writer's work falls on the epoch after a checkpoint, whatever its length: its extra seconds, as a share of
    # an epoch of --epoch-images images
    extra = max(0.0, (mean["every_epoch"] - mean["last_only"]) * args.steps)
    epoch_s = max(1, args.epoch_images // batch_images) * a["pipeline"]["step_s"]
    return {"loop_step_s": runs, "slowdown_of_measured_epochs": round(mean["every_epoch"] / mean["last_only"] - 1, 4),
            "extra_s_per_epoch": round(extra, 3), "share_at_epoch_images": round(extra / epoch_s, 4)}


def main():
    import torch

    from reidkit import open_store
    from reidkit.training.config import backbone_settings, resolve_config
    from reidkit.training.data import build_items

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", default="4,4", help="P,K")
    ap.add_argument("--ids", type=int, default=48)
    ap.add_argument("--steps", type=int, default=8, help="Timed steps of (a), and steps of each epoch of (b).")
    ap.add_argument("--warmup", type=int, default=None, help="(a): untimed steps first (default: 3 on CPU, 10 on GPU).")
    ap.add_argument("--epochs", type=int, default=4, help="Epochs of (b) (the first and the last are reported apart).")
    ap.add_argument("--eval-every", type=int, default=0, help="(b): evaluate every N epochs (0: never, the engine's default).")
    ap.add_argument("--epoch-images", type=int, default=12936, help="(b): extrapolate fixed costs to an epoch of this many images.")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the engine's, min(8, CPUs)).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none")
    ap.add_argument("--skip-epochs", action="store_true", help="Only (a).")
    ap.add_argument("--writer-cost", action="store_true",
                    help="(c): the engine's epochs with a checkpoint every epoch vs only after the last, side by side.")
    ap.add_argument("--writer-repeats", type=int, default=3, help="(c): runs of each kind, alternating.")
    ap.add_argument("--dir", default=None, help="Folder for the benchmark store and runs (default: a temporary one).")
    args = ap.parse_args()

    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench-train-"))
    directory.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store_path = make_store(directory, args.ids, max(128, args.height), max(64, args.width))
    store_s = time.perf_counter() - t0
    p, k = (int(x) for x in args.batch.split(","))
    config = resolve_config("baseline", {}, {"height": args.height, "width": args.width, "ids_per_batch": p, "images_per_id": k,
                                             "num_workers": args.workers, "device": args.device, "amp": args.amp})
    config["backbone"] = {**backbone_settings(config, args.backbone), "weights": None}  # random init: nothing downloaded
    store = open_store(store_path)
    items = build_items(store)
    results = {"pipeline_vs_memory": measure_pipeline(args, config, store, items, p, k)}
    if not args.skip_epochs:
        a = results["pipeline_vs_memory"]
        results["epoch_vs_steps"] = measure_epochs(args, config, store_path, directory, a["memory"]["step_s"],
                                                   a["pipeline"]["step_s"], p * k)
    if args.writer_cost:
        results["checkpoint_writer"] = writer_cost(args, config, store_path, directory, results["pipeline_vs_memory"], p * k)
    results["settings"] = {**vars(args), "batch_images": p * k, "train_images": int(len(items.kind)), "store_build_s": round(store_s, 1),
                           "python": platform.python_version(), "torch": str(torch.__version__), "threads": torch.get_num_threads(),
                           "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
                           "command": " ".join(sys.argv)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
