"""One training step's parts: the run's loader, batches on the device, loss sums kept on the device, precision and
optimiser choices, and the strategy's separate optimisers (used by ``reidkit.training.trainer.Trainer``).

The step is built to keep a GPU fed: one DataLoader with persistent workers for the whole run, uint8 batches
(normalisation and random erasing on the device), channels_last + cuDNN benchmark + fused Adam on CUDA, and losses
summed on the device and read back every ``log_every_steps`` steps.
"""
from __future__ import annotations

from reidkit.contracts import CONTRACTS
from reidkit.errors import ReidkitError
from reidkit.training.data import device_normalise_and_erase, erase_boxes

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

    def state(self, epoch: int) -> dict:
        """The sums and the non-finite watch as CPU tensors, for a checkpoint inside an epoch (checked first)."""
        self.read(epoch)
        return {"sums": {k: v.cpu() for k, v in self.sums.items()},
                "bad": {k: [x.cpu() for x in pair] for k, pair in self.bad.items()}}

    def load_state(self, state: dict):
        """Continue from :meth:`state`: the same sums, added to in the same order, give the same epoch means."""
        self.sums = {k: v.to(self.device, self.dtype) for k, v in state["sums"].items()}
        self.bad = {k: tuple(x.to(self.device, self.dtype) for x in pair) for k, pair in state["bad"].items()}


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
