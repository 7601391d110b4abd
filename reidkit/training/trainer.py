"""The trainer: one process, or several under torchrun / accelerate launch (DDP), with exact resume.

:meth:`Trainer.train` reads as the run does::

    set_up()            prepare_run, build, restore, open_run, wrap, build_data, the hooks
    before_train
    for each epoch:     before_epoch, the steps (run_step, after_step each), after_epoch
    after_train

Named steps come first, each testable alone: :func:`prepare_run` (the run's settings and provenance, the resume
check, the training items) and :func:`restore` (model, optimisers, scheduler and random state from the latest
checkpoint). Everything else around the steps (the learning-rate step, rank checksums, in-training evaluation and
the best epoch, the log, checkpoints, timings) is a hook (``reidkit.training.hooks``), assembled by ``build_hooks``;
a strategy may add its own through its optional ``hooks(trainer)``.
"""
from __future__ import annotations

import platform
import shutil
import signal
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from reidkit import open_store
from reidkit._version import __version__
from reidkit.contracts import CONTRACTS
from reidkit.errors import Preempted, ReidkitError
from reidkit.interrupts import ctrl_c_at_safe_points, signal_flag
from reidkit.pretrained_backbone import load_init
from reidkit.progress import progress_bar
from reidkit.store.union import StoreUnion
from reidkit.training import checkpoint as ckpt
from reidkit.training.config import DERIVED_KEYS, default_workers, resumable_changes, schedule_warnings
from reidkit.training.data import BOT_AUGMENT, TrainDataset, build_items, erase_generator
from reidkit.training.distributed import barrier, setup, teardown
from reidkit.training.hooks import Checkpointer, Hook, build_hooks
from reidkit.training.model import build_model, resolved_weights
from reidkit.training.resizing import run_kernel
from reidkit.training.samplers import IdentityBatchSampler, RunBatches
from reidkit.training.selection import BestEpoch
from reidkit.training.step import (LossMeter, _amp_dtype, _close_loader, _cuda_setup, _fused_adam,
                                   _step_side_optimizers, device_batch, make_loader)
from reidkit.training.video import ClipDataset, build_clip_items, check_video_config

STRATEGY = CONTRACTS["strategies"]  # the optional strategy methods, with what a strategy without them means


def check_resume(out: Path, config: dict, store) -> dict:
    """The saved config of the run in ``out``, refused when it was trained on another store or ``config`` changes
    a setting that may not change on resume."""
    saved = ckpt.read_config(out)
    # runs written before backbone.resolved_weights was recorded (it is a fact of the run, recomputed each time)
    saved.get("backbone", {}).setdefault("resolved_weights", config.get("backbone", {}).get("resolved_weights"))
    if saved.get("store_fingerprint") != store.fingerprint:
        raise ReidkitError(f"{out} was trained on another store (fingerprint {saved.get('store_fingerprint')}); cannot resume on {store.path}")
    for key, value in config.items():
        if key not in resumable_changes(config) and key in saved and saved[key] != value and key not in DERIVED_KEYS:
            raise ReidkitError(f"--resume: setting '{key}' was {saved[key]!r} in {out}, now {value!r} (resume with the same settings)")
    return saved


@dataclass
class PreparedRun:
    """What :func:`prepare_run` settles before any model exists."""

    out: Path
    store: object
    config: dict  # the run's settings as config.yaml will hold them (a resume: the saved ones, resumable changes applied)
    seed: int
    resume: bool
    checkpoint: Path | None  # the newest complete checkpoint in ``out``
    items: object  # reidkit.training.data.TrainItems
    pieces: list | None  # video training: the tracklet pieces the items stand for; None for images
    clip_len: int


