"""The training loop: one process, or several under torchrun / accelerate launch (DDP), with exact resume.

Hooks kept out of the loop body: checkpointing, logging and evaluation run
after each epoch. Rank 0 writes every file; each rank records a checksum of
its parameters so that synchronisation can be checked.
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
from reidkit.training.data import IdentityBatchSampler, TrainDataset, build_items
from reidkit.training.distributed import barrier, setup, teardown

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


def train(store_path, config: dict, out, resume=False, progress=True, max_steps=None) -> dict:
    """Train a model as ``config`` says into ``out``; returns a summary. ``max_steps`` caps each epoch (tests, benchmarks)."""
    import torch

    from reidkit import open_store
    from reidkit.progress import progress_bar
    from reidkit.training.model import build_model
    from reidkit.training.model import resolved_weights

    ctx = setup(config["device"])
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
        items = build_items(store, config["generated"])
        config["store"] = str(Path(store_path).resolve())
        config["store_fingerprint"] = store.fingerprint
        config["data"] = {"num_classes": items.num_classes, "num_clothes": items.num_clothes,
                          "class_pids": [int(p) for p, _ in sorted(items.label_of_pid.items(), key=lambda kv: kv[1])],
                          "clothes_of_class": [list(map(int, c)) for c in items.clothes_of_class],
                          "real_images": items.num_real, "generated_images": int(len(items.kind) - items.num_real),
                          "variants": items.num_variants}
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
        optimizer = torch.optim.Adam(params, lr=float(config["lr"]), weight_decay=float(config["weight_decay"]))
        side_optimizers = {name: torch.optim.Adam(g["params"], lr=g["lr"], weight_decay=g["weight_decay"])
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
            model.load_state_dict(weights)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            for name, opt in side_optimizers.items():
                opt.load_state_dict(state.get("side_optimizers", {})[name])
            torch.set_rng_state(state["torch_rng"])
            start_epoch = int(state["epoch"]) + 1
        if ctx.main:
            ckpt.write_config(out, config)
            if start_epoch == 0:
                from reidkit.training.config import schedule_warnings

                for line in schedule_warnings(config):
                    print(f"Warning: {line}", file=sys.stderr)
        barrier(ctx)

        net = model
        if ctx.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.startswith("cuda") else None)
        amp_dtype = _amp_dtype(config["amp"], ctx.device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        sampler = IdentityBatchSampler(items, config["ids_per_batch"], config["images_per_id"], seed,
                                       variant_limit=strategy.variant_limit, rank=ctx.rank, world=ctx.world)
        dataset = TrainDataset(store, items, config["height"], config["width"], augment_settings=config.get("augment"))
        workers = int(config["num_workers"])
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                             pin_memory=ctx.device.startswith("cuda"), persistent_workers=False,
                                             prefetch_factor=4 if workers else None)
        log = EpochLog(out, resume) if ctx.main else None
        epochs = int(config["epochs"])
        max_steps = max_steps or config.get("max_steps_per_epoch")
        summary = {"epochs_run": 0}
        for epoch in range(start_epoch, epochs):
            sampler.set_epoch(epoch)
            model.train()
            totals, images, steps, wait, t0 = {}, 0, 0, 0.0, time.perf_counter()
            planned = len(sampler) if max_steps is None else min(len(sampler), max_steps)
            bar_images = planned * config["ids_per_batch"] * config["images_per_id"] * (2 if sampler.limit() else 1)
            with progress_bar(bar_images if progress and ctx.main else 0, f"epoch {epoch + 1}/{epochs}", "img") as update:
                tick = time.perf_counter()
                for batch in loader:
                    wait += time.perf_counter() - tick
                    batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
                    with torch.autocast(ctx.device.split(":")[0], dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                        outputs = net(batch["image"])
                    side_parts = _step_side_optimizers(strategy, side_optimizers, separate, outputs, batch, epoch, ctx)
                    loss, parts = strategy.loss(outputs, batch, epoch)
                    parts = {**side_parts, **parts}
                    if not torch.isfinite(loss):
                        raise ReidkitError(f"loss became {float(loss)} at epoch {epoch + 1} step {steps + 1}; lower --lr or check the data")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    for k, v in parts.items():
                        totals[k] = totals.get(k, 0.0) + v
                    images += len(batch["image"])
                    steps += 1
                    update(advance=len(batch["image"]), status=" ".join(f"{k} {v / steps:.3f}" for k, v in totals.items()))
                    tick = time.perf_counter()
                    if max_steps is not None and steps >= max_steps:
                        break
            if steps == 0:
                raise ReidkitError("an epoch produced no batch: the train split has fewer persons or images than one batch needs")
            seconds = time.perf_counter() - t0
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            checksum = ckpt.parameter_checksum(model)
            _write_rank_checksum(out, ctx, epoch, checksum)
            row = {"epoch": epoch + 1, "lr": lr, **{k: round(v / steps, 6) for k, v in totals.items()},
                   "images": images, "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 2),
                   "data_wait_share": round(wait / seconds, 4), "variant_pool": sampler.limit() or 0}
            last = epoch + 1 == epochs
            if ctx.main and config["eval_every"] and ((epoch + 1) % int(config["eval_every"]) == 0 or last):
                row.update(evaluate_during_training(model, store, config, ctx.device))
            if ctx.main:
                log.add(row)  # before the checkpoint, which keeps a copy: log and checkpoint never disagree on resume
            if ctx.main and (last or (epoch + 1) % int(config["checkpoint_every"]) == 0):
                ckpt.save_checkpoint(out, model, optimizer, scheduler, epoch,
                                     extra={"side_optimizers": {n: o.state_dict() for n, o in side_optimizers.items()}})
                STRATEGY.optional_member(strategy, "on_checkpoint")(out, model, config, epoch)  # e.g. pretrain exports its backbone
            barrier(ctx)
            summary = {**row, "epochs_run": summary["epochs_run"] + 1, "checksum": checksum}
        return summary
    finally:
        teardown(ctx)


def _step_side_optimizers(strategy, side_optimizers, separate, outputs, batch, epoch, ctx) -> dict:
    """Step each separate optimiser on its auxiliary loss (CAL's clothes classifier) before the main loss is formed.

    Gradients come from torch.autograd.grad, so DDP's hooks stay out of it; ranks average them by hand.
    """
    import torch

    losses = STRATEGY.optional_member(strategy, "auxiliary_losses")(outputs, batch, epoch)
    parts = {}
    for name, loss in losses.items():
        if not torch.isfinite(loss):
            raise ReidkitError(f"{name} loss became {float(loss)} at epoch {epoch + 1}; lower --lr or check the data")
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
        parts[name] = float(loss.detach())
    return parts


def _write_rank_checksum(out: Path, ctx, epoch: int, checksum: str):
    path = out / "ranks" / f"rank-{ctx.rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[str(epoch + 1)] = checksum
    ckpt.atomic.write_json_atomic(path, data)


def evaluate_during_training(model, store, config, device) -> dict:
    """Rank-1 / mAP of every protocol with the current weights (needs reidkit.evaluation)."""
    from reidkit.evaluation.inference import ReidModelRunner
    import torch

    from reidkit.evaluation.runner import evaluate_runner

    rng = torch.get_rng_state()  # evaluating must not move training's random stream (exact resume)
    model.eval()
    try:
        runner = ReidModelRunner(model, config, device)
        metrics = evaluate_runner(runner, store, protocols=config.get("eval_protocols"), batch_size=config["eval_batch_size"])
    finally:
        model.train()
        torch.set_rng_state(rng)
    return {f"{p}_{m}": round(float(v[m]), 4) for p, v in metrics.items() for m in ("rank1", "mAP")}
