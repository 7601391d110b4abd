"""Opening the sidecar part a stage writes into, forgiving only what lost no work."""
from __future__ import annotations

import json

from reidkit.errors import StoreError
from reidkit.store import atomic, chunks


def open_part(store, kind: str, name: str, info: dict, must_match: tuple[str, ...]):
    """``chunks.create_part``, except that a part holding no chunk yet (e.g. its model failed to load)
    takes the new settings instead of refusing them."""
    try:
        return chunks.create_part(store, kind, name, info, must_match=must_match)
    except StoreError:
        d = chunks.part_dir(store, kind, name)
        old = json.loads((d / "part.json").read_text())
        if chunks.chunk_files(d) or old.get("store_fingerprint") != store.fingerprint:
            raise
        fresh = {k: v for k, v in old.items() if k not in must_match}
        fresh.update(info)
        atomic.write_json_atomic(d / "part.json", fresh, replace=True)
        return d


def settings_name(plugin: str, settings: dict, defaults: dict) -> str:
    """Part name for what a plugin computed: its name with default settings, else name + a settings hash,
    so other settings never collide with (or get refused by) an existing part."""
    import hashlib

    if json.dumps(settings, sort_keys=True, default=str) == json.dumps(defaults, sort_keys=True, default=str):
        return plugin
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{plugin}-{digest}"
