"""Trained checkpoints of other Re-ID projects as reidkit runs (``reidkit import-checkpoint``, docs/import.md).

One module per source format (cal, bot, fastreid, torchreid), each naming the source files its mapping follows.
A reader turns the loaded checkpoint into a :class:`~reidkit.importing.plan.Plan` (reidkit's backbone settings,
strategy and tensors, the source's test-time settings, what it left out); this module builds reidkit's model from
the plan, checks every tensor against it (shapes; nothing but classifier tensors missing), and writes a run folder
(config.yaml + model.safetensors) that ``eval``, ``export``, ``train --init-from`` and refinement read.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from reidkit.errors import ReidkitError

FORMATS = ("cal", "bot", "fastreid", "torchreid")
PROJECTS = {"cal": "CAL/DLCR", "bot": "BoT", "fastreid": "fast-reid", "torchreid": "torchreid"}
# why a stem setting is needed, for the line refusing a format when the backbone plugin lacks the setting
STEM_REASONS = {
    "stem_relu": "BoT's ResNet-50 has no ReLU after its stem's BN (reid-strong-baseline's 'add missed relu' is "
                 "commented out)",
    "stem_pool": "fast-reid's ResNet-50 max-pools its stem with kernel 3, stride 2, no padding and ceil_mode "
                 "(torchvision's pads by 1)",
}


def reader(fmt: str):
    if fmt not in FORMATS:
        raise ReidkitError(f"unknown checkpoint format '{fmt}' (known: {', '.join(FORMATS)})")
    return importlib.import_module(f"reidkit.importing.{fmt}")


def detect_format(checkpoint) -> str:
    """The source format, from the checkpoint's entries and keys; one line describing it when none fits."""
    if not isinstance(checkpoint, dict):
        raise ReidkitError(f"not a checkpoint reidkit can import: it holds a {type(checkpoint).__name__}, not a dict "
                           "of tensors or a training checkpoint's dict")
    for fmt in ("cal", "fastreid", "bot", "torchreid"):
        if reader(fmt).detect(checkpoint):
            return fmt
    raise ReidkitError(f"not a checkpoint of {', '.join(PROJECTS.values())}: {describe(checkpoint)} "
                       "(give --format if you know which it is)")


