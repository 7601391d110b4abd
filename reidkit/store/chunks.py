"""Chunked parts: how long jobs add data beside a store without ever risking it.

A part is a folder in the store's sidecar (``<store>.parts/<kind>/<name>/``)
holding ``part.json`` (what made it: settings, seeds, versions, the store's
fingerprint) and ``chunks/*.h5``. Each chunk is written under a partial name
and published by an atomic rename, so a reader sees whole chunks only; a
killed job loses at most the chunk it was writing, and a rerun skips every
item already published. Shards write chunks under their own tag, so parts
made by several processes or machines merge by copying chunk files.

Runs of millions of items: ``chunk-index.jsonl`` in the part folder holds one
line per published chunk (name, size, mtime_ns, items), appended by the writer
right after the chunk is published; readers take a chunk's count from it when
the name, size and mtime agree, and open the chunk otherwise (the index is a
cache, never trusted over the files). Readers never write it. Readers keep at
most ``max_open_chunks()`` HDF5 handles open per process. ``reidkit compact``
(reidkit/store/compact.py) folds a finished part into one chunk.
"""
from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from reidkit._version import __version__
from reidkit.errors import StoreError
from reidkit.store import atomic

CHUNK_RE = re.compile(r"^(?P<tag>[A-Za-z0-9_.-]+)-(?P<seq>\d{6})\.h5$")
COMPACT_TAG = "compacted"  # chunks written by 'reidkit compact' (reserved: write_chunk renames it)
INDEX_NAME = "chunk-index.jsonl"  # one line per chunk: name, size, mtime_ns, items
# HDF5 handles a reader keeps open per process (least recently used closed first); REIDKIT_OPEN_CHUNKS overrides.
OPEN_CHUNKS = 16


def max_open_chunks() -> int:
    value = os.environ.get("REIDKIT_OPEN_CHUNKS", "").strip()
    if not value:
        return OPEN_CHUNKS
    if not value.isdigit() or int(value) < 1:
        raise StoreError(f"REIDKIT_OPEN_CHUNKS must be a whole number >= 1, got '{value}'")
    return int(value)


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


def _all_chunk_files(d: Path) -> list[Path]:
    """Every chunk file in the folder, replaced ones (left behind by an interrupted compaction) included."""
    c = Path(d) / "chunks"
    if not c.is_dir():
        return []
    return sorted(p for p in c.iterdir() if CHUNK_RE.match(p.name))


def lineage_path(chunk: Path) -> Path:
    """The record of the chunks a compacted chunk replaces (``compacted-NNNNNN.replaces.json`` beside it)."""
    return Path(chunk).with_name(Path(chunk).name[: -len(".h5")] + ".replaces.json")


def is_compacted(chunk: Path) -> bool:
    return CHUNK_RE.match(Path(chunk).name)["tag"] == COMPACT_TAG


def read_lineage(chunk: Path) -> list[dict]:
    """``[{name, items, offset, ...}]``: the chunks folded into compacted ``chunk``, with their first row in it."""
    try:
        return json.loads(lineage_path(chunk).read_text())["replaces"]
    except FileNotFoundError:
        return []  # a compacted chunk copied without its record: a plain chunk
    except (ValueError, KeyError) as exc:
        raise StoreError(f"{lineage_path(chunk)} is damaged ({exc}); expected the JSON written by 'reidkit compact'") from None


def replaced_chunks(d: Path, files=None) -> dict[str, tuple[Path, int]]:
    """name -> (compacted chunk holding its rows, first row there) for every chunk a published compaction replaced."""
    out = {}
    for f in files if files is not None else _all_chunk_files(d):
        if is_compacted(f):
            for entry in read_lineage(f):
                out[entry["name"]] = (f, int(entry["offset"]))
    return out


def chunk_files(d: Path) -> list[Path]:
    """The part's published chunks in reading order, less those a published compaction replaced."""
    files = _all_chunk_files(d)
    if not any(is_compacted(f) for f in files):
        return files
    gone = replaced_chunks(d, files)
    return [f for f in files if f.name not in gone]


def _next_seq(d: Path, tag: str) -> int:
    """Never reuse a name a compaction recorded as replaced: readers would take the new chunk for a leftover."""
    files = _all_chunk_files(d)
    names = [f.name for f in files] + list(replaced_chunks(d, files))
    seqs = [int(m["seq"]) for m in map(CHUNK_RE.match, names) if m and m["tag"] == tag]
    return max(seqs) + 1 if seqs else 0


# -- the chunk index: item counts without opening every chunk -----------------------------------------------------
def index_path(d: Path) -> Path:
    return Path(d) / INDEX_NAME


