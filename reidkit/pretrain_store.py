"""A pre-training store from generated runs (a Diff-Person-like set): one identity-labelled store.

Every kept item of the chosen runs of one or more source stores becomes an
image of the new store's ``train`` split. Identities are namespaced per
source: the ``source`` column indexes the ``sources`` attribute, and the new
store numbers (source, person id) pairs afresh (table in its settings,
``identities``), so two sources' person 7 never merge.

Leakage guard: a generated image may only come from a source image in its
store's training split, and its identity may not appear in the query or
gallery splits of that store or of any ``eval_stores`` of the same dataset
(a benchmark evaluated later; see ``same_population``). Violations are refused unless
``allow_overlap``; either way the overlap is recorded in the new store's
settings (``leakage``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reidkit.adapter import DatasetLayout, ImageRecord
from reidkit.errors import ReidkitError, StoreError

EVAL_SPLIT_HINTS = ("query", "gallery")


@dataclass
class SourceReport:
    name: str  # "<dataset>@<fingerprint>": the namespace of this source's person ids
    path: str
    runs: list[str]
    images: int = 0
    real_images: int = 0
    identities: int = 0
    rejected_skipped: int = 0
    not_train_sources: int = 0
    overlap: dict = field(default_factory=dict)  # eval store -> sorted overlapping person ids


def eval_identities(store) -> set[int]:
    """Person ids in the splits the store's protocols evaluate (or any query/gallery-named split)."""
    splits = {p.query for p in store.protocols} | {p.gallery for p in store.protocols}
    splits |= {s for s in store.splits if any(h in s for h in EVAL_SPLIT_HINTS)}
    pids = set()
    for s in sorted(splits):
        if s in store.splits:
            idx = store.split(s)
            idx = idx[~store.junk[idx] & ~store.distractor[idx]]
            pids.update(int(p) for p in np.unique(store.pid[idx]))
    return pids


def same_population(a, b) -> bool:
    """Whether person ids of two stores name the same people.

    Same dataset name, and the same ``seed`` setting where the adapter records one (a generated
    world with another seed is other people; a benchmark records none). Deliberately wide for
    benchmarks: two stores of one benchmark under other protocols or splits still compare ids.
    """
    return a.dataset == b.dataset and a.settings.get("seed") == b.settings.get("seed")


def _select_runs(store, wanted: list[str] | None):
    runs = store.runs()
    if not runs:
        raise StoreError(f"{store.path} has no generated runs (make one with 'reidkit expand')")
    if not wanted:
        return list(runs.values())
    missing = [w for w in wanted if w not in runs]
    if missing:
        raise StoreError(f"{store.path} has no run {', '.join(missing)} (runs: {', '.join(sorted(runs))})")
    return [runs[w] for w in wanted]


