"""The training loop: one process, or several under torchrun / accelerate launch (DDP), with exact resume.

Hooks kept out of the loop body: checkpointing, logging and evaluation run
after each epoch. Rank 0 writes every file; with ``check_sync`` each rank
records a checksum of its parameters and the ranks compare them.

The step is built to keep a GPU fed: one DataLoader with persistent workers
for the whole run, uint8 batches (normalisation and random erasing on the
device), channels_last + cuDNN benchmark + fused Adam on CUDA, and losses
summed on the device and read back every ``log_every_steps`` steps.
"""
from __future__ import annotations

import csv
import json
import platform
import shutil
import sys
import time
from pathlib import Path

from reidkit._version import __version__
from reidkit.contracts import CONTRACTS
from reidkit.errors import ReidkitError
from reidkit.training import checkpoint as ckpt
from reidkit.training.config import DERIVED_KEYS, RESUMABLE_CHANGES
from reidkit.training.config import default_workers
from reidkit.training.data import (BOT_AUGMENT, TrainDataset, build_items,
                                   device_normalise_and_erase, erase_boxes, erase_generator)
from reidkit.training.distributed import barrier, setup, teardown
from reidkit.training.resizing import run_kernel

STRATEGY = CONTRACTS["strategies"]  # the optional strategy methods, with what a strategy without them means


def _amp_dtype(amp: str, device: str):
    import torch

    if not device.startswith("cuda") or amp in ("none", "no", None, False):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp not in ("bf16", "fp16"):
        raise ReidkitError(f"amp must be auto, none, bf16 or fp16 (got {amp})")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _fused_adam(device: str) -> dict:
    """Adam's fused kernel on CUDA (one launch for all parameters), where this torch has it; nothing elsewhere."""
    import inspect

    import torch

    if device.startswith("cuda") and "fused" in inspect.signature(torch.optim.Adam).parameters:
        return {"fused": True}
    return {}


def _cuda_setup(device: str):
    import torch

    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest convolutions once


def _check_resume(out: Path, config: dict, store) -> dict:
    saved = ckpt.read_config(out)
    # runs written before backbone.resolved_weights was recorded (it is a fact of the run, recomputed each time)
    saved.get("backbone", {}).setdefault("resolved_weights", config.get("backbone", {}).get("resolved_weights"))
    if saved.get("store_fingerprint") != store.fingerprint:
        raise ReidkitError(f"{out} was trained on another store (fingerprint {saved.get('store_fingerprint')}); cannot resume on {store.path}")
    for key, value in config.items():
        if key not in RESUMABLE_CHANGES and key in saved and saved[key] != value and key not in DERIVED_KEYS:
            raise ReidkitError(f"--resume: setting '{key}' was {saved[key]!r} in {out}, now {value!r} (resume with the same settings)")
    return saved


class EpochLog:
    """CSV (always) and TensorBoard (when installed) logs, written by rank 0."""

    def __init__(self, out: Path, resume: bool):
        self.path = out / "log.csv"
        self.rows = []
        if resume and self.path.is_file():
            with self.path.open() as f:
                self.rows = list(csv.DictReader(f))
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def add(self, row: dict):
        epoch = int(row["epoch"])
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [{k: str(v) for k, v in row.items()}]
        keys = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with ckpt.atomic.atomic_output(self.path, replace=True) as partial:
            with partial.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, epoch)
            self.tb.flush()


