"""The one device resolver of every command and plugin that uses torch (torch imported only when asked).

``auto`` and ``cuda`` mean this process's GPU: under torchrun / accelerate launch, LOCAL_RANK's (modulo the GPUs
visible), so ranks never share one by accident; ``cuda:N`` is that GPU, ``cpu`` the CPU.
"""
from __future__ import annotations

import os


def check_device(device: str | None) -> None:
    """Refuse, in one line, a device torch cannot use here (``cuda`` without a GPU, a GPU index past the last,
    a name torch does not know). 'auto', None and 'cpu' need no check and import nothing."""
    if device in (None, "", "auto", "cpu"):
        return
    import torch

    from reidkit.errors import ReidkitError

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ReidkitError(f"unknown torch device '{device}' (expected cpu, cuda, cuda:N or auto)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ReidkitError(f"device '{device}' asked for but no CUDA GPU is visible (use --device cpu or auto)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ReidkitError(f"device '{device}' asked for but only {count} CUDA GPU(s) are visible "
                               f"(use cuda:0 to cuda:{count - 1})")


def torch_device(device: str | None, local_rank: int | None = None) -> str:
    """'auto'/None -> this process's GPU when one is visible, else 'cpu'; 'cuda' -> this process's GPU; anything
    else as given, once :func:`check_device` has vouched for it. ``local_rank``: default LOCAL_RANK (0 alone)."""
    if device not in (None, "", "auto"):
        check_device(device)
        if device != "cuda":
            return device
    import torch

    if torch.cuda.is_available():
        rank = int(os.environ.get("LOCAL_RANK", 0)) if local_rank is None else int(local_rank)
        return f"cuda:{rank % torch.cuda.device_count()}"
    return "cpu"


def torch_dtype(name: str, device: str):
    """'auto' -> fp16 on GPU (DLCR's choice), fp32 on CPU; else float32 | float16 | bfloat16."""
    import torch

    if name in (None, "", "auto"):
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if name not in table:
        from reidkit.errors import PluginError

        raise PluginError(f"unknown dtype '{name}' (use auto, float32, float16 or bfloat16)")
    return table[name]
