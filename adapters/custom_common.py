"""What ``reidkit adapt folder`` and ``reidkit adapt list`` share: ``--set`` settings, ids from names, the holdout split.

Both adapters first turn a user's data into ``Entry`` rows (one per image:
where it was found, its path, and the person, camera, outfit, tracklet and
split as text), then :func:`build_layout` makes the store's layout from them:
person names become integer pids (sorted, recorded), cameras become 0-based
indices (sorted, recorded; none given: every image is its own camera, LaST's
convention), outfits become per-person outfit keys, and a dataset without
query and gallery is split by persons with a seeded, recorded holdout.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import click

from reidkit.adapter import DatasetLayout, EvalProtocol, ImageRecord
from reidkit.contracts import Setting
from reidkit.errors import DatasetLayoutError

INTEGER = re.compile(r"[+-]?\d+")
OWN_CAMERA = "each image is its own camera (none given)"
HOLDOUT_SETTINGS = {
    "defaults": {"holdout": 0.5, "seed": 0},
    "spec": {
        "holdout": Setting(float, "without query and gallery: the share of persons held out for test (the rest train)",
                           min=0, max=1),
        "seed": Setting(int, "without query and gallery: the seed of the holdout split and of the query choice"),
    },
}


@dataclass
class Entry:
    """One image as the user's data states it (all fields as text; None: not given)."""

    where: str  # what error lines name: the path (folders) or LIST:LINE (lists)
    path: str  # relative to the root (folders) or the list's folder (lists), posix
    source: Path
    person: str
    camera: str | None = None
    outfit: str | None = None
    tracklet: str | None = None
    split: str | None = None  # train, query, gallery; None: to be split by holdout
    person_is_name: bool = False  # a person folder: any text is a name (lists and patterns: one kind per column)


# -- settings: --set key=value checked against the adapter's declarations --------------------------------------
def set_option(cls) -> click.Option:
    """The ``--set key=value`` option, its help listing the adapter's settings and their defaults."""
    listed = "; ".join(f"{key} (default {cls.defaults[key]!r}): {spec.help}" for key, spec in cls.settings_spec.items())
    return click.Option(["--set", "sets"], multiple=True, metavar="KEY=VALUE",
                        help=f"A setting (repeatable). {listed}.")


def resolve(cls, settings: dict) -> tuple[dict, set]:
    """The adapter's settings after ``--set`` (an unknown key or a bad value: one line) and the keys the user gave."""
    from reidkit.generation.contracts import key_values, resolve_settings

    overrides = key_values(settings.get("sets") or (), "--set")
    return resolve_settings("adapter", cls.name, cls, overrides), {k.replace("-", "_") for k in overrides}


def the_input(root, positional, what: str, name: str) -> Path:
    """The folder or list given as the positional argument or as ``--root`` (one of them, or both the same)."""
    if root is not None and positional is not None and Path(root) != Path(positional):
        raise DatasetLayoutError(f"{what} given twice ({positional} and --root {root}); expected one of them")
    given = positional if positional is not None else root
    if given is None:
        raise DatasetLayoutError(f"adapt {name} needs {what}: reidkit adapt {name} {what} --out STORE")
    return Path(given)


# -- ids from text -----------------------------------------------------------------------------------------------
def check_one_kind(column: str, values: list[tuple[str, str]]) -> bool:
    """Whether every value of ``column`` is a whole number (True) or every one a name (False).

    ``values``: (where, text). Both kinds in one column: one line naming the first value of the rarer kind.
    """
    numbers = [(w, v) for w, v in values if INTEGER.fullmatch(v)]
    names = [(w, v) for w, v in values if not INTEGER.fullmatch(v)]
    if numbers and names:
        odd, usual = (names, numbers) if len(names) < len(numbers) else (numbers, names)
        (where, value), (other_where, other) = odd[0], usual[0]
        odd_kind = "a name" if odd is names else "a whole number"
        usual_kind = "whole numbers" if usual is numbers else "names"
        raise DatasetLayoutError(
            f"{where}: {column} {value!r} is {odd_kind}, but the other {column}s are {usual_kind} (e.g. {other!r} at "
            f"{other_where}); expected one kind per {column} column: all whole numbers or all names")
    return bool(numbers) or not values


def numbered(texts, numeric: bool) -> dict[str, int]:
    """Text -> 0-based index over the sorted distinct values (numerically when ``numeric``)."""
    distinct = sorted(set(texts), key=(lambda t: (int(t), t)) if numeric else None)
    out, index = {}, -1
    for text in distinct:
        if not (numeric and out and int(text) == int(prev)):  # 02 and 2: one value
            index += 1
        out[text], prev = index, text
    return out


def person_ids(entries: list[Entry]) -> tuple[dict[str, int], dict]:
    """Person text -> pid, and what to record: whole numbers stay as they are; names are numbered in sorted order."""
    check_one_kind("pid", [(e.where, e.person) for e in entries if not e.person_is_name])
    persons = sorted({e.person for e in entries})
    if all(INTEGER.fullmatch(p) for p in persons):
        return {p: int(p) for p in persons}, {"pids": "whole numbers, as given"}
    mapping = {p: i for i, p in enumerate(persons)}
    return mapping, {"pids": "names numbered in sorted order (person_names: name -> pid)", "person_names": mapping}


