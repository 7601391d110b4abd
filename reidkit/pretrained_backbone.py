"""Pre-trained backbones: export a trained backbone (safetensors + its settings) and start training from one.

An export is a folder holding ``backbone.safetensors`` (the backbone module's
state: trunk and neck, no classifier) and ``backbone.yaml`` (the backbone
settings that rebuild the same module, plus where the weights came from).
``reidkit train --init-from EXPORT`` loads it into any strategy's model.
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
            "store_fingerprint": config.get("store_fingerprint"), "strategy": config.get("plugin"),
            "num_classes": (config.get("data") or {}).get("num_classes"), "height": config.get("height"), "width": config.get("width")}
    with atomic.atomic_output(out / SETTINGS_FILE, replace=True) as partial:
        partial.write_text(yaml.safe_dump(info, sort_keys=False))
    return out / WEIGHTS_FILE


def resolve_export(path) -> tuple[Path, dict]:
    """(weights file, recorded settings) of an export folder or of its backbone.safetensors file."""
    import yaml

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = folder / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise ReidkitError(f"--init-from {path}: no {WEIGHTS_FILE} there (expected the --out folder of "
                           "'reidkit train --plugin pretrain' or its backbone.safetensors)")
    settings_file = folder / SETTINGS_FILE
    info = yaml.safe_load(settings_file.read_text()) if settings_file.is_file() else {}
    return weights, info or {}


def load_init(backbone, path) -> dict:
    """Load an export into ``backbone``: every tensor must exist with the same shape (strict)."""
    from safetensors.torch import load_file

    weights, _ = resolve_export(path)
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise ReidkitError(f"{weights} is not a readable safetensors file: {str(exc).splitlines()[0]}") from None
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
