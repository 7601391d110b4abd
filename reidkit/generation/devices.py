"""Device choice for plugins that use torch (imported only when asked)."""
from __future__ import annotations

import os


def torch_device(device: str | None) -> str:
    """'auto'/None -> this rank's GPU when one is visible, else 'cpu'; anything else as given."""
    if device not in (None, "", "auto"):
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
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