def prepare_run(store_path, config: dict, out, resume: bool = False, world: int = 1) -> PreparedRun:
    """The run's settings before anything is built: the backbone's resolved weights, the resume check (or the refusal
    of a folder that holds a run), the training items (images, or video pieces), and the provenance config.yaml records
    (store, its fingerprint, the label map, versions, world size). ``config`` is updated in place unless resuming."""
    out = Path(out)
    store = open_training_store(store_path)
    seed = int(config["seed"])
    # what backbone.weights loads (imagenet -> e.g. resnet50.tv_in1k), into config.yaml
    config["backbone"] = {**config["backbone"], "resolved_weights": resolved_weights(config["backbone"])}
    checkpoint = ckpt.latest_checkpoint(out)
    if resume:
        saved = check_resume(out, config, store)
        config = {**saved, **{k: v for k, v in config.items() if k in resumable_changes(config)}}
    elif checkpoint is not None:
        raise ReidkitError(f"{out} already holds a training run: use --resume to continue it, or another --out")
    clip_len = int(config.get("clip_len") or 0)
    if clip_len > 0:  # video training: one item per tracklet piece (reidkit.training.video)
        if isinstance(store, StoreUnion):
            raise ReidkitError("video training (clip_len > 0) takes one store; several stores are not built for clips")
        check_video_config(config)
        if config.get("subset"):
            raise ReidkitError("subset is not built for video training (clip_len > 0): train on the whole split")
        items, pieces = build_clip_items(store, int(config.get("clip_chunk") or 0))
    else:
        items, pieces = build_items(store, config["generated"], subset=config.get("subset"), seed=seed), None
    _record_provenance(config, store_path, store, items, pieces, world)
    return PreparedRun(out, store, config, seed, resume, checkpoint, items, pieces, clip_len)


def open_training_store(store_path):
    """One store, or several (a list of paths: ``reidkit train A.h5 B.h5``) read as one with namespaced ids."""
    if isinstance(store_path, (list, tuple)):
        if len(store_path) > 1:
            return StoreUnion([open_store(p) for p in store_path])
        store_path = store_path[0]
    return open_store(store_path)


def store_paths(config: dict) -> list[str]:
    """The stores a run trained on, as config.yaml records them (one path, or a list)."""
    stores = config.get("store")
    return list(stores) if isinstance(stores, list) else [stores]


def _record_provenance(config: dict, store_path, store, items, pieces, world: int):
    """The store, its label map and item counts, versions and world size, as config.yaml records them."""
    import torch

    paths = [str(Path(p).resolve()) for p in (store_path if isinstance(store_path, (list, tuple)) else [store_path])]
    config["store"] = paths if len(paths) > 1 else paths[0]
    config["store_fingerprint"] = store.fingerprint
    config["data"] = {"num_classes": items.num_classes, "num_clothes": items.num_clothes,
                      "class_pids": [int(p) for p, _ in sorted(items.label_of_pid.items(), key=lambda kv: kv[1])],
                      "clothes_of_class": [list(map(int, c)) for c in items.clothes_of_class],
                      "real_images": items.num_real, "generated_images": int(len(items.kind) - items.num_real),
                      "variants": items.num_variants}
    if pieces is not None:  # video: the items are tracklet pieces; real_images counts their frames
        config["data"].update(real_images=int(sum(len(p) for p in pieces)), clip_pieces=len(pieces))
    config.setdefault("versions", {"reidkit": __version__, "torch": str(torch.__version__), "python": platform.python_version()})
    config["world_size"] = world


def restore(run: PreparedRun, model, optimizer, scheduler, side_optimizers: dict, ctx) -> tuple[int, dict | None]:
    """``--resume``: model, optimisers, scheduler and random state from the run's latest checkpoint (rank 0 also puts
    back the log as of it). Returns the first epoch to train and the checkpoint's state; (0, None) with nothing to restore."""
    import torch

    if run.resume and run.checkpoint is None and ctx.main:  # killed before its first checkpoint: start from the beginning
        print(f"{run.out}: no complete checkpoint yet; training starts from epoch 1", file=sys.stderr)
    if not run.resume or run.checkpoint is None:
        return 0, None
    checkpoint = run.checkpoint
    state = ckpt.load_state(checkpoint)
    weights, weights_epoch = ckpt.load_weights(checkpoint)
    if weights_epoch != state["epoch"]:
        raise ReidkitError(f"{checkpoint}: weights (epoch {weights_epoch}) and training state (epoch {state['epoch']}) disagree; the last save was cut short")
    if ctx.main and (checkpoint / ckpt.LOG_FILE).is_file():
        shutil.copy2(checkpoint / ckpt.LOG_FILE, run.out / ckpt.LOG_FILE)  # the log as of the checkpoint
    ckpt.load_into(model, weights, checkpoint / ckpt.MODEL_FILE)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for name, opt in side_optimizers.items():
        opt.load_state_dict(state.get("side_optimizers", {})[name])
    torch.set_rng_state(state["torch_rng"])
    if ctx.device.startswith("cuda") and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], ctx.device)
    return int(state["epoch"]) + 1, state


