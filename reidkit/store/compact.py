"""Compaction: a finished part's many chunk files rewritten into one, with readers never seeing a gap or a double.

Steps, each safe to interrupt (``kill -9``) and finished by a rerun:

1. ``chunks/compacted-NNNNNN.replaces.json`` records the chunks to fold in (name, items, first row, their
   attributes); published atomically. Alone (no chunk beside it) it means nothing.
2. ``chunks/compacted-NNNNNN.h5`` is written under a partial name and published by one atomic link: from that
   moment readers skip the chunks it replaces (``chunks.chunk_files``), so they see every item exactly once.
3. The index is rewritten; the replaced chunk files are deleted. A reader that listed them earlier reads
   their rows from the compacted chunk (same rows, same order).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from reidkit._version import __version__
from reidkit.errors import StoreError
from reidkit.store import atomic, chunks


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


def _layout(h5) -> dict:
    """name -> (kind, dtype, dataset attributes) of one open chunk."""
    import h5py

    out = {}
    for name, ds in h5.items():
        kind = "bytes" if ds.attrs.get("kind") == "bytes" else "str" if h5py.check_string_dtype(ds.dtype) else "array"
        out[name] = (kind, ds.dtype if kind == "array" else None, {k: _jsonable(v) for k, v in ds.attrs.items()})
    return out


def _plan(d: Path, files: list[Path]) -> tuple[list[dict], list[int], dict]:
    """Lineage entries of the new compacted chunk (nested compactions flattened), each file's item count, and the
    column layout every non-empty chunk agrees on (chunks that disagree are refused)."""
    import h5py

    counts = chunks.chunk_counts(d, files)
    entries, offset, layout, first = [], 0, {}, None
    for f, n in zip(files, counts):
        with h5py.File(f, "r") as h5:
            attrs = {str(k): _jsonable(v) for k, v in h5.attrs.items()}
            mine = _layout(h5) if n else None
        if mine is not None and first is None:
            layout, first = mine, f
        elif mine is not None and {k: v[:2] for k, v in mine.items()} != {k: v[:2] for k, v in layout.items()}:
            raise StoreError(f"cannot compact: chunk {f.name} has other columns or types than {first.name} "
                             f"({sorted(mine)} vs {sorted(layout)}); expected one layout across the part")
        entries.append({"name": f.name, "items": int(n), "offset": offset, "size": f.stat().st_size, "attrs": attrs})
        if chunks.is_compacted(f):  # readers holding the older names still find their rows
            entries.extend({**e, "offset": offset + int(e["offset"])} for e in chunks.read_lineage(f))
        offset += int(n)
    return entries, counts, layout


def _write_bytes(ds, row: int, values):
    """Byte rows into ``ds`` from ``row`` on; row by row when all are one length (h5py reads those as 2-D)."""
    if len({len(v) for v in values}) > 1:
        ds[row:row + len(values)] = values
    else:
        for j, v in enumerate(values):
            ds[row + j] = v


def _write_compacted(partial: Path, files, counts, layout, n_replaced: int):
    """All rows of ``files`` in order, chunk by chunk (each source opened once; memory: one chunk at a time)."""
    import h5py

    total = int(sum(counts))
    with h5py.File(partial, "w") as out:
        for name, (kind, dtype, attrs) in layout.items():
            dt = h5py.vlen_dtype(np.uint8) if kind == "bytes" else h5py.string_dtype() if kind == "str" else dtype
            ds = out.create_dataset(name, shape=(total,), dtype=dt)
            for k, v in attrs.items():
                ds.attrs[k] = v
        row = 0
        for f, n in zip(files, counts):
            if n == 0:
                continue
            with h5py.File(f, "r") as h5:
                for name, (kind, _, _) in layout.items():
                    src = h5[name]
                    if kind == "bytes":
                        _write_bytes(out[name], row, src[()])
                    else:
                        out[name][row:row + n] = src.asstr()[()] if kind == "str" else src[()]
            row += n
        out.attrs["compacted_chunks"] = int(n_replaced)
        out.attrs["reidkit_version"] = __version__


def compact_part(d: Path) -> dict:
    """Rewrite part ``d`` into one chunk (or finish an interrupted compaction); the caller holds the writer locks."""
    d = Path(d)
    every = chunks._all_chunk_files(d)
    files = chunks.chunk_files(d)
    before = {"chunks": len(files), "bytes": sum(f.stat().st_size for f in files)}
    rewritten = False
    if len(files) > 1:
        entries, counts, layout = _plan(d, files)
        final = d / "chunks" / f"{chunks.COMPACT_TAG}-{chunks._next_seq(d, chunks.COMPACT_TAG):06d}.h5"
        atomic.require_space(final, before["bytes"], final)  # room for the copy, checked before HDF5 meets a full disk
        atomic.write_json_atomic(chunks.lineage_path(final), {"chunk": final.name, "replaces": entries})
        with atomic.atomic_output(final) as partial:
            _write_compacted(partial, files, counts, layout, len(files))
        rewritten = True
        every = chunks._all_chunk_files(d)
        files = chunks.chunk_files(d)
    leftovers = [f for f in every if f not in files]
    counts = chunks.chunk_counts(d, files, write=False)
    chunks.write_index(d, files, counts)  # before the deletions: readers never need to open a leftover
    for f in leftovers:
        f.unlink(missing_ok=True)
    for orphan in (d / "chunks").glob(f"{chunks.COMPACT_TAG}-*.replaces.json"):  # an interrupted step 1
        if not orphan.with_name(orphan.name.replace(".replaces.json", ".h5")).exists():
            orphan.unlink(missing_ok=True)
    if leftovers:
        atomic.fsync_path(d / "chunks")
    return {"chunks_before": before["chunks"], "bytes_before": before["bytes"], "chunks_after": len(files),
            "bytes_after": sum(f.stat().st_size for f in files), "items": int(sum(counts)), "rewritten": rewritten,
            "removed_files": len(leftovers)}


def _writer_tags(store_path: Path, name: str, d: Path) -> list[str]:
    """Shard tags that may write run ``name``: those of its chunks, of lock files beside the store, and 'all'."""
    tags = {"all"}
    for f in chunks._all_chunk_files(d):
        tag = chunks.CHUNK_RE.match(f.name)["tag"]
        if tag != chunks.COMPACT_TAG:
            tags.add(tag)
    lock = re.compile(re.escape(f".{store_path.name}.runs.{name}.") + r"(?P<tag>[A-Za-z0-9_-]+)" + re.escape(".lock"))
    for entry in os.listdir(store_path.parent):
        m = lock.fullmatch(entry)
        if m and m["tag"] != "compacting":
            tags.add(m["tag"])
    return sorted(tags)


def compact_run(store_path, name: str) -> dict:
    """``reidkit compact STORE --run NAME``: refused in one line while any shard of the run is being written."""
    from reidkit.store import open_store
    from reidkit.store.lock import writer_lock

    store = open_store(store_path)
    run = store.run(name)  # an unknown run: one line naming the runs there are
    path = Path(store.path)
    held = []
    try:
        held.append(writer_lock(path, f"compaction of generated run '{name}' of {path}", key=f"runs.{name}.compacting").acquire())
        for tag in _writer_tags(path, name, run.dir):
            # Expand takes the same lock per shard: held here, a resumed expand waits its turn (refused in one line).
            held.append(writer_lock(path, f"generated run '{name}' (chunks '{tag}') of {path}", key=f"runs.{name}.{tag}").acquire())
    except StoreError as exc:
        for lock in held:
            lock.release()
        raise StoreError(f"cannot compact: {exc.message}") from None
    try:
        summary = compact_part(run.dir)
    finally:
        for lock in reversed(held):
            lock.release()
    return {"run": name, "path": str(run.dir), **summary}
