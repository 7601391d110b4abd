"""Reading a foreign checkpoint without running anything in it.

``torch.load(path, map_location="cpu", weights_only=True)``: tensors, containers and plain values only. Beyond
torch's own list, numpy's numeric scalars are accepted (``numpy.core.multiarray.scalar`` and the numeric dtypes):
CAL and torchreid save their rank-1 as one (``cmc[0]`` of a numpy array), so every real checkpoint of theirs holds
one. A pickle that needs any other object (a class of the training code, a whole pickled ``nn.Module``) is refused
in one line naming the object; nothing in the file is executed.
"""
from __future__ import annotations

import re
from pathlib import Path

from reidkit.errors import ReidkitError

MODULE_PREFIX = "module."
# globals of torch's own format and of plain containers (torch's weights_only list): never the object to name
PLAIN_GLOBALS = ("torch.", "collections.", "builtins.", "_codecs.")


def _numpy_scalar_globals() -> list:
    """numpy's scalar reconstructor (under both its numpy 2 and numpy 1 names) and the numeric dtypes: a numeric
    scalar is rebuilt from its dtype and raw bytes, nothing else (object dtypes are not listed, so stay refused)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed = [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    allowed += sorted({type(np.dtype(code)) for code in "?bhilqpBHILQPefdg"}, key=lambda t: t.__name__)
    return allowed


def _allowed_names() -> set:
    names = set()
    for item in _numpy_scalar_globals():
        if isinstance(item, tuple):
            names.add(item[1])
        else:
            names.add(f"{item.__module__}.{item.__name__}")
    return names


def pickle_globals(path: Path) -> list[str]:
    """The module.name of every global a pickle (a plain one, or the data.pkl of torch's zip format) refers to,
    found by parsing its opcodes (pickletools: nothing is built or run)."""
    import io
    import pickletools
    import zipfile

    raw = Path(path).read_bytes()
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return []
            raw = z.read(name)
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(raw)):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str) and ("UNICODE" in opcode.name or opcode.name.endswith("STRING")):
                strings.append(str(arg))
    except Exception:  # noqa: BLE001 - a broken pickle: what was found up to there
        pass
    return list(dict.fromkeys(found))


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:160]


def load_checkpoint(path) -> object:
    """The checkpoint's contents (weights_only), or one line saying why it cannot be read."""
    import pickle
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise ReidkitError(f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalar_globals()):
            warnings.simplefilter("ignore")  # torch's notes about foreign pickle protocols: the line below says it
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        named = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"but got <class '([\w.]+)'>", text)
        needed = [named.group(1)] if named else [g for g in pickle_globals(path) if g not in _allowed_names()
                                                 and not g.startswith(PLAIN_GLOBALS)]
        if needed:
            last = needed[0].rsplit(".", 1)[-1]
            hint = (" (a pickled object, a whole model? save its state_dict() where its code runs)"
                    if last[:1].isupper() else "")
            raise ReidkitError(f"refused {path}: loading it needs {needed[0]}{hint}; checkpoints are read with "
                               "torch.load(weights_only=True), tensors and plain values only, and nothing in the file "
                               "was run") from None
        raise ReidkitError(f"{path} is not a PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError, EOFError, IndexError, RuntimeError... for a file that is no checkpoint
        raise ReidkitError(f"{path} is not a PyTorch checkpoint ({_what_it_is(path, exc)})") from None


def _what_it_is(path: Path, exc: BaseException) -> str:
    """Why torch.load failed, in words: an empty file, a zip that is not torch's, a broken pickle, or something else."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "an empty file"
    if zipfile.is_zipfile(path):
        return f"a zip archive, not torch's format: {_first_line(exc)}"
    if head[:1] == b"\x80":
        return f"a broken or truncated pickle: {_first_line(exc)}"
    return f"neither torch's zip format nor a pickle; it starts with {head[:12]!r}"


def is_state_dict(value) -> bool:
    """A non-empty mapping of string keys to tensors (a module's ``state_dict()``)."""
    import torch

    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) for k in value) \
        and all(torch.is_tensor(v) for v in value.values())


def contained_state(checkpoint: dict, container: str) -> dict | None:
    """The state dict under ``container`` (``model``, ``state_dict``), or the checkpoint itself when it is a bare one;
    ``module.`` prefixes stripped. None when neither holds one."""
    if container in checkpoint and is_state_dict(checkpoint[container]):
        return strip_module(checkpoint[container])
    if is_state_dict(checkpoint):
        return strip_module(checkpoint)
    return None


def strip_module(state: dict) -> dict:
    """Keys without the ``module.`` prefix (nn.DataParallel / DistributedDataParallel), where every key has it."""
    if state and all(k.startswith(MODULE_PREFIX) for k in state):
        return {k[len(MODULE_PREFIX):]: v for k, v in state.items()}
    return dict(state)


def plain_metadata(checkpoint: dict, skip=()) -> dict:
    """The checkpoint's scalar entries (epoch, rank1, iteration...) as plain Python values, for config.yaml."""
    out = {}
    for key, value in checkpoint.items():
        if key in skip:
            continue
        if isinstance(value, (bool, int, float, str)) or (hasattr(value, "item") and getattr(value, "ndim", 1) == 0
                                                          and not hasattr(value, "requires_grad")):
            value = value.item() if hasattr(value, "item") else value
            if isinstance(value, (bool, int, float, str)):
                out[str(key)] = value
    return out
