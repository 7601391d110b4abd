"""Joining a run's shards made elsewhere (other machines, job arrays) into one store's run.

Each source chunk is re-published into the destination under its own shard
tag, leaving out items the destination already has, so merging is
idempotent and resumable and the union equals the unsharded run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.store import chunks, open_store, parts_dir_of
from reidkit.store.runs import KIND, GeneratedRun


def source_run_dir(path, name: str) -> Path:
    """A run folder, a sidecar ``.parts`` folder, or a store file -> that run's folder."""
    p = Path(path)
    if p.is_dir() and (p / "part.json").is_file():
        return p
    if p.is_dir() and (p / KIND / name / "part.json").is_file():
        return p / KIND / name
    if p.is_file() and (parts_dir_of(p) / KIND / name / "part.json").is_file():
        return parts_dir_of(p) / KIND / name
    raise ReidkitError(f"--from {p}: no run '{name}' there (give a store file, its .parts folder, or the run folder)")


def read_chunk(path: Path) -> tuple[dict, dict]:
    """All columns of one chunk file (bytes as bytes, strings as str) and its attributes."""
    import h5py

    with h5py.File(path, "r") as h5:
        cols = {}
        for name, ds in h5.items():
            if ds.attrs.get("kind") == "bytes":
                cols[name] = [row.tobytes() for row in ds[()]]
            elif h5py.check_string_dtype(ds.dtype):
                cols[name] = list(ds.asstr()[()])
            else:
                cols[name] = ds[()]
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()}
    return cols, attrs


def merge_run(store_path, name: str, sources) -> dict:
    """Add every item of run ``name`` found in ``sources`` that the store's run lacks; return counts."""
    store = open_store(store_path)
    dirs = [source_run_dir(s, name) for s in sources]
    if not dirs:
        raise ReidkitError("--merge needs at least one --from")
    infos = [json.loads((d / "part.json").read_text()) for d in dirs]
    for d, info in zip(dirs, infos):
        if info.get("store_fingerprint") != store.fingerprint:
            raise ReidkitError(f"{d} was made from another store (fingerprint {info.get('store_fingerprint')}, this store {store.fingerprint})")
    first = {k: v for k, v in infos[0].items() if k not in ("name", "kind", "created", "store_fingerprint")}
    dest = chunks.create_part(store, KIND, name, first, must_match=("settings",))
    dest_info = json.loads((dest / "part.json").read_text())
    for d, info in zip(dirs, infos):
        if json.dumps(info.get("settings"), sort_keys=True) != json.dumps(dest_info.get("settings"), sort_keys=True):
            raise ReidkitError(f"{d}: run '{name}' there was made with other settings; refusing to mix them")
    done = GeneratedRun(dest, store).done_keys()
    added = skipped = 0
    for d in dirs:
        if d.resolve() == dest.resolve():
            continue
        for f in chunks.chunk_files(d):
            cols, attrs = read_chunk(f)
            keys = list(zip(np.asarray(cols["source_index"]).tolist(), np.asarray(cols["variant"]).tolist()))
            keep = [j for j, k in enumerate(keys) if k not in done]
            skipped += len(keys) - len(keep)
            if not keep:
                continue
            subset = {c: ([v[j] for j in keep] if isinstance(v, list) else np.asarray(v)[keep]) for c, v in cols.items()}
            chunks.write_chunk(dest, chunks.CHUNK_RE.match(f.name)["tag"], subset, attrs=attrs)
            done.update(keys[j] for j in keep)
            added += len(keep)
    return {"run": name, "path": str(dest), "added": added, "already_present": skipped, "items": len(done)}
