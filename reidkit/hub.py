"""Why a model could not be loaded, in one line: the Hugging Face hub's offline rules said plainly."""
from __future__ import annotations

from pathlib import Path


def load_failure(what: str, model_id: str, exc: BaseException, hint: str = "pass a local folder instead") -> str:
    """``cannot load WHAT 'ID': REASON (HINT)``; offline with an id that is neither a folder nor cached, the reason says so."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    reason = first
    if not Path(str(model_id)).expanduser().exists():
        try:
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:
                reason = (f"not a local folder and not (completely) in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
                          "and HF_HUB_OFFLINE forbids downloading; fetch it once online (it stays in the cache)")
        except ImportError:  # pragma: no cover - comes with transformers and diffusers
            pass
    return f"cannot load {what} '{model_id}': {reason} ({hint})"
