"""The jobs around the training steps, as hook objects the trainer (``reidkit.training.trainer.Trainer``) calls.

A :class:`Hook` has five no-op methods: ``before_train()``, ``before_epoch(epoch)``, ``after_step()``,
``after_epoch(epoch)`` and ``after_train()`` (epochs 0-based); the trainer sets ``hook.trainer`` when it registers
the hook and calls every hook in list order. :func:`build_hooks` assembles the built-in ones, whose order is the
engine's order at an epoch's end: the learning-rate step, the ranks' checksums (``check_sync``), in-training
evaluation with the best epoch so far (``eval_every``), the log row, the checkpoint (rank 0; then every rank waits),
the timings. A strategy's optional ``hooks(trainer)`` returns more, called after these.

Rank 0 writes every file; with ``check_sync`` each rank records a checksum of its parameters and the ranks compare them.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from reidkit.contracts import CONTRACTS
from reidkit.errors import ReidkitError
from reidkit.training import checkpoint as ckpt
from reidkit.training.config import default_workers
from reidkit.training.distributed import barrier

STRATEGY = CONTRACTS["strategies"]


class Hook:
    """A job around the steps; every method does nothing unless overridden. ``self.trainer`` is the trainer
    (a weak proxy: a hook does not keep the run's model and loader alive)."""

    trainer = None

    def before_train(self):
        """Once everything is built and restored, before the first epoch."""

    def before_epoch(self, epoch: int):
        """Before epoch ``epoch``'s steps (and before its sampler is set to the epoch). The run's one loader iterator
        may already have drawn and prefetched the epoch's first batches while the previous epoch ended: a hook that
        changes the items' labels here calls ``trainer.restart_data(epoch)`` so the epoch is planned from them."""

    def after_step(self):
        """After each optimisation step (``trainer.stats.steps`` counts them); keep it cheap: it runs every step."""

    def after_epoch(self, epoch: int):
        """After the epoch's steps; ``trainer.row`` is its log row (loss means, images, seconds, ...)."""

    def after_train(self):
        """After the last epoch (not when the run stops on an error or Ctrl-C)."""

    def state_dict(self) -> dict | None:
        """What this hook must keep in every checkpoint to resume exactly (tensors and plain values), or None."""
        return None

    def load_state_dict(self, state: dict):
        """Put back what :meth:`state_dict` returned, on resume (after the hooks are registered, before before_train).
        ``trainer.resumed_steps(epoch)`` says whether the first epoch was stopped part-way by SIGTERM."""


class LRScheduler(Hook):
    """Steps the learning-rate schedule once per epoch (the row has already recorded the rate the epoch used)."""

    def after_epoch(self, epoch: int):
        self.trainer.scheduler.step()


class RankChecksums(Hook):
    """``check_sync``: each rank's parameter hash into ``ranks/rank-R.json``; ranks that disagree stop the run."""

    def after_epoch(self, epoch: int):
        t = self.trainer
        t.checksum = ckpt.parameter_checksum(t.model)  # also the summary's checksum: the final weights' hash
        _write_rank_checksum(t.out, t.ctx, epoch, t.checksum)
        _compare_rank_checksums(t.ctx, epoch, t.checksum)


class InTrainingEval(Hook):
    """``eval_every``: every protocol's rank-1 and mAP into the epoch's row, and the best epoch so far
    (``trainer.best``, reidkit.training.selection) updated. The evaluation itself is the trainer's ``evaluator``
    (given by the command that starts the run: reidkit.evaluation.during_training.TestSetEvaluator), so training
    never imports evaluation."""

    def after_epoch(self, epoch: int):
        t = self.trainer
        t.stats.eval_started = time.perf_counter()
        every = t.config["eval_every"]
        if every and ((epoch + 1) % int(every) == 0 or epoch + 1 == t.epochs):
            results = t.evaluator(t.model, t.eval_store, t.config, t.ctx.device)
            if t.ctx.main:
                t.row.update(log_metrics(results))
                t.best.update(epoch, results, t.model)
        t.stats.eval_ended = time.perf_counter()


class WriteLog(Hook):
    """The epoch's row into log.csv (and TensorBoard), rank 0."""

    log = None

    def before_train(self):
        t = self.trainer
        self.log = EpochLog(t.out, t.resume) if t.ctx.main else None

    def after_epoch(self, epoch: int):
        if self.trainer.ctx.main:
            self.log.add(self.trainer.row)  # before the checkpoint, which keeps a copy: log and checkpoint never disagree on resume


class Checkpointer(Hook):
    """A checkpoint every ``checkpoint_every`` epochs and after the last (rank 0), written by the trainer's background
    ``CheckpointWriter`` while the next epoch trains; the best epoch so far rides in it and ``best/`` follows it once it
    is on disk. The last one is on disk before training ends; every rank waits for rank 0 at each epoch's end."""

    def after_epoch(self, epoch: int):
        t = self.trainer
        last = epoch + 1 == t.epochs
        if t.ctx.main and (last or (epoch + 1) % int(t.config["checkpoint_every"]) == 0):
            self.save(epoch)
        if last:
            t.writer.wait()  # the run's last checkpoint is on disk when train() returns
        barrier(t.ctx)

    def save(self, epoch: int, step: int | None = None, more: dict | None = None):
        """After epoch ``epoch``; or, with ``step``, ``step`` steps into it (SIGTERM: ``more`` holds the epoch's counters)."""
        import torch

        t = self.trainer
        out, config, best = t.out, t.config, t.best  # the writing thread sees these, not the trainer
        extra = {"side_optimizers": {n: o.state_dict() for n, o in t.side_optimizers.items()}, "hooks": t.hook_states()}
        if t.ctx.device.startswith("cuda"):
            extra["cuda_rng"] = torch.cuda.get_rng_state(t.ctx.device)
        if step is not None:  # named after the epochs done, with the steps of this one
            extra.update(more or {}, step=int(step))
        # a CPU copy of everything now (exact resume); the files are written by a background thread, one at a time
        snapshot = ckpt.snapshot(out, t.model, t.optimizer, t.scheduler, epoch if step is None else epoch - 1, extra=extra)
        snapshot["step"] = step
        best.attach(snapshot)  # the best so far rides in the checkpoint; best/ follows it once it is on disk
        t.writer.submit(lambda snap=snapshot: (ckpt.write_snapshot(out, snap, keep=int(config.get("keep_checkpoints") or 2)),
                                               best.publish(snap)))
        STRATEGY.optional_member(t.strategy, "on_checkpoint")(out, t.model, config, epoch)  # e.g. pretrain exports its backbone

    def after_train(self):
        self.trainer.writer.wait()


class Timings(Hook):
    """One dict of seconds per epoch into ``timings`` (loop, data wait, first batch, eval, checkpoint, whole)."""

    def __init__(self, timings: list):
        self.timings = timings

    def after_epoch(self, epoch: int):
        s, end = self.trainer.stats, time.perf_counter()
        loop_end = s.t0 + s.seconds
        eval_ended = loop_end if s.eval_ended is None else s.eval_ended  # a trainer built without InTrainingEval
        eval_started = eval_ended if s.eval_started is None else s.eval_started
        self.timings.append({"epoch": epoch + 1, "steps": s.steps, "images": s.images, "loop_s": s.seconds,
                             "data_wait_s": s.wait, "first_batch_s": s.first_batch, "eval_s": eval_ended - eval_started,
                             "checkpoint_s": end - eval_ended, "epoch_s": end - s.t0})


def build_hooks(config: dict, timings: list | None = None) -> list[Hook]:
    """The built-in hooks of a run with ``config``, in the order they run (``timings``: a list to fill, or None)."""
    hooks = [LRScheduler()]
    if config.get("check_sync"):
        hooks.append(RankChecksums())
    hooks += [InTrainingEval(), WriteLog(), Checkpointer()]
    if timings is not None:
        hooks.append(Timings(timings))
    return hooks


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


def log_metrics(results: dict) -> dict:
    """log.csv's evaluation columns: rank-1 and mAP of every protocol, rounded."""
    return {f"{p}_{m}": round(float(v[m]), 4) for p, v in results.items() for m in ("rank1", "mAP")}
