"""The dataset-adapter contract: what an adapter hands to the store writer.

An adapter knows one benchmark's folder layout and naming rules; the core
knows none. It returns a ``DatasetLayout``: one ``ImageRecord`` per image
(bytes are read lazily, so 100k+ images never sit in memory together), the
evaluation protocols the benchmark defines, and its settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Sequence

from reidkit.errors import DatasetLayoutError

SPLITS = ("train", "query", "gallery")
RULES = ("standard", "sc", "cc")


@dataclass
class ImageRecord:
    """One image as the benchmark defines it (before labels are assigned)."""

    path: str  # relative to the dataset root: provenance and error messages
    pid: int  # raw person id as the dataset spells it
    camera: int  # 0-based
    splits: tuple[str, ...]  # e.g. ("train",) or ("query_cc",); one image may be in several
    clothes_key: str = ""  # dataset's outfit key, e.g. "12_3"; "" where the dataset has none
    tracklet: int = -1
    frame: int = -1
    junk: bool = False  # dropped from evaluation (Market-1501 pid -1)
    distractor: bool = False  # kept in the gallery as a negative (pid 0)
    source: Path | None = None  # file whose bytes are copied as they are
    load: Callable[[], bytes] | None = None  # or: bytes produced on demand (.mat, rendered)
    load_mask: Callable[[], bytes] | None = None  # PNG label map, when the dataset ships masks
    origin: int = 0  # index into DatasetLayout.sources: person ids are namespaced per origin

    def read_bytes(self) -> bytes:
        if self.load is not None:
            return self.load()
        if self.source is None:
            raise ValueError(f"{self.path}: record has neither a source file nor a loader")
        return Path(self.source).read_bytes()


@dataclass
class EvalProtocol:
    """An evaluation setting the dataset defines, recorded in the store.

    rule: "standard" drops same person + same camera; "cc" also drops same
    person + same clothes; "sc" drops same person + other clothes.
    """

    name: str
    query: str = "query"  # split name
    gallery: str = "gallery"
    rule: str = "standard"
    query_cameras: list[int] | None = None  # camera subsets (VC-Clothes)
    gallery_cameras: list[int] | None = None
    gallery_sampling: str = "all"  # or "single_shot": one random gallery image per person
    trials: int = 1  # single-shot: seeded trials, averaged
    unit: str = "image"  # or "tracklet": features averaged per tracklet (video)
    description: str = ""

    def as_dict(self):
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data):
        return cls(**data)


@dataclass
class MaskLabels:
    """Label set of masks an adapter ships, and which labels count as clothing."""

    name: str
    labels: list[str]
    clothing: list[str]


@dataclass
class DatasetLayout:
    dataset: str
    records: Sequence[ImageRecord] | Iterable[ImageRecord]
    protocols: list[EvalProtocol]
    settings: dict = field(default_factory=dict)  # options that shaped the store (recorded)
    masks: MaskLabels | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, why) found while scanning
    total: int | None = None  # number of records, for the progress bar when records is lazy
    sources: list[str] | None = None  # names of combined sources (ImageRecord.origin indexes it); None: [dataset]


class Adapter:
    """Base class for adapters (subclassing is optional; the attributes are the contract).

    name: what follows ``reidkit adapt``; summary: one line for ``--help``;
    needs_root: whether the adapter reads a dataset folder; options: extra
    click options (their values arrive in ``settings``); scan(): build the
    layout.

    Optional: ``folder_names``, the folder name(s) the benchmark is
    distributed as (e.g. ``("LTCC_ReID",)``): without ``--root``, reidkit
    looks for one of them in the working directory, then under each folder
    of ``$REIDKIT_DATA`` (:func:`find_distributed_folder`). ``store_name``:
    the store written without ``--out`` (e.g. ``"ltcc.h5"``, in the working
    directory); empty: ``--out`` is required.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    needs_root: ClassVar[bool] = True
    options: ClassVar[list] = []
    folder_names: ClassVar[tuple[str, ...]] = ()
    store_name: ClassVar[str] = ""

    def scan(self, root: Path | None, settings: dict) -> DatasetLayout:  # pragma: no cover - contract
        raise NotImplementedError


def find_dataset_root(root: Path, marker: str, wrappers: Sequence[str] = ()) -> Path:
    """The dataset folder: ``root`` itself, or a wrapper folder inside it that holds ``marker``.

    Archives often unpack into a parent folder; users may point at either.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetLayoutError(f"--root {root} does not exist")
    if not root.is_dir():
        raise DatasetLayoutError(f"--root {root} is not a folder")
    candidates = [root] + [root / w for w in wrappers]
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    names = " or ".join(str(Path(w) / marker) for w in ["", *wrappers])
    raise DatasetLayoutError(f"expected {names} under {root}, not found")


DATA_ENV = "REIDKIT_DATA"


def search_folders(cwd: Path | None = None) -> list[Path]:
    """Where a dataset folder is looked for without ``--root``: the working directory, then ``$REIDKIT_DATA``.

    ``REIDKIT_DATA`` may list several folders (``os.pathsep``-separated, like ``PATH``).
    """
    places = [Path(cwd) if cwd is not None else Path.cwd()]
    places += [Path(p).expanduser() for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p.strip()]
    return places


def find_distributed_folder(adapter_cls, cwd: Path | None = None) -> Path:
    """The first of the adapter's ``folder_names`` found in :func:`search_folders`; one clear line if none is."""
    names = tuple(getattr(adapter_cls, "folder_names", ()) or ())
    places = search_folders(cwd)
    for place in places:
        for folder in names:
            if (place / folder).is_dir():
                return place / folder
    what = " or ".join(names)
    looked = f"{places[0]} (the working directory)"
    data = os.environ.get(DATA_ENV, "")
    looked += f" and ${DATA_ENV} ({', '.join(str(p) for p in places[1:])})" if places[1:] else f" (${DATA_ENV} is {'empty' if data else 'not set'})"
    raise DatasetLayoutError(f"no {what} folder in {looked}; pass --root DIR (the {what} folder)")