def all_or_none(entries: list[Entry], field: str, what: str, problems: list) -> list[Entry]:
    """Entries without ``field`` while others have it go to ``problems`` (an outfit or camera on some images only)."""
    have = [e for e in entries if getattr(e, field) is not None]
    if not have or len(have) == len(entries):
        return entries
    example = have[0]
    for e in entries:
        if getattr(e, field) is None:
            problems.append((e.where, f"no {what}, though other images have one (e.g. {example.where}); "
                                      f"expected a {what} for every image or for none"))
    return have


# -- the layout ----------------------------------------------------------------------------------------------------
def build_layout(dataset: str, entries: list[Entry], opts: dict, given: set, problems: list, *,
                 where: str, camera_from: str, outfit_from: str, settings: dict, empty: str) -> DatasetLayout:
    """Records, protocols and recorded settings from the entries (see the module docstring)."""
    entries = all_or_none(entries, "camera", "camera", problems)
    entries = all_or_none(entries, "outfit", "outfit", problems)
    if not entries:
        if not problems:
            raise DatasetLayoutError(empty)
        return DatasetLayout(dataset, [], [], settings=settings, problems=problems)
    pid_of, recorded = person_ids(entries)
    settings = {**settings, **recorded}
    has_camera = entries[0].camera is not None
    has_outfit = entries[0].outfit is not None
    camera_of = {}
    if has_camera:
        camera_of = numbered([e.camera for e in entries], check_one_kind("camera", [(e.where, e.camera) for e in entries]))
        settings.update(camera=f"{camera_from}, numbered from 0 in sorted order (camera_names: name -> camera)",
                        camera_names=camera_of)
    else:
        settings["camera"] = OWN_CAMERA
    settings["outfits"] = f"{outfit_from}; outfit key = pid_outfit" if has_outfit else "none given"
    tracklets = [(e.where, e.tracklet) for e in entries if e.tracklet is not None]
    tracklet_of = {}
    if tracklets:
        if check_one_kind("tracklet", tracklets):
            tracklet_of = {t: int(t) for _, t in tracklets}
        else:
            tracklet_of = numbered([t for _, t in tracklets], False)
            settings["tracklet_names"] = tracklet_of

    splits = {e.split for e in entries}
    if "query" in splits or "gallery" in splits:
        missing = [s for s in ("query", "gallery") if s not in splits]
        if missing:
            there = "query" if "query" in splits else "gallery"
            raise DatasetLayoutError(f"{where}: images in {there} but none in "
                                     f"{missing[0]}; expected both (or neither: then persons are split by holdout)")
        unused = sorted(given & set(HOLDOUT_SETTINGS["defaults"]))
        if unused:
            raise DatasetLayoutError(f"--set {unused[0]}: the data has its own query and gallery; holdout and seed "
                                     "split a dataset without them (leave them out)")
        assigned = [(e, e.split) for e in entries]
        settings["split"] = "given"
    else:
        share = float(opts["holdout"])  # YAML reads 1e-1 as text; the declaration checked that it is a number
        assigned, held = holdout_split(entries, pid_of, camera_of, share, opts["seed"])
        settings.update(split="holdout by persons", holdout=share, seed=opts["seed"], holdout_persons=held,
                        queries="one per (person, camera) of the test persons" if has_camera else
                        "one per test person (no cameras)")

    records = []
    for index, (e, split) in enumerate(assigned):
        pid = pid_of[e.person]
        records.append(ImageRecord(
            path=e.path, pid=pid, camera=camera_of[e.camera] if has_camera else index, splits=(split,),
            clothes_key=f"{pid}_{e.outfit}" if has_outfit else "",
            tracklet=tracklet_of[e.tracklet] if e.tracklet is not None else -1, source=e.source,
        ))
    used = {split for _, split in assigned}
    protocols = []
    if {"query", "gallery"} <= used:
        cams = "same camera" if has_camera else "same camera (no cameras: every image is its own camera)"
        protocols.append(EvalProtocol("standard", rule="standard", description=f"drop same person in the {cams}"))
        if has_outfit:
            protocols.append(EvalProtocol("cc", rule="cc", description="clothes-changing: also drop same person in the same outfit"))
            protocols.append(EvalProtocol("sc", rule="sc", description="same clothes: drop same person in another outfit"))
    return DatasetLayout(dataset, records, protocols, settings=settings, problems=problems)


def holdout_split(entries: list[Entry], pid_of: dict, camera_of: dict, holdout: float, seed: int):
    """(entry, split) for every entry, and the person counts: a seeded share of the persons is held out for test; in
    each of them one random image per camera (per person without cameras) is the query, the rest the gallery."""
    rng = random.Random(seed)
    persons = sorted({pid_of[e.person] for e in entries})
    n_test = min(len(persons), max(0, int(holdout * len(persons) + 0.5)))  # rounded half up
    test = set(rng.sample(persons, n_test))
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(entries):
        pid = pid_of[e.person]
        if pid in test:
            groups.setdefault((pid, camera_of[e.camera] if camera_of else -1), []).append(i)
    queries = set()
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda i: entries[i].path)
        queries.add(members[rng.randrange(len(members))])
    assigned = [(e, "train" if pid_of[e.person] not in test else "query" if i in queries else "gallery")
                for i, e in enumerate(entries)]
    return assigned, {"train": len(persons) - n_test, "test": n_test}

