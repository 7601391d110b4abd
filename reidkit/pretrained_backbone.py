"""Pre-trained backbones: export a trained backbone (safetensors + its settings) and start training from one.

An export is a folder holding ``backbone.safetensors`` (the backbone module's
state: trunk and neck, no classifier) and ``backbone.yaml`` (the backbone
settings that rebuild the same module, plus where the weights came from).
``reidkit train --init-from EXPORT`` loads it into any strategy's model.

``--init-from RUN`` also takes a training run folder (``reidkit train --out``)
that holds no export: the backbone part of its latest checkpoint's weights
(``checkpoints/epoch-NNNN/model.safetensors``, the ``backbone.`` tensors; the
heads are left out), with the run's backbone settings from its config.yaml.
This is how domain adaptation starts from a model trained with labels on
another store (``--strategy cluster-contrast``, docs/training.md).
"""
from __future__ import annotations

from pathlib import Path

from reidkit.errors import ReidkitError
from reidkit.store import atomic

WEIGHTS_FILE, SETTINGS_FILE = "backbone.safetensors", "backbone.yaml"


def export_backbone(out, model, config: dict, epoch: int) -> Path:
    """Write ``out/backbone.safetensors`` and ``out/backbone.yaml`` (atomically; each save replaces the last)."""
    import yaml

    from reidkit.training.checkpoint import write_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.backbone.state_dict().items()}
    write_safetensors(out / WEIGHTS_FILE, state, {"format": "reidkit-backbone", "epoch": str(epoch)})
    backbone = {k: v for k, v in dict(config["backbone"]).items() if k != "weights"}
    info = {"backbone": backbone, "epoch": int(epoch) + 1, "store": config.get("store"),
            "store_fingerprint": config.get("store_fingerprint"), "strategy": config.get("strategy", config.get("plugin")),
            "num_classes": (config.get("data") or {}).get("num_classes"), "height": config.get("height"), "width": config.get("width")}
    with atomic.atomic_output(out / SETTINGS_FILE, replace=True) as partial:
        partial.write_text(yaml.safe_dump(info, sort_keys=False))
    return out / WEIGHTS_FILE


def resolve_export(path) -> tuple[Path, dict]:
    """(weights file, recorded settings) of an export folder or of its backbone.safetensors file, or of a training
    run folder without an export (its latest checkpoint's model.safetensors and its config.yaml's backbone)."""
    import yaml

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = folder / WEIGHTS_FILE if path.is_dir() else path
    if path.is_dir() and not weights.is_file() and (path / "config.yaml").is_file():
        return resolve_run(path)
    if not weights.is_file():
        raise ReidkitError(f"--init-from {path}: no {WEIGHTS_FILE} there (expected the --out folder of "
                           "'reidkit train --plugin pretrain' or its backbone.safetensors, or a training run folder)")
    settings_file = folder / SETTINGS_FILE
    info = yaml.safe_load(settings_file.read_text()) if settings_file.is_file() else {}
    return weights, info or {}


def resolve_run(run) -> tuple[Path, dict]:
    """(the latest checkpoint's model.safetensors, {"backbone": the run's backbone settings}) of a training run folder."""
    from reidkit.training.checkpoint import MODEL_FILE, latest_checkpoint, read_config

    run = Path(run)
    checkpoint = latest_checkpoint(run)
    if checkpoint is None and (run / MODEL_FILE).is_file():  # an imported run (import-checkpoint): weights at the top
        checkpoint = run
    if checkpoint is None or not (checkpoint / MODEL_FILE).is_file():
        raise ReidkitError(f"--init-from {run}: the run has no complete checkpoint yet (train it for at least one epoch)")
    config = read_config(run)
    backbone = {k: v for k, v in dict(config.get("backbone") or {}).items() if k not in ("weights", "resolved_weights")}
    return checkpoint / MODEL_FILE, {"backbone": backbone, "strategy": config.get("strategy"), "store": config.get("store"),
                                     "store_fingerprint": config.get("store_fingerprint")}


def load_init(backbone, path) -> dict:
    """Load an export, or the backbone part of a run's checkpoint, into ``backbone``: every tensor must exist with the
    same shape (strict)."""
    from safetensors.torch import load_file

    weights, _ = resolve_export(path)
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise ReidkitError(f"{weights} is not a readable safetensors file: {str(exc).splitlines()[0]}") from None
    if any(k.startswith("backbone.") for k in state):  # a whole model (a run's checkpoint): its backbone, no heads
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    own = backbone.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ReidkitError(f"--init-from {weights}: tensor {mismatched[0]} has shape {tuple(state[mismatched[0]].shape)}, "
                           f"the model expects {tuple(own[mismatched[0]].shape)} (another backbone? use the export's own)")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:  # another architecture that happens to share some tensors: refuse, never half-load
        first = (missing or unexpected)[0]
        raise ReidkitError(f"--init-from {weights} does not fit this backbone: {len(missing)} tensors missing, "
                           f"{len(unexpected)} unexpected (e.g. {first}); use the export's own backbone (leave out --backbone)")
    backbone.load_state_dict(state)
    return {"loaded": len(state)}