def train(store_path, config: dict, out, resume=False, progress=True, max_steps=None, timings: list | None = None) -> dict:
    """Train a model as ``config`` says into ``out``; returns a summary. ``max_steps`` caps each epoch (tests, benchmarks);
    ``timings``: a list that gets one dict of seconds per epoch (loop, data wait, first batch, eval, checkpoint, whole)."""
    import torch

    from reidkit import open_store
    from reidkit.progress import progress_bar
    from reidkit.training.model import build_model
    from reidkit.training.model import resolved_weights

    ctx = setup(config["device"])
    _cuda_setup(ctx.device)
    writer = None
    try:
        out = Path(out)
        store = open_store(store_path)
        seed = int(config["seed"])
        # what backbone.weights loads (imagenet -> e.g. resnet50.tv_in1k), into config.yaml
        config["backbone"] = {**config["backbone"], "resolved_weights": resolved_weights(config["backbone"])}
        checkpoint = ckpt.latest_checkpoint(out)
        if resume:
            saved = _check_resume(out, config, store)
            config = {**saved, **{k: v for k, v in config.items() if k in RESUMABLE_CHANGES}}
        elif checkpoint is not None:
            raise ReidkitError(f"{out} already holds a training run: use --resume to continue it, or another --out")
        clip_len = int(config.get("clip_len") or 0)
        if clip_len > 0:  # video training: one item per tracklet piece (reidkit.training.video)
            from reidkit.training.video import build_clip_items, check_video_config

            check_video_config(config)
            items, pieces = build_clip_items(store, int(config.get("clip_chunk") or 0))
        else:
            items, pieces = build_items(store, config["generated"]), None
        config["store"] = str(Path(store_path).resolve())
        config["store_fingerprint"] = store.fingerprint
        config["data"] = {"num_classes": items.num_classes, "num_clothes": items.num_clothes,
                          "class_pids": [int(p) for p, _ in sorted(items.label_of_pid.items(), key=lambda kv: kv[1])],
                          "clothes_of_class": [list(map(int, c)) for c in items.clothes_of_class],
                          "real_images": items.num_real, "generated_images": int(len(items.kind) - items.num_real),
                          "variants": items.num_variants}
        if pieces is not None:  # video: the items are tracklet pieces; real_images counts their frames
            config["data"].update(real_images=int(sum(len(p) for p in pieces)), clip_pieces=len(pieces))
        config.setdefault("versions", {"reidkit": __version__, "torch": str(torch.__version__), "python": platform.python_version()})
        config["world_size"] = ctx.world

        torch.manual_seed(seed)
        model, strategy = build_model(config, items.num_classes, items.num_clothes, items.clothes_of_class,
                                      start_weights=not resume)  # a resumed run loads its own weights below
        if config.get("init_from"):  # a pre-trained backbone export (reidkit train --init-from); resume overrides it
            from reidkit.pretrained_backbone import load_init

            load_init(model.backbone, config["init_from"])
        model.to(ctx.device)
        separate = STRATEGY.optional_member(strategy, "separate_optimizers")(model.heads)
        held = {id(p) for group in separate.values() for p in group["params"]}
        params = [p for p in model.parameters() if p.requires_grad and id(p) not in held]
        fused = _fused_adam(ctx.device)
        optimizer = torch.optim.Adam(params, lr=float(config["lr"]), weight_decay=float(config["weight_decay"]), **fused)
        side_optimizers = {name: torch.optim.Adam(g["params"], lr=g["lr"], weight_decay=g["weight_decay"], **fused)
                           for name, g in separate.items()}  # constant rate: no scheduler
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, strategy.lr_factor)
        start_epoch = 0
        if resume and checkpoint is None and ctx.main:  # killed before its first checkpoint: start from the beginning
            print(f"{out}: no complete checkpoint yet; training starts from epoch 1", file=sys.stderr)
        if resume and checkpoint is not None:
            state = ckpt.load_state(checkpoint)
            weights, weights_epoch = ckpt.load_weights(checkpoint)
            if weights_epoch != state["epoch"]:
                raise ReidkitError(f"{checkpoint}: weights (epoch {weights_epoch}) and training state (epoch {state['epoch']}) disagree; the last save was cut short")
            if ctx.main and (checkpoint / ckpt.LOG_FILE).is_file():
                shutil.copy2(checkpoint / ckpt.LOG_FILE, out / ckpt.LOG_FILE)  # the log as of the checkpoint
            ckpt.load_into(model, weights, checkpoint / ckpt.MODEL_FILE)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            for name, opt in side_optimizers.items():
                opt.load_state_dict(state.get("side_optimizers", {})[name])
            torch.set_rng_state(state["torch_rng"])
            if ctx.device.startswith("cuda") and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], ctx.device)
            start_epoch = int(state["epoch"]) + 1
        from reidkit.training.selection import BestEpoch

        # the best epoch on the test set so far (eval_every): restored from the checkpoint a resume starts from
        best = BestEpoch(out, config, store, ctx.main, state.get("selection") if start_epoch else None, checkpoint)
        if ctx.main:
            ckpt.write_config(out, config)
            if start_epoch == 0:
                from reidkit.training.config import schedule_warnings

                for line in schedule_warnings(config):
                    print(f"Warning: {line}", file=sys.stderr)
        barrier(ctx)

        channels_last = ctx.device.startswith("cuda")  # NHWC convolutions on the GPU (tensor cores); CPU keeps NCHW
        if channels_last:
            model.to(memory_format=torch.channels_last)
        net = model
        if ctx.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.startswith("cuda") else None)
        if config.get("compile"):
            net = torch.compile(net)
        amp_dtype = _amp_dtype(config["amp"], ctx.device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        from reidkit.training.samplers import IdentityBatchSampler, RunBatches

        # P x K is the global batch: each rank takes its share of every batch (reidkit.training.samplers)
        sampler = IdentityBatchSampler(items, config["ids_per_batch"], config["images_per_id"], seed,
                                       variant_limit=strategy.variant_limit, rank=ctx.rank, world=ctx.world,
                                       kind=config.get("sampler", "bot"))
        augment_settings = {**BOT_AUGMENT, **(config.get("augment") or {})}
        kernel = run_kernel(config)  # a run resumed from before the `resize` setting keeps OpenCV's bilinear
        if pieces is not None:
            from reidkit.training.video import ClipDataset

            dataset = ClipDataset(store, items, pieces, clip_len, int(config["clip_stride"]), config["height"], config["width"],
                                  augment_settings=augment_settings, kernel=kernel)
        else:
            dataset = TrainDataset(store, items, config["height"], config["width"], augment_settings=augment_settings, kernel=kernel)
        workers = default_workers() if config.get("num_workers") is None else int(config["num_workers"])
        epochs = int(config["epochs"])
        max_steps = max_steps or config.get("max_steps_per_epoch")
        run_batches = RunBatches(sampler, start_epoch, epochs, max_steps)
        # one loader and one iterator for the whole run: workers start once and prefetch across epoch ends
        loader = make_loader(dataset, run_batches, workers, ctx.device)
        stream = None
        writer = ckpt.CheckpointWriter()  # checkpoints are written in the background while the next epoch trains
        log = EpochLog(out, resume) if ctx.main else None
        every = int(config.get("log_every_steps") or 20)
        summary = {"epochs_run": 0}
        checksum = None
        for epoch in range(start_epoch, epochs):
            sampler.set_epoch(epoch)
            model.train()
            meter = LossMeter(ctx.device, every)
            images, steps, wait, first_batch, t0 = 0, 0, 0.0, None, time.perf_counter()
            planned = run_batches.steps(epoch)
            if planned == 0:
                raise ReidkitError("an epoch produced no batch: the train split has fewer persons or images than one batch needs")
            stream = stream or iter(loader)
            bar_images = planned * sampler.rows_per_batch(epoch)
            with progress_bar(bar_images if progress and ctx.main else 0, f"epoch {epoch + 1}/{epochs}", "img") as update:
                tick = time.perf_counter()
                for _ in range(planned):
                    batch = next(stream)
                    waited = time.perf_counter() - tick
                    wait += waited
                    first_batch = waited if first_batch is None else first_batch
                    valid_rows = int(batch["valid"].sum())  # a CPU tensor still: no device sync
                    batch = device_batch(batch, ctx.device, augment_settings,
                                         erase_generator(seed, epoch, steps, ctx.rank), channels_last)
                    with torch.autocast(ctx.device.split(":")[0], dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                        outputs = net(batch["image"])
                    side_parts = _step_side_optimizers(strategy, side_optimizers, separate, outputs, batch, epoch, ctx)
                    loss, parts = strategy.loss(outputs, batch, epoch)
                    meter.add(steps, loss, parts, side_parts)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    images += valid_rows
                    steps += 1
                    status = None
                    if steps % every == 0:  # one host sync every N steps: losses for the bar, the NaN check
                        means = meter.read(epoch)
                        status = " ".join(f"{k} {v / steps:.3f}" for k, v in means.items())
                    update(advance=len(batch["image"]), **({"status": status} if status is not None else {}))
                    tick = time.perf_counter()
            totals = meter.read(epoch)  # the epoch's sums (and the non-finite check) before anything is written
            seconds = time.perf_counter() - t0
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if config.get("check_sync"):
                checksum = ckpt.parameter_checksum(model)
                _write_rank_checksum(out, ctx, epoch, checksum)
                _compare_rank_checksums(ctx, epoch, checksum)
            row = {"epoch": epoch + 1, "lr": lr, **{k: round(v / steps, 6) for k, v in totals.items()},
                   "images": images, "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 2),
                   "data_wait_share": round(wait / seconds, 4), "variant_pool": sampler.limit() or 0}
            last = epoch + 1 == epochs
            t_eval = time.perf_counter()
            if config["eval_every"] and ((epoch + 1) % int(config["eval_every"]) == 0 or last):
                results = evaluate_during_training(model, store, config, ctx.device)  # every rank extracts its share
                if ctx.main:
                    row.update(log_metrics(results))
                    best.update(epoch, results, model)
            t_save = time.perf_counter()
            if ctx.main:
                log.add(row)  # before the checkpoint, which keeps a copy: log and checkpoint never disagree on resume
            if ctx.main and (last or (epoch + 1) % int(config["checkpoint_every"]) == 0):
                extra = {"side_optimizers": {n: o.state_dict() for n, o in side_optimizers.items()}}
                if ctx.device.startswith("cuda"):
                    extra["cuda_rng"] = torch.cuda.get_rng_state(ctx.device)
                # a CPU copy of everything now (exact resume); the files are written by a background thread, one at a time
                snapshot = ckpt.snapshot(out, model, optimizer, scheduler, epoch, extra=extra)
                best.attach(snapshot)  # the best so far rides in the checkpoint; best/ follows it once it is on disk
                writer.submit(lambda snap=snapshot: (ckpt.write_snapshot(out, snap, keep=int(config.get("keep_checkpoints") or 2)),
                                                     best.publish(snap)))
                STRATEGY.optional_member(strategy, "on_checkpoint")(out, model, config, epoch)  # e.g. pretrain exports its backbone
            if last:
                writer.wait()  # the run's last checkpoint is on disk when train() returns
            barrier(ctx)
            if timings is not None:
                end = time.perf_counter()
                timings.append({"epoch": epoch + 1, "steps": steps, "images": images, "loop_s": seconds, "data_wait_s": wait,
                                "first_batch_s": first_batch, "eval_s": t_save - t_eval, "checkpoint_s": end - t_save,
                                "epoch_s": end - t0})
            summary = {**row, "epochs_run": summary["epochs_run"] + 1}
        writer.wait()
        _close_loader(loader)
        if summary["epochs_run"]:
            summary["checksum"] = checksum or ckpt.parameter_checksum(model)  # of the final weights
        return summary
    finally:
        if writer is not None:
            writer.wait(raise_error=False)  # an interrupted run still finishes the checkpoint it was writing
        teardown(ctx)


def make_loader(dataset, sampler, workers: int, device: str):
    """The run's one DataLoader over a batch sampler (the engine's: RunBatches, every epoch's batches in a row):
    persistent workers, pinned memory on CUDA, 4 batches prefetched per worker."""
    import torch

    extra = {"persistent_workers": True, "prefetch_factor": 4} if workers else {}
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                       pin_memory=device.startswith("cuda"), **extra)


def _close_loader(loader):
    iterator = getattr(loader, "_iterator", None)  # persistent workers: stop them now, not at garbage collection
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def device_batch(batch: dict, device: str, augment_settings: dict | None, generator, channels_last=False) -> dict:
    """A loader batch (uint8 images, or B x T clips) on the device, normalised, with random erasing drawn from
    ``generator`` (``augment_settings`` None: no erasing); a clip gets one rectangle for all its frames."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    images = out["image"]
    clips = images.shape[:2] if images.dim() == 5 else None
    if clips is not None:
        images = images.flatten(0, 1)
    boxes, fill = None, None
    if augment_settings and float(augment_settings.get("erase", 0)) > 0:
        _, _, h, w = images.shape
        boxes = erase_boxes(clips[0] if clips is not None else len(images), h, w, float(augment_settings["erase"]), generator)
        if clips is not None:
            boxes = boxes.repeat_interleave(clips[1], 0)
        fill = augment_settings["erase_fill"]
    out["image"] = device_normalise_and_erase(images, boxes, fill, channels_last=channels_last)
    if clips is not None:
        out["image"] = out["image"].unflatten(0, tuple(clips))
    return out


class LossMeter:
    """An epoch's loss sums, kept on the device; :meth:`read` brings them back in one host sync (every
    ``log_every_steps`` steps and at the epoch's end) and raises on the first non-finite loss, naming its step."""

    def __init__(self, device: str, every: int = 20):
        import torch

        self.device, self.every = device, every
        self.dtype = torch.float32 if device.startswith("mps") else torch.float64
        self.sums = {}
        self.bad = {}  # name -> (first non-finite step + 1, its value): 0 while every value was finite

    def _zero(self):
        import torch

        return torch.zeros((), dtype=self.dtype, device=self.device)

    def _watch(self, name, step, value):
        import torch

        if not torch.is_tensor(value):
            value = torch.tensor(float(value), dtype=self.dtype, device=self.device)
        value = value.detach().to(self.dtype)
        first, seen = self.bad.get(name, (self._zero(), self._zero()))
        new = (~torch.isfinite(value)) & (first == 0)
        self.bad[name] = (torch.where(new, torch.full_like(first, step + 1), first), torch.where(new, value, seen))

    def add(self, step: int, loss, parts: dict, side_parts: dict | None = None):
        """Step ``step`` (0-based): the total ``loss`` and each part (tensors or floats) added on the device."""
        self._watch("", step, loss)
        for name, value in (side_parts or {}).items():
            self._watch(name, step, value)
        for k, v in {**(side_parts or {}), **parts}.items():
            v = v.detach().to(self.dtype) if hasattr(v, "detach") else float(v)
            self.sums[k] = self.sums.get(k, self._zero()) + v

    def read(self, epoch: int) -> dict:
        """The sums so far as floats (one host sync); a non-finite loss raises ReidkitError."""
        import torch

        names = list(self.bad)
        keys = list(self.sums)
        flat = [x for n in names for x in self.bad[n]] + [self.sums[k] for k in keys]
        if not flat:
            return {}
        values = torch.stack([x.to(self.dtype) for x in flat]).tolist()
        for i, name in enumerate(names):
            step, value = int(values[2 * i]), values[2 * i + 1]
            if step:
                what = f"{name} loss" if name else "loss"
                raise ReidkitError(f"{what} became {value} at epoch {epoch + 1} step {step}; lower --lr or check the data")
        return dict(zip(keys, values[2 * len(names):]))


def _step_side_optimizers(strategy, side_optimizers, separate, outputs, batch, epoch, ctx) -> dict:
    """Step each separate optimiser on its auxiliary loss (CAL's clothes classifier) before the main loss is formed.

    Gradients come from torch.autograd.grad, so DDP's hooks stay out of it; ranks average them by hand.
    """
    import torch

    losses = STRATEGY.optional_member(strategy, "auxiliary_losses")(outputs, batch, epoch)
    parts = {}
    for name, loss in losses.items():  # non-finite values are caught by the engine's LossMeter, without a sync here
        params = separate[name]["params"]
        grads = torch.autograd.grad(loss, params)
        if ctx.world > 1:
            import torch.distributed as dist

            for g in grads:
                dist.all_reduce(g)
                g /= ctx.world
        for p, g in zip(params, grads):
            p.grad = g
        side_optimizers[name].step()
        side_optimizers[name].zero_grad(set_to_none=True)
        parts[name] = loss.detach()
    return parts


def _compare_rank_checksums(ctx, epoch: int, checksum: str):
    """``check_sync``: every rank's parameter hash must be the same; a difference stops the run."""
    if ctx.world <= 1:
        return
    import torch.distributed as dist

    hashes = [None] * ctx.world
    dist.all_gather_object(hashes, checksum)
    if len(set(hashes)) != 1:
        raise ReidkitError(f"check_sync: ranks disagree on the parameters after epoch {epoch + 1} ({', '.join(h[:12] for h in hashes)})")


def _write_rank_checksum(out: Path, ctx, epoch: int, checksum: str):
    path = out / "ranks" / f"rank-{ctx.rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[str(epoch + 1)] = checksum
    ckpt.atomic.write_json_atomic(path, data)


def evaluate_during_training(model, store, config, device) -> dict:
    """Every protocol's results with the current weights, test features flipped as the run's ``test_flip`` says
    (rank 0; {} on other ranks)."""
    from reidkit.evaluation.inference import ReidModelRunner
    import torch

    from reidkit.evaluation.runner import evaluate_runner

    rng = torch.get_rng_state()  # evaluating must not move training's random stream (exact resume)
    model.eval()
    try:
        runner = ReidModelRunner(model, config, device)
        workers = default_workers() if config.get("num_workers") is None else int(config["num_workers"])
        return evaluate_runner(runner, store, protocols=config.get("eval_protocols"), batch_size=config["eval_batch_size"],
                               num_workers=workers)  # decoding in workers, like training's loader
    finally:
        model.train()
        torch.set_rng_state(rng)


def log_metrics(results: dict) -> dict:
    """log.csv's evaluation columns: rank-1 and mAP of every protocol, rounded."""
    return {f"{p}_{m}": round(float(v[m]), 4) for p, v in results.items() for m in ("rank1", "mAP")}
