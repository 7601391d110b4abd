"""Chunked parts: how long jobs add data beside a store without ever risking it.

A part is a folder in the store's sidecar (``<store>.parts/<kind>/<name>/``)
holding ``part.json`` (what made it: settings, seeds, versions, the store's
fingerprint) and ``chunks/*.h5``. Each chunk is written under a partial name
and published by an atomic rename, so a reader sees whole chunks only; a
killed job loses at most the chunk it was writing, and a rerun skips every
item already published. Shards write chunks under their own tag, so parts
made by several processes or machines merge by copying chunk files.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from reidkit._version import __version__
from reidkit.errors import StoreError
from reidkit.store import atomic

CHUNK_RE = re.compile(r"^(?P<tag>[A-Za-z0-9_.-]+)-(?P<seq>\d{6})\.h5$")


def part_dir(store, kind: str, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise StoreError(f"invalid name '{name}': use letters, digits, '.', '_' or '-'")
    return store.parts_dir / kind / name


def list_parts(store, kind: str) -> dict[str, Path]:
    root = store.parts_dir / kind
    if not root.is_dir():
        return {}
    out = {}
    for d in sorted(root.iterdir()):
        meta = d / "part.json"
        if meta.is_file():
            info = json.loads(meta.read_text())
            if info.get("store_fingerprint") not in (None, store.fingerprint):
                continue  # made for another store written to the same path earlier
            out[d.name] = d
    return out


def create_part(store, kind: str, name: str, info: dict, *, must_match: tuple[str, ...] = ()) -> Path:
    """Create a part folder with its part.json, or reuse an existing one whose ``must_match`` keys agree."""
    d = part_dir(store, kind, name)
    meta = d / "part.json"
    info = dict(info)
    info.setdefault("name", name)
    info.setdefault("kind", kind)
    info["store_fingerprint"] = store.fingerprint
    if meta.is_file():
        old = json.loads(meta.read_text())
        if old.get("store_fingerprint") != store.fingerprint:
            raise StoreError(f"{d} belongs to another store (fingerprint {old.get('store_fingerprint')}); choose another name")
        for key in must_match:
            if json.dumps(old.get(key), sort_keys=True) != json.dumps(info.get(key), sort_keys=True):
                raise StoreError(
                    f"{kind[:-1] if kind.endswith('s') else kind} '{name}' exists with other {key}: "
                    f"{describe_changes(old.get(key), info.get(key))} (choose another --name, or repeat the same settings to resume)"
                )
        return d
    info.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    info.setdefault("reidkit_version", __version__)
    (d / "chunks").mkdir(parents=True, exist_ok=True)
    try:
        atomic.write_json_atomic(meta, info, replace=False)
    except FileExistsError:  # another shard created it first: fine if it agrees
        return create_part(store, kind, name, info, must_match=must_match)
    return d


def _flat(value, prefix=""):
    """{dotted key: JSON text} of a settings value (nested mappings flattened; anything else one leaf)."""
    if isinstance(value, dict) and value:
        out = {}
        for k in sorted(value, key=str):
            out.update(_flat(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def describe_changes(old, new, limit: int = 6) -> str:
    """'key: old -> new' for each setting that differs (nested keys dotted; 'unset' where one side lacks it)."""
    before, after = _flat(old), _flat(new)
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    parts = [f"{k or 'value'}: {before.get(k, 'unset')} -> {after.get(k, 'unset')}" for k in changed[:limit]]
    if len(changed) > limit:
        parts.append(f"and {len(changed) - limit} more")
    return "; ".join(parts) if parts else "(none that can be named)"


def chunk_files(d: Path) -> list[Path]:
    c = Path(d) / "chunks"
    if not c.is_dir():
        return []
    return sorted(p for p in c.iterdir() if CHUNK_RE.match(p.name))


def write_chunk(d: Path, tag: str, columns: dict, attrs: dict | None = None) -> Path:
    """Publish one chunk: ``columns`` maps name -> list of bytes, str, or numbers (equal lengths)."""
    import h5py

    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"chunk columns differ in length: { {k: len(v) for k, v in columns.items()} }")
    chunks = Path(d) / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    existing = [int(CHUNK_RE.match(p.name)["seq"]) for p in chunk_files(d) if CHUNK_RE.match(p.name)["tag"] == tag]
    final = chunks / f"{tag}-{(max(existing) + 1 if existing else 0):06d}.h5"
    with atomic.atomic_output(final) as partial:
        with h5py.File(partial, "w") as h5:
            for name, values in columns.items():
                _write_column(h5, name, values)
            for k, v in (attrs or {}).items():
                h5.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
    return final


def _write_column(h5, name, values):
    import h5py

    values = list(values) if not isinstance(values, np.ndarray) else values
    if len(values) and isinstance(values[0], (bytes, bytearray, memoryview)):
        ds = h5.create_dataset(name, shape=(len(values),), dtype=h5py.vlen_dtype(np.uint8))
        ds[:] = [np.frombuffer(bytes(v), dtype=np.uint8) for v in values]
        ds.attrs["kind"] = "bytes"
    elif len(values) and isinstance(values[0], str):
        h5.create_dataset(name, data=values, dtype=h5py.string_dtype())
    else:
        h5.create_dataset(name, data=np.asarray(values))


class ChunkedPart:
    """Reads a part: every published chunk, concatenated in file-name order."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.info = json.loads((self.dir / "part.json").read_text())
        self.files = chunk_files(self.dir)
        self._columns = {}
        self._offsets = None
        self._handles = {}
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = {}
        state["_pid"] = None
        return state

    def _handle(self, f: int):
        """HDF5 handle of chunk ``f`` for this process (DataLoader workers each open their own)."""
        import os

        import h5py

        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        if f not in self._handles:
            self._handles[f] = h5py.File(self.files[f], "r")
        return self._handles[f]

    @property
    def name(self):
        return self.info["name"]

    def __len__(self):
        return int(self._locate()[-1])

    def _locate(self):
        import h5py

        if self._offsets is None:
            sizes = []
            for f in self.files:
                with h5py.File(f, "r") as h5:
                    first = next(iter(h5.keys()), None)
                    sizes.append(len(h5[first]) if first else 0)
            self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return self._offsets

    def column(self, name) -> np.ndarray:
        """A non-bytes column over all chunks (cached)."""
        import h5py

        if name not in self._columns:
            parts = []
            for f in self.files:
                with h5py.File(f, "r") as h5:
                    if name not in h5:
                        raise StoreError(f"{f} has no column '{name}'")
                    ds = h5[name]
                    parts.append(np.array(ds.asstr()[()], dtype=object) if h5py.check_string_dtype(ds.dtype) else ds[()])
            self._columns[name] = np.concatenate(parts) if parts else np.array([])
        return self._columns[name]

    def has_column(self, name) -> bool:
        import h5py

        if not self.files:
            return False
        with h5py.File(self.files[0], "r") as h5:
            return name in h5

    def item_bytes(self, column: str, i: int) -> bytes:
        offsets = self._locate()
        f = int(np.searchsorted(offsets, i, side="right") - 1)
        if f < 0 or i >= offsets[-1]:
            raise IndexError(i)
        return self._handle(f)[column][i - offsets[f]].tobytes()
