"""Training's library function: :func:`train`, one process or several under torchrun / accelerate launch (DDP),
with exact resume.

It runs a :class:`reidkit.training.trainer.Trainer`, whose ``train()`` is before_train / per epoch: before_epoch,
the steps (``run_step``), after_epoch / after_train. Checkpointing, the learning-rate step, the log, rank
checksums, in-training evaluation with the best epoch, and timings are hooks around the steps
(``reidkit.training.hooks``, assembled by ``build_hooks``); a strategy may add its own (``hooks(trainer)``).
Rank 0 writes every file; with ``check_sync`` each rank records a checksum of its parameters and the ranks
compare them.

The step's parts live in ``reidkit.training.step`` (one DataLoader with persistent workers for the whole run,
uint8 batches normalised and erased on the device, channels_last + cuDNN benchmark + fused Adam on CUDA, losses
summed on the device and read back every ``log_every_steps`` steps); the names benchmarks and tests import from
here stay importable here.
"""
from __future__ import annotations

from reidkit.store.lock import one_writer_per_run_folder
from reidkit.training.hooks import EpochLog, log_metrics
from reidkit.training.step import (LossMeter, _amp_dtype, _close_loader, _cuda_setup, _fused_adam,
                                   _step_side_optimizers, device_batch, make_loader)
from reidkit.training.trainer import Trainer

__all__ = ["train", "Trainer", "make_loader", "device_batch", "LossMeter", "EpochLog",
           "log_metrics", "_amp_dtype", "_cuda_setup", "_fused_adam", "_close_loader", "_step_side_optimizers"]


def train(store_path, config: dict, out, resume=False, progress=True, max_steps=None, timings: list | None = None,
          evaluator=None) -> dict:
    """Train a model as ``config`` says into ``out``; returns a summary. ``max_steps`` caps each epoch (tests, benchmarks);
    ``timings``: a list that gets one dict of seconds per epoch (loop, data wait, first batch, eval, checkpoint, whole).
    ``evaluator``: what ``eval_every`` calls (``reidkit.evaluation.during_training.TestSetEvaluator()``; needed only then)."""
    with one_writer_per_run_folder(out):  # one trainer per run folder, whoever calls this
        return Trainer(store_path, config, out, resume=resume, progress=progress, max_steps=max_steps, timings=timings,
                       evaluator=evaluator).train()
