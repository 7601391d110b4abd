"""Writes a store from a ``DatasetLayout``: bytes copied as they are, columns in bulk, published atomically."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from reidkit._version import __version__
from reidkit.adapter import DatasetLayout, ImageRecord
from reidkit.errors import DatasetLayoutError, StoreError
from reidkit.interrupts import interrupt_flag
from reidkit.store import atomic
from reidkit.store.imagecodec import probe
from reidkit.store.schema import BOOL_COLUMNS, FORMAT_NAME, INT_COLUMNS, SCHEMA_VERSION

BATCH = 256  # images per bulk write: vlen data written item by item is ~10x slower
SHOW_BAD = 5


@dataclass
class WriteSummary:
    path: Path
    images: int
    skipped: list = field(default_factory=list)
    fingerprint: str = ""


def _read_and_probe(record: ImageRecord):
    try:
        data = record.read_bytes()
    except OSError as exc:
        return record, None, None, _unreadable(record, exc)
    except Exception as exc:  # loaders of .mat or rendered data
        return record, None, None, f"unreadable ({exc})"
    try:
        h, w, fmt = probe(data)
    except ValueError as exc:
        return record, None, None, str(exc)
    mask = record.load_mask() if record.load_mask is not None else None
    return record, data, (h, w, fmt), mask if mask is not None else None


def _unreadable(record: ImageRecord, exc: OSError) -> str:
    """Why a file could not be read; a symlink says where it points (dangling, or a loop)."""
    source = record.source
    if source is not None and os.path.islink(source):
        try:
            target = os.readlink(source)
        except OSError:
            target = "?"
        return f"broken symlink to {target} ({exc.strerror or exc})"
    return f"unreadable ({exc.strerror or exc})"


def bounded_map(pool, fn, items, window):
    """Like pool.map, in order, but with at most ``window`` items in flight (bounded memory)."""
    from collections import deque

    inflight = deque()
    for item in items:
        inflight.append(pool.submit(fn, item))
        if len(inflight) >= window:
            yield inflight.popleft().result()
    while inflight:
        yield inflight.popleft().result()


def describe_problems(problems, total_label="bad items") -> str:
    shown = "; ".join(f"{path}: {why}" for path, why in problems[:SHOW_BAD])
    more = f" (and {len(problems) - SHOW_BAD} more)" if len(problems) > SHOW_BAD else ""
    return f"{len(problems)} {total_label}: {shown}{more}"


def check_output(out: Path, force: bool):
    out = Path(out)
    if out.exists() and not force:
        raise StoreError(f"{out} already exists (use --force to replace it)")
    if out.exists() and out.is_dir():
        raise StoreError(f"--out {out} is a folder; expected a file name such as {out / 'store.h5'}")
    if not out.parent.exists():
        raise StoreError(f"the folder of --out does not exist: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise StoreError(f"cannot write to the folder of --out: {out.parent}")


def check_scan_problems(layout: DatasetLayout, skip_bad: bool):
    """Fail on what scanning found (unparseable names, bad list lines) before any image is read."""
    if layout.problems and not skip_bad:
        raise DatasetLayoutError(describe_problems(layout.problems) + " (use --skip-bad to leave them out)")


def _assign_ids(values, keep):
    """Contiguous ids over sorted distinct values (never set order): -1 where not kept."""
    distinct = sorted({v for v, k in zip(values, keep) if k})
    lookup = {v: i for i, v in enumerate(distinct)}
    return np.array([lookup[v] if k else -1 for v, k in zip(values, keep)], dtype=np.int64)


def write_store(
    out: Path,
    layout: DatasetLayout,
    *,
    force: bool = False,
    skip_bad: bool = False,
    progress=None,
    workers: int = 4,
) -> WriteSummary:
    """Write ``layout`` to ``out``. Nothing appears at ``out`` unless the whole store is written.

    Bad items (from scanning or unreadable images) fail the write, listed in
    one line, unless ``skip_bad``: then they are left out and recorded.
    ``progress(n)`` is called after each batch with the number of records done.
    """
    from reidkit.store.lock import writer_lock

    out = Path(out)
    check_output(out, force)
    check_scan_problems(layout, skip_bad)
    # One writer per store name: a second adapt (--force or not) is refused while this one writes.
    with writer_lock(out, f"store {out}"):
        check_output(out, force)  # again under the lock: another writer may have published it meanwhile
        return _write_store(out, layout, skip_bad=skip_bad, force=force, progress=progress, workers=workers)


def _stop_if(flag):
    if flag.is_set():
        raise KeyboardInterrupt


def _write_store(out: Path, layout: DatasetLayout, *, skip_bad: bool, force: bool, progress, workers: int) -> WriteSummary:
    with interrupt_flag() as stop:
        return _write_store_until(out, layout, skip_bad=skip_bad, force=force, progress=progress, workers=workers, stop=stop)


def _write_store_until(out: Path, layout: DatasetLayout, *, skip_bad: bool, force: bool, progress, workers: int,
                       stop) -> WriteSummary:
    import h5py

    problems = list(layout.problems)

    vlen_bytes = h5py.vlen_dtype(np.dtype("uint8"))
    digest = hashlib.sha256()
    meta = {name: [] for name in ("record", "height", "width", "format")}
    with atomic.atomic_output(out, replace=force) as partial:
        with h5py.File(partial, "w") as h5:
            images = h5.create_group("images")
            data_ds = images.create_dataset("bytes", shape=(0,), maxshape=(None,), dtype=vlen_bytes, chunks=(BATCH,))
            mask_ds = None
            if layout.masks is not None:
                mask_group = h5.create_group(f"masks/{layout.masks.name}")
                mask_ds = mask_group.create_dataset("bytes", shape=(0,), maxshape=(None,), dtype=vlen_bytes, chunks=(BATCH,))
            written = 0
            pending = []

            def flush():
                nonlocal written, pending
                if not pending:
                    return
                n = len(pending)
                atomic.require_space(partial, sum(len(d) + (len(m) if mask_ds is not None else 0) for _, d, m in pending), out)
                data_ds.resize((written + n,))
                data_ds[written : written + n] = [np.frombuffer(d, dtype=np.uint8) for _, d, _ in pending]
                if mask_ds is not None:
                    mask_ds.resize((written + n,))
                    mask_ds[written : written + n] = [np.frombuffer(m, dtype=np.uint8) for _, _, m in pending]
                written += n
                pending = []

            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                done = 0
                # In record order; cv2 and file reads release the GIL, so threads overlap them.
                for record, data, info, extra in bounded_map(pool, _read_and_probe, layout.records, 4 * BATCH):
                    _stop_if(stop)
                    done += 1
                    if data is None:
                        problems.append((record.path, extra))
                        if not skip_bad and len(problems) > 50:
                            break  # enough to report; nothing will be published
                    else:
                        if layout.masks is not None and extra is None:
                            problems.append((record.path, "no mask although the dataset ships masks"))
                            continue
                        digest.update(data)
                        meta["record"].append(record)
                        meta["height"].append(info[0])
                        meta["width"].append(info[1])
                        meta["format"].append(info[2])
                        pending.append((record, data, extra))
                        if len(pending) >= BATCH:
                            flush()
                    if progress is not None and done % BATCH == 0:
                        progress(done)
                flush()
                if progress is not None:
                    progress(done)
            finally:
                # Ctrl-C or an error: drop the queued reads (up to 4 x BATCH) instead of waiting for them.
                pool.shutdown(wait=True, cancel_futures=True)
            if problems and not skip_bad:
                raise DatasetLayoutError(describe_problems(problems) + " (use --skip-bad to leave them out)")
            if written == 0:
                raise DatasetLayoutError("no images found to write")
            fingerprint = _write_columns(h5, meta, layout, digest)
            h5.attrs["skipped"] = json.dumps([{"path": p, "why": w} for p, w in problems])
            if layout.masks is not None:
                mask_group.attrs["labels"] = json.dumps(layout.masks.labels)
                mask_group.attrs["clothing"] = json.dumps(layout.masks.clothing)
                mask_group.attrs["masker"] = "dataset"
                mask_group.create_dataset("index", data=np.arange(written, dtype=np.int64))
            _stop_if(stop)  # the last moment before the store is published
    return WriteSummary(path=out, images=written, skipped=problems, fingerprint=fingerprint)


def _write_columns(h5, meta, layout: DatasetLayout, digest) -> str:
    records: list[ImageRecord] = meta["record"]
    images = h5["images"]
    in_train = [("train" in r.splits) for r in records]
    n_sources = len(layout.sources) if layout.sources is not None else 1
    if any(not 0 <= r.origin < n_sources for r in records):
        raise DatasetLayoutError(f"an image record's origin is outside the layout's {n_sources} source(s)")
    columns = {
        "pid": np.array([r.pid for r in records], dtype=np.int64),
        "label": _assign_ids([(r.origin, r.pid) for r in records], in_train),  # (origin, pid): sources never collide
        "camera": np.array([r.camera for r in records], dtype=np.int32),
        "clothes_id": _assign_ids([r.clothes_key for r in records], [bool(r.clothes_key) for r in records]),
        "tracklet": np.array([r.tracklet for r in records], dtype=np.int64),
        "frame": np.array([r.frame for r in records], dtype=np.int64),
        "height": np.array(meta["height"], dtype=np.int32),
        "width": np.array(meta["width"], dtype=np.int32),
        "source": np.array([r.origin for r in records], dtype=np.int32),
    }
    for name, dtype in INT_COLUMNS.items():
        images.create_dataset(name, data=columns[name].astype(dtype))
    for name in BOOL_COLUMNS:
        images.create_dataset(name, data=np.array([getattr(r, name) for r in records], dtype=bool))
    str_dtype = __import__("h5py").string_dtype()
    images.create_dataset("clothes_key", data=[r.clothes_key for r in records], dtype=str_dtype)
    images.create_dataset("path", data=[r.path for r in records], dtype=str_dtype)
    images.create_dataset("format", data=meta["format"], dtype=str_dtype)

    split_names = sorted({s for r in records for s in r.splits})
    splits = h5.create_group("splits")
    for name in split_names:
        splits.create_dataset(name, data=np.array([i for i, r in enumerate(records) if name in r.splits], dtype=np.int64))
    for group in ("masks", "prompts", "runs"):
        h5.require_group(group)  # reserved: filled by adapters (ground-truth masks) or sidecar files

    for name in ("pid", "camera", "clothes_id", "tracklet", "frame"):
        digest.update(columns[name].tobytes())
    if layout.sources is not None:
        digest.update(columns["source"].tobytes())
    digest.update(json.dumps(split_names).encode())
    fingerprint = digest.hexdigest()[:16]
    protocols = [p.as_dict() for p in layout.protocols]
    for p in protocols:
        for split in (p["query"], p["gallery"]):
            if split not in split_names:
                raise DatasetLayoutError(f"protocol '{p['name']}' refers to split '{split}', which has no images")
    h5.attrs.update(
        {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "reidkit_version": __version__,
            "dataset": layout.dataset,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fingerprint": fingerprint,
            "settings": json.dumps(layout.settings, sort_keys=True, default=str),
            "protocols": json.dumps(protocols),
            "sources": json.dumps(layout.sources if layout.sources is not None else [layout.dataset]),
        }
    )
    return fingerprint