def chunk_items(path: Path) -> int:
    """Rows of one chunk file (the length of its first column; 0 when it has none)."""
    import h5py

    with h5py.File(path, "r") as h5:
        first = next(iter(h5.keys()), None)
        return len(h5[first]) if first else 0


def _record(path: Path, items: int) -> dict:
    st = os.stat(path)
    return {"chunk": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "items": int(items)}


def read_index(d: Path) -> dict[str, dict]:
    """chunk name -> its last whole record; a torn last line (a writer killed mid-append) is skipped."""
    try:
        text = index_path(d).read_bytes()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            out[rec["chunk"]] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return out


def chunk_counts(d: Path, files, *, write: bool = False) -> list[int]:
    """Item count of each of ``files``: from the index where a record matches the file's name, size and mtime,
    else by opening the chunk. ``write`` (writers only) rewrites the index when some chunk was not covered."""
    index = read_index(d)
    counts, stale = [], False
    for f in files:
        rec = index.get(Path(f).name)
        try:
            st = os.stat(f)
            fresh = rec is not None and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
        except FileNotFoundError:  # replaced by a compaction since it was listed: the record holds its count
            if rec is None:
                rec = _moved_record(d, f)
            counts.append(int(rec["items"]))
            continue
        if not fresh:
            rec, stale = _record(f, chunk_items(f)), True
        counts.append(int(rec["items"]))
    if write and (stale or set(index) - {Path(f).name for f in files}):
        write_index(d, files, counts)
    return counts


def _moved_record(d: Path, f: Path) -> dict:
    compacted = [c for c in _all_chunk_files(d) if is_compacted(c)]
    for c in compacted:
        for entry in read_lineage(c):
            if entry["name"] == Path(f).name:
                return entry
    raise StoreError(f"chunk {f} is gone and no compaction replaced it; expected published chunks to stay (reopen the store)")


def write_index(d: Path, files, counts):
    """Replace the index with one record per chunk (atomically: a reader sees the old index or the new one)."""
    lines = [json.dumps(_record(f, n), sort_keys=True) for f, n in zip(files, counts)]
    final = index_path(d)
    with atomic.atomic_output(final, replace=True) as partial:
        partial.write_text("".join(line + "\n" for line in lines))


def _append_index(d: Path, chunk: Path, items: int):
    """One line per published chunk, in one append (O_APPEND: shards writing side by side do not mix lines)."""
    if not index_path(d).exists():
        others = [f for f in chunk_files(d) if f != chunk]
        if others:  # a part from before the index: index it all once (this process writes here anyway)
            files = chunk_files(d)
            chunk_counts(d, files, write=True)
            return
    line = (json.dumps(_record(chunk, items), sort_keys=True) + "\n").encode()
    fd = os.open(index_path(d), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def write_chunk(d: Path, tag: str, columns: dict, attrs: dict | None = None) -> Path:
    """Publish one chunk: ``columns`` maps name -> list of bytes, str, or numbers (equal lengths)."""
    import h5py

    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"chunk columns differ in length: { {k: len(v) for k, v in columns.items()} }")
    if tag == COMPACT_TAG:  # a compacted chunk re-published elsewhere (a merge) is a plain chunk there
        tag = f"merged-{COMPACT_TAG}"
    chunks = Path(d) / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    final = chunks / f"{tag}-{_next_seq(d, tag):06d}.h5"
    with atomic.atomic_output(final) as partial:
        atomic.require_space(partial, _size_of(columns), final)
        with h5py.File(partial, "w") as h5:
            for name, values in columns.items():
                _write_column(h5, name, values)
            for k, v in (attrs or {}).items():
                h5.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
    try:
        _append_index(d, final, lengths.pop())
    except OSError:  # the chunk is published; the index is only a cache (readers open what it lacks)
        pass
    return final