@dataclass
class EpochStats:
    """One epoch's counters and clock readings (``trainer.stats``), for its row and the timings."""

    epoch: int
    t0: float  # perf_counter at the epoch's start
    steps: int = 0
    images: int = 0  # valid (non-padding) rows trained on
    wait: float = 0.0  # seconds spent waiting for the loader
    first_batch: float | None = None
    seconds: float | None = None  # the steps' wall time, set when the row is made
    eval_started: float | None = None  # set by InTrainingEval
    eval_ended: float | None = None


class Trainer:
    """A training run of ``config`` on the store at ``store_path`` into ``out``; :meth:`train` runs it and returns the
    summary (the last epoch's row, ``epochs_run`` and the final weights' ``checksum``). ``hooks``: more
    ``reidkit.training.hooks.Hook`` objects, called after the built-in ones and the strategy's."""

    def __init__(self, store_path, config: dict, out, resume=False, progress=True, max_steps=None,
                 timings: list | None = None, hooks=(), evaluator=None):
        self.store_path, self.config, self.out = store_path, config, out
        # eval_every: evaluator(model, store, config, device) -> results and evaluator.protocols(store, config) -> names
        self.evaluator = evaluator
        self.resume, self.progress, self.max_steps, self.timings = resume, progress, max_steps, timings
        self.extra_hooks = list(hooks)
        self.hooks, self.step_hooks = [], []
        self.ctx = self.writer = None

    def train(self) -> dict:
        """Join the process group, run, and always finish the checkpoint being written and leave the group."""
        self.ctx = setup(self.config["device"])
        _cuda_setup(self.ctx.device)
        self.writer = None
        try:
            # SIGTERM (a scheduler's preemption): the step in progress finishes, a checkpoint at that step, one resume
            # line; Ctrl-C: the step in progress finishes, then KeyboardInterrupt (the last whole checkpoint stays)
            with signal_flag(signal.SIGTERM) as self.terminated, ctrl_c_at_safe_points() as self.interrupted:
                result = self.run_all()
            # ranks leave the group together (rank 0 still writes after the others end; two loaded CI runs saw the
            # rank that left first abort); on the success path only: a failed rank must not wait for the others
            barrier(self.ctx)
            return result
        finally:
            if self.writer is not None:
                self.writer.wait(raise_error=False)  # an interrupted run still finishes the checkpoint it was writing
            # DDP holds the process group: dropped here, the group's gloo threads end now, not during interpreter
            # finalisation, where a thread releasing a tensor aborts the process (SIGABRT; pytorch/pytorch#179291)
            self.net = getattr(self, "model", None)
            teardown(self.ctx)

    def run_all(self) -> dict:
        self.set_up()
        self.call("before_train")
        for epoch in range(self.start_epoch, self.epochs):
            self.row_extra = {}  # what hooks add to the epoch's log row (a clustering strategy's cluster count)
            self.call("before_epoch", epoch)
            self.run_epoch(epoch)
            self.call("after_epoch", epoch)
            self.summary = {**self.row, "epochs_run": self.summary["epochs_run"] + 1}
            if self.interrupted.is_set() and epoch + 1 < self.epochs:  # came during the epoch's end (eval, hooks)
                raise KeyboardInterrupt
        self.call("after_train")
        _close_loader(self.loader)
        if self.summary["epochs_run"]:
            self.summary["checksum"] = self.checksum or ckpt.parameter_checksum(self.model)  # of the final weights
        return self.summary

    # -- before the first step -------------------------------------------------------------------------------
    def set_up(self):
        """Everything before the first step, in this order (the order of random draws and of files written)."""
        self.run = prepare_run(self.store_path, self.config, self.out, self.resume, self.ctx.world)
        self.config, self.out, self.store = self.run.config, self.run.out, self.run.store
        # what in-training evaluation and the best epoch read: the test split of the (first) store
        self.eval_store = self.store.stores[0] if isinstance(self.store, StoreUnion) else self.store
        self.build()
        self.start_epoch, state = restore(self.run, self.model, self.optimizer, self.scheduler, self.side_optimizers, self.ctx)
        self.resumed = state if state and state.get("step") is not None else None  # a checkpoint from inside an epoch (SIGTERM)
        self.open_run(state)
        self.wrap()
        self.build_data()
        # checkpoints are written in the background while the next epoch trains (the Checkpointer hook submits them);
        # the trainer holds the writer so that its finally: still finishes one being written on Ctrl-C
        self.writer = ckpt.CheckpointWriter()
        self.every = int(self.config.get("log_every_steps") or 20)
        self.summary, self.checksum, self.stream = {"epochs_run": 0}, None, None
        strategy_hooks = STRATEGY.optional_member(self.strategy, "hooks")(self)
        self.register_hooks(build_hooks(self.config, self.timings) + list(strategy_hooks) + self.extra_hooks)
        for key, hook_state in ((state or {}).get("hooks") or {}).items():  # hooks that keep state (hook_states)
            self.hooks[int(key.split(":")[0])].load_state_dict(hook_state)

    def build(self):
        """The model (backbone + the strategy's heads, drawn from the run's seed) on the device, its optimisers
        (the main Adam, and the strategy's separate ones) and the learning-rate schedule."""
        import torch

        run, config, device = self.run, self.config, self.ctx.device
        torch.manual_seed(run.seed)
        self.model, self.strategy = build_model(config, run.items.num_classes, run.items.num_clothes, run.items.clothes_of_class,
                                                start_weights=not run.resume)  # a resumed run loads its own weights
        if config.get("init_from") and not (run.resume and run.checkpoint is not None):  # a resume loads its own weights
            load_init(self.model.backbone, config["init_from"])
        self.model.to(device)
        self.separate = STRATEGY.optional_member(self.strategy, "separate_optimizers")(self.model.heads)
        held = {id(p) for group in self.separate.values() for p in group["params"]}
        params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in held]
        fused = _fused_adam(device)
        self.optimizer = torch.optim.Adam(params, lr=float(config["lr"]), weight_decay=float(config["weight_decay"]), **fused)
        self.side_optimizers = {name: torch.optim.Adam(g["params"], lr=g["lr"], weight_decay=g["weight_decay"], **fused)
                                for name, g in self.separate.items()}  # constant rate: no scheduler
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.strategy.lr_factor)

    def open_run(self, state: dict | None):
        """The best epoch so far (restored with the checkpoint), config.yaml and, on a fresh start, the schedule's
        warnings (rank 0); then every rank waits for rank 0."""
        # the best epoch on the test set so far (eval_every): restored from the checkpoint a resume starts from
        if self.config.get("eval_every") and self.evaluator is None:
            raise ReidkitError("eval_every needs an evaluator: train(..., evaluator=reidkit.evaluation.during_training.TestSetEvaluator())")
        evaluated = self.evaluator.protocols(self.eval_store, self.config) if self.config.get("eval_every") else []
        self.best = BestEpoch(self.out, self.config, self.eval_store, self.ctx.main,
                              state.get("selection") if self.start_epoch else None, self.run.checkpoint, evaluated)
        if self.ctx.main:
            ckpt.write_config(self.out, self.config)
            if self.start_epoch == 0:
                for line in schedule_warnings(self.config):
                    print(f"Warning: {line}", file=sys.stderr)
        barrier(self.ctx)

    def wrap(self):
        """The model as the steps run it: channels_last on CUDA, DDP with several ranks, torch.compile when asked;
        the autocast dtype and the grad scaler."""
        import torch

        device = self.ctx.device
        self.channels_last = device.startswith("cuda")  # NHWC convolutions on the GPU (tensor cores); CPU keeps NCHW
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if self.ctx.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[device] if device.startswith("cuda") else None)
        if self.config.get("compile"):
            self.net = torch.compile(self.net)
        self.amp_dtype = _amp_dtype(self.config["amp"], device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def build_data(self):
        """The sampler (P x K is the global batch: each rank takes its share of every batch), the dataset (images or
        clips) and the run's one loader, whose one iterator serves every epoch (workers prefetch across epoch ends)."""
        run, config, ctx = self.run, self.config, self.ctx
        self.sampler = IdentityBatchSampler(run.items, config["ids_per_batch"], config["images_per_id"], run.seed,
                                            variant_limit=self.strategy.variant_limit, rank=ctx.rank, world=ctx.world,
                                            kind=config.get("sampler", "bot"), cameras=self.training_cameras(),
                                            min_batches=self.max_steps or config.get("max_steps_per_epoch"))
        self.augment_settings = {**BOT_AUGMENT, **(config.get("augment") or {})}
        kernel = run_kernel(config)  # a run resumed from before the `resize` setting keeps OpenCV's bilinear
        if run.pieces is not None:
            self.dataset = ClipDataset(run.store, run.items, run.pieces, run.clip_len, int(config["clip_stride"]), config["height"],
                                  config["width"], augment_settings=self.augment_settings, kernel=kernel)
        else:
            self.dataset = TrainDataset(run.store, run.items, config["height"], config["width"],
                                        augment_settings=self.augment_settings, kernel=kernel)
        self.workers = default_workers() if config.get("num_workers") is None else int(config["num_workers"])
        self.epochs = int(config["epochs"])
        self.open_loader(self.start_epoch, self.resumed_steps(self.start_epoch))

    def training_cameras(self):
        """Each training item's camera (its source's, for a generated one): the multigallery sampler's partners; None
        for video pieces."""
        import numpy as np

        if self.run.pieces is not None:
            return None
        items = self.run.items
        real = np.flatnonzero(items.kind == 0)
        return np.asarray(self.store.camera)[items.ref[real]][items.source]

    def resumed_steps(self, epoch: int) -> int:
        """Steps of ``epoch`` already trained by the checkpoint this run resumed from (0 unless it stopped inside it)."""
        return int(self.resumed["step"]) if self.resumed and epoch == self.start_epoch else 0

    def open_loader(self, epoch: int, skip: int = 0):
        """The loader of every batch from ``epoch``'s step ``skip`` on (RunBatches); the next step draws from a fresh iterator."""
        self.run_batches = RunBatches(self.sampler, epoch, self.epochs, self.max_steps or self.config.get("max_steps_per_epoch"), skip)
        self.loader = make_loader(self.dataset, self.run_batches, self.workers, self.ctx.device)
        self.stream = None

    def restart_data(self, epoch: int):
        """For a hook that changes the training items' labels before epoch ``epoch`` (a clustering strategy's pseudo
        labels): batches already drawn or prefetched with the old labels are dropped, the sampler plans again and new
        workers read the items as they are now. Call it from ``before_epoch(epoch)``."""
        if self.stream is not None:
            _close_loader(self.loader)
        self.sampler.forget()
        self.open_loader(epoch, self.resumed_steps(epoch))

    def register_hooks(self, hooks):
        """The run's hooks, in the order they are called; each gets ``hook.trainer``."""
        for hook in hooks:
            if not isinstance(hook, Hook):  # a strategy's hooks(trainer) returning something else: say so before training
                raise ReidkitError(f"training hooks must be reidkit.training.hooks.Hook objects (got {type(hook).__name__})")
            hook.trainer = weakref.proxy(self)  # no cycle: the run's model and loader go when the trainer does
        self.hooks = list(hooks)
        self.step_hooks = [h for h in self.hooks if type(h).after_step is not Hook.after_step]  # no per-step cost otherwise

    def call(self, event: str, *args):
        """Every hook's ``event`` method, in order (before_train, before_epoch, after_epoch, after_train)."""
        for hook in self.hooks:
            getattr(hook, event)(*args)

    # -- the epoch ---------------------------------------------------------------------------------------------
    def run_epoch(self, epoch: int):
        """The epoch's steps under its progress bar, then its log row (``self.row``)."""
        self.sampler.set_epoch(epoch)
        self.model.train()
        self.meter = LossMeter(self.ctx.device, self.every)
        stats = self.stats = EpochStats(epoch, time.perf_counter())
        if self.resumed_steps(epoch):  # the epoch's counters as the SIGTERM checkpoint left them: the row is the same
            stats.steps, stats.images = self.resumed_steps(epoch), int(self.resumed["images"])
            self.meter.load_state(self.resumed["meter"])
        planned = self.run_batches.steps(epoch)
        if planned == 0:
            raise ReidkitError("an epoch produced no batch: the train split has fewer persons or images than one batch needs")
        self.stream = self.stream or iter(self.loader)
        bar_images = planned * self.sampler.rows_per_batch(epoch)
        with progress_bar(bar_images if self.progress and self.ctx.main else 0, f"epoch {epoch + 1}/{self.epochs}", "img") as update:
            update(advance=stats.steps * self.sampler.rows_per_batch(epoch))
            tick = time.perf_counter()
            for _ in range(planned - stats.steps):
                batch = next(self.stream)
                waited = time.perf_counter() - tick
                stats.wait += waited
                stats.first_batch = waited if stats.first_batch is None else stats.first_batch
                rows = len(batch["image"])
                self.run_step(epoch, batch)
                for hook in self.step_hooks:
                    hook.after_step()
                status = self.read_status(epoch)
                update(advance=rows, **({"status": status} if status is not None else {}))
                if self.stop_requested():
                    self.stop_at_step(epoch)
                if self.interrupted.is_set():
                    raise KeyboardInterrupt
                tick = time.perf_counter()
        self.row = self.epoch_row(epoch)

    def run_step(self, epoch: int, batch: dict):
        """One optimisation step on one loader batch: on the device (random erasing drawn from the step's own seed),
        forward, the strategy's separate optimisers, its loss (summed on the device), backward and the optimiser step."""
        import torch

        stats, device = self.stats, self.ctx.device
        valid_rows = int(batch["valid"].sum())  # a CPU tensor still: no device sync
        batch = device_batch(batch, device, self.augment_settings,
                             erase_generator(self.run.seed, epoch, stats.steps, self.ctx.rank), self.channels_last)
        with torch.autocast(device.split(":")[0], dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            outputs = self.net(batch["image"])
        side_parts = _step_side_optimizers(self.strategy, self.side_optimizers, self.separate, outputs, batch, epoch, self.ctx)
        loss, parts = self.strategy.loss(outputs, batch, epoch)
        self.meter.add(stats.steps, loss, parts, side_parts)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        stats.images += valid_rows
        stats.steps += 1

    def stop_requested(self) -> bool:
        """SIGTERM came. One process: after any step. Several: every rank must stop at the same step, so they agree
        (one all-reduce) every ``log_every_steps`` steps, where they already sync."""
        if self.ctx.world == 1:
            return self.terminated.is_set()
        if self.stats.steps % self.every:
            return False
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1.0 if self.terminated.is_set() else 0.0], device=self.ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def stop_at_step(self, epoch: int):
        """A checkpoint at this step (rank 0, published whole, written before returning), then the one resume line."""
        stats = self.stats
        checkpointer = next(h for h in self.hooks if isinstance(h, Checkpointer))
        if self.ctx.main:
            checkpointer.save(epoch, step=stats.steps,
                              more={"images": stats.images, "meter": self.meter.state(epoch)})
        self.writer.wait()
        barrier(self.ctx)
        folder = self.out / ckpt.CHECKPOINTS / ckpt.folder_name(epoch - 1, stats.steps)
        raise Preempted(f"stopped by SIGTERM at epoch {epoch + 1}, step {stats.steps}; checkpoint {folder} written. "
                        f"Continue with: reidkit train {' '.join(store_paths(self.config))} --out {self.out} --resume")

    def hook_states(self) -> dict:
        """What hooks with state (a ``state_dict()`` that returns a dict) keep in a checkpoint, by position."""
        states = {f"{i}:{type(h).__name__}": h.state_dict() for i, h in enumerate(self.hooks)}
        return {k: v for k, v in states.items() if v is not None}

    def read_status(self, epoch: int) -> str | None:
        """Every ``log_every_steps`` steps, one host sync: the running loss means for the bar (and the non-finite check)."""
        steps = self.stats.steps
        if steps % self.every:
            return None
        means = self.meter.read(epoch)
        return " ".join(f"{k} {v / steps:.3f}" for k, v in means.items())

    def epoch_row(self, epoch: int) -> dict:
        """The epoch's log row: its loss sums read back (a non-finite loss stops the run here, before anything is written),
        the learning rate it trained at (before the schedule steps), images, seconds, the data wait, the variant pool."""
        stats = self.stats
        totals = self.meter.read(epoch)
        stats.seconds = time.perf_counter() - stats.t0
        lr = self.optimizer.param_groups[0]["lr"]
        return {"epoch": epoch + 1, "lr": lr, **{k: round(v / stats.steps, 6) for k, v in totals.items()}, **self.row_extra,
                "images": stats.images, "seconds": round(stats.seconds, 3), "images_per_s": round(stats.images / stats.seconds, 2),
                "data_wait_share": round(stats.wait / stats.seconds, 4), "variant_pool": self.sampler.limit() or 0}
