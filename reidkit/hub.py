"""Why a model could not be loaded, in one line: the Hugging Face hub's offline rules said plainly."""
from __future__ import annotations

import contextlib
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


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face endpoint cannot be reached right now (a short phrase), or None when it can or when
    HF_HUB_OFFLINE already says not to try. One TCP connection with a short timeout: without it, an offline
    machine spends about 50 s in the hub client's retries before failing."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    import os

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return None  # through a proxy a direct connection proves nothing: leave it to the hub client
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{constants.ENDPOINT} cannot be reached ({exc.strerror or exc})"


@contextlib.contextmanager
def cache_only():
    """The hub client's own offline mode for a block: files come from the cache, nothing is retried online."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read at each request by huggingface_hub.constants.is_offline_mode()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