def _size_of(columns: dict) -> int:
    """About how many bytes the chunk's columns take (bytes and text as they are, numbers 8 each)."""
    total = 0
    for values in columns.values():
        for v in values:
            total += len(v) if isinstance(v, (bytes, bytearray, memoryview, str)) else 8
    return total


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
    """Reads a part: every published chunk, concatenated in file-name order.

    Item counts come from the part's index (one small file) where it covers a chunk; at most
    ``max_open_chunks()`` HDF5 handles stay open per process (least recently used closed first), reopened
    lazily in each process (DataLoader workers) and after unpickling. A reader opened before a compaction keeps
    working after it: a chunk that is gone is read from the compacted chunk that replaced it (same rows).
    """

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.info = json.loads((self.dir / "part.json").read_text())
        self.files = chunk_files(self.dir)
        self._columns = {}
        self._offsets = None
        self._moved = {}  # chunk number -> (compacted chunk, first row there) once the chunk is gone
        self._handles = OrderedDict()
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()
        state["_pid"] = None
        return state

    def _where(self, f: int) -> tuple[Path, int]:
        """File holding chunk ``f``'s rows and its first row there."""
        return self._moved.get(f) or (self.files[f], 0)

    def _moved_to(self, f: int) -> tuple[Path, int]:
        path = self.files[f]
        moved = replaced_chunks(self.dir).get(path.name)
        if moved is None:
            raise StoreError(f"chunk {path} of part '{self.name}' is gone and no compaction replaced it; "
                             "expected published chunks to stay (reopen the store)")
        self._moved[f] = moved
        return moved

    def _file(self, path: Path):
        """The HDF5 handle of ``path`` in this process, from a small LRU (DataLoader workers each open their own)."""
        import h5py

        if self._pid != os.getpid():
            self._handles = OrderedDict()  # a parent's handles are not closed here: they belong to the parent
            self._pid = os.getpid()
        h5 = self._handles.pop(path, None)
        if h5 is None:
            limit = max_open_chunks()
            while len(self._handles) >= limit:
                self._handles.popitem(last=False)[1].close()
            h5 = h5py.File(path, "r")
        self._handles[path] = h5  # most recently used last
        return h5

    def _open(self, f: int):
        """(HDF5 handle of the file holding chunk ``f``, first row of ``f`` there)."""
        path, first = self._where(f)
        try:
            return self._file(path), first
        except FileNotFoundError:  # compacted away since this reader listed the chunks
            path, first = self._moved_to(f)
            return self._file(path), first

    def _handle(self, f: int):
        """HDF5 handle of the file holding chunk ``f`` (a compacted chunk once ``f`` was compacted)."""
        return self._open(f)[0]

    def close(self):
        """Close this process's handles (they also close when the part is garbage collected)."""
        if self._pid == os.getpid():
            while self._handles:
                self._handles.popitem()[1].close()

    @property
    def name(self):
        return self.info["name"]

    def __len__(self):
        return int(self._locate()[-1])

    def _locate(self):
        if self._offsets is None:
            self._offsets = np.concatenate([[0], np.cumsum(chunk_counts(self.dir, self.files))]).astype(np.int64)
        return self._offsets

    def _scan(self, f: int, names) -> dict:
        """Columns ``names`` of chunk ``f`` (strings as object arrays), in one open of the file.

        A scan over every chunk uses its own short-lived handles (the LRU keeps what item reads need)."""
        import h5py

        path, first = self._where(f)
        if path in self._handles and self._pid == os.getpid():
            return self._columns_of(self._handles[path], f, names, first)
        try:
            with h5py.File(path, "r") as h5:
                return self._columns_of(h5, f, names, first)
        except FileNotFoundError:  # compacted away since this reader listed the chunks
            path, first = self._moved_to(f)
            with h5py.File(path, "r") as h5:
                return self._columns_of(h5, f, names, first)

    def _columns_of(self, h5, f: int, names, first: int) -> dict:
        import h5py

        offsets = self._locate()
        rows = slice(first, first + int(offsets[f + 1] - offsets[f])) if f in self._moved else slice(None)
        out = {}
        for name in names:
            if name not in h5:
                raise StoreError(f"{self.files[f]} has no column '{name}'")
            ds = h5[name]
            out[name] = np.array(ds.asstr()[rows], dtype=object) if h5py.check_string_dtype(ds.dtype) else ds[rows]
        return out

    def _numeric_columns(self) -> list[str]:
        """Columns of plain numbers or booleans (cheap to keep in memory), named by the first chunk."""
        if not self.files:
            return []
        import h5py

        path, _ = self._where(0)
        try:
            with h5py.File(path, "r") as h5:
                return [n for n, ds in h5.items() if ds.dtype.kind in "biuf" and ds.attrs.get("kind") != "bytes"]
        except FileNotFoundError:
            return []

    def column(self, name) -> np.ndarray:
        """A non-bytes column over all chunks (cached). The first read of a column also reads every other numeric
        column in the same pass (one open per chunk, not one per column)."""
        if name not in self._columns:
            names = [name] + [n for n in self._numeric_columns() if n != name and n not in self._columns]
            parts = {n: [] for n in names}
            for f in range(len(self.files)):
                for n, values in self._scan(f, names).items():
                    parts[n].append(values)
            for n, values in parts.items():
                self._columns[n] = np.concatenate(values) if values else np.array([])
        return self._columns[name]

    def has_column(self, name) -> bool:
        if not self.files:
            return False
        return name in self._handle(0)

    def item_bytes(self, column: str, i: int) -> bytes:
        offsets = self._locate()
        f = int(np.searchsorted(offsets, i, side="right") - 1)
        if f < 0 or i >= offsets[-1]:
            raise IndexError(i)
        h5, first = self._open(f)
        return h5[column][first + i - offsets[f]].tobytes()