def collect(sources: list, runs: list[str] | None = None, *, eval_stores: list = (), allow_overlap: bool = False,
            include_rejected: bool = False, with_real: bool = False) -> tuple[list[ImageRecord], list[SourceReport], list]:
    """Image records (lazy bytes), a report per source and the identity table [new pid, source, source pid].

    Raises on leakage unless ``allow_overlap``.
    """
    from reidkit.store import open_store

    records: list[ImageRecord] = []
    reports: list[SourceReport] = []
    evals = [open_store(p) for p in eval_stores]
    problems = []
    for origin, path in enumerate(sources):
        store = open_store(path)
        rep = SourceReport(f"{store.dataset}@{store.fingerprint}", str(path), [])
        train = set(store.split("train").tolist()) if "train" in store.splits else set()
        pids_used = set()
        for run in _select_runs(store, runs):
            rep.runs.append(run.name)
            if not run.files:
                continue
            src, var, pid, cam = run.source_index(), run.variant(), run.column("pid").astype(np.int64), run.column("camera")
            kept = run.kept()
            outside = np.array([int(i) not in train for i in src], dtype=bool)
            rep.not_train_sources += int(outside.sum())
            use = kept | include_rejected
            rep.rejected_skipped += int((~use).sum())
            for i in np.flatnonzero(use).tolist():
                pids_used.add(int(pid[i]))
                records.append(ImageRecord(
                    path=f"{run.name}/{int(src[i])}-{int(var[i])}", pid=int(pid[i]), camera=int(cam[i]), splits=("train",),
                    load=_loader(run, i), origin=origin,
                ))
                rep.images += 1
        if with_real:
            for i in sorted(train):
                if int(store.pid[i]) in pids_used and not store.junk[i] and not store.distractor[i]:
                    records.append(ImageRecord(path=f"real/{store.columns['path'][i]}", pid=int(store.pid[i]), camera=int(store.camera[i]),
                                               splits=("train",), load=_store_loader(store, i), origin=origin))
                    rep.real_images += 1
        rep.identities = len(pids_used)
        if rep.not_train_sources:
            problems.append(f"{rep.name}: {rep.not_train_sources} generated images come from non-training source images")
        for other in [store, *[e for e in evals if same_population(e, store)]]:
            overlap = sorted(pids_used & eval_identities(other))
            if overlap:
                key = f"{other.dataset}@{other.fingerprint}"
                rep.overlap[key] = overlap
                shown = ", ".join(map(str, overlap[:5])) + (" ..." if len(overlap) > 5 else "")
                problems.append(f"{rep.name}: {len(overlap)} identities also in the query/gallery of {key} ({shown})")
        reports.append(rep)
    if problems and not allow_overlap:
        raise ReidkitError("leakage guard: " + "; ".join(problems) + " (only training identities may be sources; "
                           "--allow-overlap builds anyway and records the overlap)")
    if not records:
        raise ReidkitError("no generated images to use (all rejected by filters? --include-rejected uses them anyway)")
    identities = renumber(records)
    return records, reports, [[new, reports[o].name, old] for new, o, old in identities]


def renumber(records: list[ImageRecord]) -> list[tuple[int, int, int]]:
    """Give the combined store its own person ids: contiguous over sorted (origin, source pid) pairs.

    The pairs never collide across sources, and any consumer that keys on ``pid`` alone (the
    training data, the filters) sees distinct identities. Returns [(new pid, origin, source pid)].
    """
    pairs = sorted({(r.origin, r.pid) for r in records})
    new = {pair: i for i, pair in enumerate(pairs)}
    for r in records:
        r.pid = new[(r.origin, r.pid)]
    return [(i, o, p) for (o, p), i in new.items()]


def _loader(run, i):
    return lambda: run.image_bytes(i)


def _store_loader(store, i):
    return lambda: store.image_bytes(i)


def write_pretrain_store(out, records: list[ImageRecord], reports: list[SourceReport], identities: list, options: dict, *,
                         force: bool = False, progress=None):
    """Write collected records as store ``out`` (all in split ``train``); what made it goes in its settings."""
    from reidkit.store.writer import write_store

    settings = {
        "kind": "pretrain",
        "sources": [{"name": r.name, "path": r.path, "runs": r.runs, "images": r.images, "real_images": r.real_images,
                     "identities": r.identities, "rejected_skipped": r.rejected_skipped} for r in reports],
        "eval_stores": options.get("eval_stores", []),
        "include_rejected": bool(options.get("include_rejected")),
        "with_real": bool(options.get("with_real")),
        "leakage": {
            "allowed": bool(options.get("allowed")),
            "overlap": {r.name: r.overlap for r in reports if r.overlap},
            "non_train_sources": {r.name: r.not_train_sources for r in reports if r.not_train_sources},
        },
    }
    settings["identities"] = identities  # new pid -> (source, source pid)
    layout = DatasetLayout(dataset="pretrain", records=records, protocols=[], settings=settings,
                           total=len(records), sources=[r.name for r in reports])
    return write_store(Path(out), layout, force=force, progress=progress)
