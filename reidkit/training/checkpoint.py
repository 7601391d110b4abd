"""Checkpoints: config.yaml (full settings, store fingerprint, label map), checkpoints/epoch-NNNN/{model.safetensors,
state.pt, log.csv} published whole, and model.safetensors at the top (the latest weights, for eval). A run stopped
by SIGTERM mid-epoch leaves checkpoints/epoch-NNNN-step-SSSSSS (NNNN epochs done, SSSSSS steps of the next): resume
continues from it; the top-level weights stay the last whole epoch's."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reidkit.errors import ReidkitError
from reidkit.interrupts import interrupt_flag
from reidkit.store import atomic

MODEL_FILE, CONFIG_FILE, STATE_FILE, LOG_FILE = "model.safetensors", "config.yaml", "state.pt", "log.csv"
CHECKPOINTS = "checkpoints"


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
    config = yaml.safe_load(path.read_text())
    if isinstance(config, dict) and "plugin" in config and "strategy" not in config:  # a run made before the key's rename
        config = {("strategy" if k == "plugin" else k): v for k, v in config.items()}
    return config


def model_state(model) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def safetensors_bytes(state: dict, metadata: dict) -> bytes:
    """safetensors bytes with the metadata keys in sorted order, so identical runs give identical files.

    safetensors writes its metadata map in arbitrary order; the header is rewritten with the same JSON text
    reordered (same length), leaving the tensor data untouched.
    """
    import json
    import struct

    from safetensors.torch import save

    data = bytearray(save(state, metadata={str(k): str(v) for k, v in metadata.items()}))
    (n,) = struct.unpack("<Q", data[:8])
    text = data[8:8 + n].decode("utf-8")
    header = json.loads(text.rstrip(), object_pairs_hook=dict)
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    rest = {k: v for k, v in header.items() if k != "__metadata__"}
    fixed = json.dumps({"__metadata__": header["__metadata__"], **rest}, separators=(",", ":"))
    if len(fixed.encode()) == len(text.rstrip().encode()):  # same keys and values, reordered: same length
        data[8:8 + n] = fixed.encode().ljust(n, b" ")
    return bytes(data)


def write_safetensors(path: Path, state: dict, metadata: dict):
    """Atomically write deterministic safetensors bytes to ``path``."""
    with atomic.atomic_output(Path(path), replace=True) as partial:
        Path(partial).write_bytes(safetensors_bytes(state, metadata))


def folder_name(epoch: int, step: int | None = None) -> str:
    """``epoch-NNNN`` after epoch ``epoch`` (0-based, named 1-based); ``epoch-NNNN-step-SSSSSS``: ``step`` steps into
    epoch ``epoch + 1`` (a run stopped mid-epoch)."""
    return f"epoch-{epoch + 1:04d}" + (f"-step-{int(step):06d}" if step is not None else "")


def _order(name: str) -> tuple[int, int] | None:
    """(epochs done, steps of the next) of a checkpoint folder's name; None for another name."""
    if not name.startswith("epoch-"):
        return None
    epoch, _, step = name[6:].partition("-step-")
    if not epoch.isdigit() or (step and not step.isdigit()) or (_ and not step):
        return None
    return int(epoch), int(step or 0)


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (``checkpoints/epoch-NNNN[-step-SSSSSS]``, each renamed into place whole)."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if d.is_dir() and _order(d.name) is not None]
    return sorted(found, key=lambda d: _order(d.name))


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder, or the legacy top-level pair (runs written before folders), or None."""
    dirs = checkpoint_dirs(out)
    if dirs:
        return dirs[-1]
    out = Path(out)
    return out if (out / STATE_FILE).is_file() and (out / MODEL_FILE).is_file() else None


def publish_epoch(out: Path, epoch: int, write, keep: int = 2, step: int | None = None) -> Path:
    """``out/checkpoints/`` + :func:`folder_name` as one unit: ``write(folder)`` fills a hidden folder, which is
    fsynced and renamed into place whole; the previous one stays until then, the last ``keep`` remain."""
    import shutil

    root = Path(out) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / folder_name(epoch, step)
    partial = root / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a kill: never read
    partial.mkdir()
    write(partial)
    for f in list(partial.iterdir()) + [partial]:
        atomic.fsync_path(f)
    if final.exists():
        shutil.rmtree(final)  # the same epoch again (a resumed run redoing it): the new one wins
    partial.rename(final)
    atomic.fsync_path(root)
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _cpu_copy(value):
    """Tensors (nested in dicts, lists, tuples) copied to the CPU, never shared with the live ones."""
    import torch

    if torch.is_tensor(value):
        value = value.detach()
        return value.clone() if value.device.type == "cpu" else value.to("cpu")
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


def snapshot(out: Path, model, optimizer, scheduler, epoch: int, extra: dict | None = None) -> dict:
    """Everything a checkpoint holds, copied now (CPU tensors, the log's bytes), so that training may go on while
    :func:`write_snapshot` writes it."""
    import copy

    import torch

    log = Path(out) / LOG_FILE
    weights = {k: _cpu_copy(v).contiguous() for k, v in model.state_dict().items()}  # copies, even on the CPU
    return {"epoch": epoch, "weights": weights, "log": log.read_bytes() if log.is_file() else None,
            "state": {"epoch": epoch, "optimizer": _cpu_copy(optimizer.state_dict()),
                      "scheduler": copy.deepcopy(scheduler.state_dict()), "torch_rng": torch.get_rng_state(),
                      **_cpu_copy(extra or {})}}


def write_snapshot(out: Path, snap: dict, keep: int = 2):
    """Publish a :func:`snapshot` as ``checkpoints/epoch-NNNN`` (``publish_epoch``), then replace the top-level
    ``model.safetensors`` atomically."""
    import torch

    out = Path(out)
    metadata = {"epoch": str(snap["epoch"]), "format": "reidkit"}
    weights_bytes = safetensors_bytes(snap["weights"], metadata)

    def write(folder: Path):
        (folder / MODEL_FILE).write_bytes(weights_bytes)
        torch.save(snap["state"], folder / STATE_FILE)
        if snap["log"] is not None:
            (folder / LOG_FILE).write_bytes(snap["log"])  # the log as of this checkpoint: restored on resume
        for name, (state, meta) in (snap.get("more_weights") or {}).items():  # e.g. a best epoch's (training.selection)
            (folder / name).write_bytes(safetensors_bytes(state, meta))

    folder = publish_epoch(out, snap["epoch"], write, keep, snap.get("step"))
    if snap.get("step") is not None:
        return  # mid-epoch (SIGTERM): for resume only; eval keeps reading the last whole epoch's weights
    with atomic.atomic_output(out / MODEL_FILE, replace=True) as partial:
        try:  # the checkpoint's own file, hard-linked: no second copy to write (files are only ever replaced, never edited)
            os.link(folder / MODEL_FILE, partial)
        except OSError:  # a filesystem without hard links
            Path(partial).write_bytes(weights_bytes)
    for legacy in (out / STATE_FILE,):  # a run from before checkpoint folders: its pair is superseded
        legacy.unlink(missing_ok=True)


class CheckpointWriter:
    """Writes checkpoints in a background thread, one at a time: ``submit`` waits for the previous one first, and
    an error of the writing thread (a full disk, an interrupt) is raised by the next ``submit`` or ``wait``. The
    thread is not a daemon: an interpreter exiting on Ctrl-C still finishes the folder it was writing (a kill
    leaves the previous checkpoint whole, as ever)."""

    def __init__(self):
        self.thread, self.error = None, None

    def _run(self, write):
        try:
            write()
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self.error = exc

    def submit(self, write):
        import threading

        self.wait()
        thread = threading.Thread(target=self._run, args=(write,), name="reidkit-checkpoint")
        with interrupt_flag() as interrupted:  # a Ctrl-C inside start() left a half-started thread: join() refused it, or exit crashed
            thread.start()
            self.thread = thread
        if interrupted.is_set():
            raise KeyboardInterrupt

    def wait(self, raise_error=True):
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        error, self.error = self.error, None
        if error is not None and raise_error:
            raise error


def load_weights(out: Path) -> tuple[dict, int]:
    """The run's published weights (``out/model.safetensors``, or a checkpoint folder's) and their epoch."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(out) / MODEL_FILE
    if not path.is_file():
        raise ReidkitError(f"{out} has no {MODEL_FILE} yet (training has not finished an epoch)")
    with safe_open(str(path), "pt") as f:
        epoch = int((f.metadata() or {}).get("epoch", -1))
    return load_file(str(path)), epoch


def load_state(folder: Path) -> dict:
    import torch

    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise ReidkitError(f"{folder} has no {STATE_FILE}: nothing to resume")
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing: our line says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ReidkitError(f"{path} is not a reidkit training state ({reason}); only tensors and plain values are loaded, "
                           "never other pickled objects: restore the checkpoint or train without --resume") from None


def load_into(model, state: dict, path) -> None:
    """``model.load_state_dict(state)``, or one line naming the file and the first tensor that does not fit."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith(("size mismatch", "Missing key", "Unexpected key"))), lines[0])
        raise ReidkitError(f"{path} does not match its config.yaml: {detail[:300]}") from None


def parameter_checksum(model) -> str:
    """SHA-256 over all parameters (bytes, in name order): equal on every rank when DDP keeps them in sync."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