def describe(checkpoint: dict) -> str:
    """What a checkpoint of no known format holds: an architecture reidkit names, or its entries and first keys."""
    from reidkit.importing.reading import is_state_dict, strip_module
    from reidkit.importing.resnet import describe_unsupported

    state = next((checkpoint[k] for k in ("state_dict", "model", "model_state_dict", "net", "params")
                  if is_state_dict(checkpoint.get(k))), checkpoint if is_state_dict(checkpoint) else None)
    if state is None:
        return f"entries {', '.join(map(str, list(checkpoint)[:5])) or 'none'}, no state dict of tensors among them"
    state = strip_module(state)
    for prefix in ("backbone.", "base."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    problem = describe_unsupported(list(state), "")
    return f"found {problem}" if problem else f"keys {', '.join(list(state)[:3])}..."


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_out(out: Path):
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReidkitError(f"--out {out} already exists and is not an empty folder: choose a new run folder")


def backbone_support(backbone: dict, fmt: str):
    """Refuse (one line) a stem setting the installed timm backbone plugin does not take."""
    import inspect

    from reidkit.importing.plan import STEM_DEFAULTS
    from reidkit.plugin_manager import get_plugins

    params = inspect.signature(get_plugins().get("backbones", "timm")).parameters
    for key, default in STEM_DEFAULTS.items():
        if backbone.get(key, default) != default and key not in params:
            raise ReidkitError(f"{STEM_REASONS[key]}; this reidkit's timm backbone has no '{key}' setting to reproduce "
                               f"it, so the {PROJECTS[fmt]} model's features would differ (refused)")


def label_map(plan, store) -> dict:
    """num_classes, num_clothes, class_pids and clothes_of_class for config.yaml's ``data``: the store's training
    persons where their number equals the classifier's (ordered as the source numbers them), else placeholders
    (negative ids, which no store holds: the persons are unnamed)."""
    classes, clothes = plan.num_classes, plan.num_clothes
    if store is not None:
        from reidkit.training.data import build_items

        items = build_items(store)
        if classes is None:
            classes = items.num_classes  # no classifier in the checkpoint: sized to the store's persons
        if classes == items.num_classes:
            key = str if plan.label_order == "text" else int
            pids = sorted(items.label_of_pid, key=key)
            outfits = [list(items.clothes_of_class[items.label_of_pid[p]]) for p in pids]
            num_clothes = items.num_clothes
            if plan.strategy == "cal" and clothes is not None and clothes != items.num_clothes:
                num_clothes, outfits = clothes, [[] for _ in pids]  # its clothes classifier is not this store's outfits
            order = "sorted as text, as fast-reid numbers them" if plan.label_order == "text" else "sorted by id"
            return {"num_classes": classes, "num_clothes": max(num_clothes, 2) if plan.strategy == "cal" else num_clothes,
                    "class_pids": [int(p) for p in pids], "clothes_of_class": outfits,
                    "label_map": f"the store's {classes} training persons ({order})"}
        why = f"the classifier has {classes} persons, the store's training split {items.num_classes}"
    else:
        why = "no --store"
    classes = classes or 1
    num_clothes = clothes or 0
    if plan.strategy == "cal":
        num_clothes = max(num_clothes, 2)
    return {"num_classes": classes, "num_clothes": num_clothes, "class_pids": [-(i + 1) for i in range(classes)],
            "clothes_of_class": [[] for _ in range(classes)], "label_map": f"none ({why}): the persons stay unnamed"}


def build_config(plan, labels: dict, store, height=None, width=None) -> dict:
    """config.yaml of the imported run: the strategy's settings with the source's test-time ones, the backbone that
    reproduces its architecture, the label map, and (by the caller) ``imported_from``."""
    import platform

    import torch

    from reidkit._version import __version__
    from reidkit.training.config import resolve_config

    test = {**plan.test, **({"height": int(height)} if height else {}), **({"width": int(width)} if width else {})}
    config = resolve_config(plan.strategy, {}, {**test, "classifier_bias": bool(plan.classifier_bias)})
    config["backbone"] = {"plugin": "timm", "model": "resnet50", "weights": None, **plan.backbone}
    config["store"] = str(Path(store.path).resolve()) if store is not None else None
    config["store_fingerprint"] = store.fingerprint if store is not None else None
    config["data"] = {k: v for k, v in labels.items() if k != "label_map"}
    config["data"].update(real_images=0, generated_images=0, variants=0)
    config["versions"] = {"reidkit": __version__, "torch": str(torch.__version__), "python": platform.python_version()}
    return config


def reidkit_state(plan, config: dict, labels: dict) -> tuple[dict, list, int]:
    """(reidkit's state dict, missing keys, num_batches_tracked filled): the plan's tensors checked against the model
    its config builds (same keys and shapes); keys the checkpoint lacks keep reidkit's seeded initialisation, allowed
    for the heads (classifiers) only."""
    import torch

    from reidkit.training.checkpoint import model_state
    from reidkit.training.model import build_model

    project = PROJECTS[plan.format]
    torch.manual_seed(0)
    model, _ = build_model(config, labels["num_classes"], labels["num_clothes"], labels["clothes_of_class"])
    own = model.state_dict()
    state = {}
    for key, (tensor, source_key) in plan.tensors.items():
        if key not in own:
            raise ReidkitError(f"{project} checkpoint: reidkit's model has no {key} for {source_key} (refused)")
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise ReidkitError(f"{project} checkpoint: shape mismatch: {source_key} is {tuple(tensor.shape)}, reidkit's "
                               f"{key} is {tuple(own[key].shape)} (refused)")
        state[key] = tensor
    absent = [k for k in own if k not in state]
    filled = [k for k in absent if k.endswith("num_batches_tracked")]  # a counter BN does not use at test time
    missing = [k for k in absent if k not in filled]
    partial = [k for k in missing if not k.startswith("heads.")]
    if partial:
        raise ReidkitError(f"{project} checkpoint: a partial match, nothing for reidkit's {partial[0]}"
                           f"{f' and {len(partial) - 1} more' if len(partial) > 1 else ''} (refused)")
    model.load_state_dict({**own, **state}, strict=True)
    return model_state(model), missing, len(filled)


def write_run(out: Path, state: dict, config: dict, metadata: dict):
    """The run folder, published whole: filled under a hidden partial name beside it, then renamed into place."""
    import os
    import shutil

    from reidkit.store.atomic import fsync_path, partial_path, pid_alive
    from reidkit.training.checkpoint import MODEL_FILE, write_config, write_safetensors

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out)
    prefix = partial.name[: partial.name.rindex("-") + 1]
    for leftover in out.parent.iterdir():  # partial folders of imports that were killed
        pid = leftover.name[len(prefix):]
        if leftover.name.startswith(prefix) and pid.isdigit() and (leftover == partial or not pid_alive(int(pid))):
            shutil.rmtree(leftover, ignore_errors=True)
    partial.mkdir()
    try:
        write_safetensors(partial / MODEL_FILE, state, metadata)
        write_config(partial, config)
        fsync_path(partial)
        if out.is_dir():
            out.rmdir()  # an empty folder given as --out (checked before anything was read)
        os.rename(partial, out)
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def import_checkpoint(path, out, fmt: str | None = None, store_path=None, pooling: str | None = None,
                      last_stride: int | None = None, height: int | None = None, width: int | None = None) -> dict:
    """Read ``path`` (``fmt``, or detected from its keys), write the reidkit run ``out``; returns what was done."""
    from reidkit.importing.plan import Options
    from reidkit.importing.reading import load_checkpoint

    path, out = Path(path), Path(out)
    check_out(out)
    store = None
    if store_path is not None:
        from reidkit import open_store

        store = open_store(store_path)
    checkpoint = load_checkpoint(path)
    if fmt is None:
        fmt = detect_format(checkpoint)
    elif not isinstance(checkpoint, dict):
        detect_format(checkpoint)  # the line saying what it holds
    module = reader(fmt)
    try:
        plan = module.plan(checkpoint, Options(pooling=pooling, last_stride=last_stride))
    except ReidkitError as exc:
        if str(exc.message).startswith("not a "):
            try:
                other = detect_format(checkpoint)
            except ReidkitError:
                other = None
            if other and other != fmt:
                exc.message += f"; it looks like a {PROJECTS[other]} checkpoint (--format {other})"
        raise
    backbone_support(plan.backbone, fmt)
    labels = label_map(plan, store)
    config = build_config(plan, labels, store, height, width)
    state, missing, filled = reidkit_state(plan, config, labels)
    sha = _sha256(path)
    dropped = [key for key, _ in plan.dropped]
    notes = [f"dropped {key}: {why}" for key, why in plan.dropped] + list(plan.notes)
    config["imported_from"] = {
        "path": str(path.resolve()), "format": fmt, "project": module.SOURCE, "sha256": sha,
        "dropped_keys": dropped, "missing_keys": missing, "label_map": labels["label_map"],
        **({"filled_num_batches_tracked": filled} if filled else {}),
        **({"metadata": plan.metadata} if plan.metadata else {}), "notes": notes,
    }
    write_run(out, state, config, {"format": "reidkit", "imported_from": fmt, "source_sha256": sha})
    return {"out": str(out), "format": fmt, "strategy": plan.strategy, "backbone": config["backbone"],
            "test": {k: config[k] for k in ("height", "width", "test_flip", "resize")},
            "num_classes": labels["num_classes"], "label_map": labels["label_map"],
            "dropped": [{"key": k, "why": why} for k, why in plan.dropped], "missing": missing, "notes": list(plan.notes),
            "store": config["store"], "sha256": sha}
