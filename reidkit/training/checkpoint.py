"""Checkpoints: model.safetensors + config.yaml (full settings, store fingerprint, label map) + state.pt (to resume)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from reidkit.errors import ReidkitError
from reidkit.store import atomic

MODEL_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "config.yaml", "state.pt"


def write_config(out: Path, config: dict):
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_output(out / CONFIG_FILE, replace=True) as partial:
        partial.write_text(yaml.safe_dump(config, sort_keys=False))


def read_config(out: Path) -> dict:
    import yaml

    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise ReidkitError(f"{out} is not a reidkit training run (no {CONFIG_FILE}; expected the --out folder of 'reidkit train')")
    return yaml.safe_load(path.read_text())


def model_state(model) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(out: Path, model, optimizer, scheduler, epoch: int, extra: dict | None = None):
    """Write weights, then training state; both carry the epoch, so a torn pair is detected on resume."""
    import torch
    from safetensors.torch import save_file

    with atomic.atomic_output(out / MODEL_FILE, replace=True) as partial:
        save_file(model_state(model), str(partial), metadata={"epoch": str(epoch), "format": "reidkit"})
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state(), **(extra or {})}
    with atomic.atomic_output(out / STATE_FILE, replace=True) as partial:
        torch.save(state, partial)


def load_weights(out: Path) -> tuple[dict, int]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(out) / MODEL_FILE
    if not path.is_file():
        raise ReidkitError(f"{out} has no {MODEL_FILE} yet (training has not finished an epoch)")
    with safe_open(str(path), "pt") as f:
        epoch = int((f.metadata() or {}).get("epoch", -1))
    return load_file(str(path)), epoch


def load_state(out: Path) -> dict:
    import torch

    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise ReidkitError(f"{out} has no {STATE_FILE}: nothing to resume")
    return torch.load(path, map_location="cpu", weights_only=True)


def parameter_checksum(model) -> str:
    """SHA-256 over all parameters (bytes, in name order): equal on every rank when DDP keeps them in sync."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
