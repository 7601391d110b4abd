"""What the benchmark adapters share: file listing, name rules, list files, a data-driven folder adapter.

A folder adapter is declared, not programmed: which sub-folders hold which
split, and which regular expression (named groups ``pid``, ``cam``,
``clothes``, ``frame``) turns a path into ids. Adapters whose benchmarks
ship list files (MSMT17, DeepChange, CCVID) or ``.mat`` files (CUHK03) use
the helpers below and build their records themselves.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping

from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord, find_dataset_root
from reidkit.errors import DatasetLayoutError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})


def image_files(folder: Path, depth: int = 1, problems: list | None = None) -> list[str]:
    """Image files ``depth`` levels below ``folder`` (1: ``*``, 2: ``*/*``) as sorted posix paths relative to it.

    An image-named symlink that is dangling or part of a loop is listed too, so reading it reports it as a bad
    file (never dropped without a word). A folder-level symlink that cannot be followed goes to ``problems``
    as ``(path, why)``; without ``problems`` it fails the scan in one line.
    os.scandir, not pathlib: at 100k+ files pathlib's parsing dominates the scan.
    """
    found = []

    def broken(rel: str, why: str):
        if problems is None:
            raise DatasetLayoutError(f"{os.path.join(folder, rel)}: {why}; expected a file or folder (use --skip-bad to leave it out)")
        problems.append((rel, why))

    def follows(entry, test) -> str | None:
        """None when ``test`` (is_file / is_dir) can be answered; else why the symlink cannot be followed."""
        try:
            test()
        except OSError as exc:  # ELOOP: a symlink loop
            return f"broken symlink ({exc.strerror or exc})"
        if entry.is_symlink() and not os.path.exists(entry.path):
            return f"broken symlink to {os.readlink(entry.path)} (target does not exist)"
        return None

    def walk(path: str, prefix: str, level: int):
        with os.scandir(path) as entries:
            for entry in entries:
                if level == depth:
                    if os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
                        continue
                    if follows(entry, entry.is_file) is not None or entry.is_file():
                        found.append(prefix + entry.name)  # a broken link is read later and reported as a bad file
                else:
                    why = follows(entry, entry.is_dir)
                    if why is not None:
                        broken(prefix + entry.name, why)
                    elif entry.is_dir():
                        walk(entry.path, prefix + entry.name + "/", level + 1)

    walk(str(folder), "", 1)
    return sorted(found)


def require_paths(base: Path, names, what: str):
    """One line naming the first expected file or folder that is missing."""
    for name in names:
        if not (base / name).exists():
            raise DatasetLayoutError(f"expected {base / name} ({what}), not found")


def inside(base: Path, rel: str) -> Path | None:
    """``base / rel`` when it stays inside ``base`` (list files must not point elsewhere), else None."""
    if os.path.isabs(rel):
        return None
    # Lexical check (no resolve): datasets assembled from symlinks to other disks stay valid.
    joined = os.path.normpath(os.path.join(base, rel))
    if not joined.startswith(os.path.normpath(base) + os.sep):
        return None
    return Path(joined)


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) for the non-empty lines of a list file."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetLayoutError(f"cannot read list file {path}: {exc.strerror or exc}") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def list_entries(path: Path, fields: int, sep: str | None = None, *, problems: list):
    """``(where, parts)`` for each line of a list file with exactly ``fields`` parts.

    Other lines go to ``problems`` as ``("file:line", why)``.
    """
    for number, line in read_lines(path):
        parts = [p.strip() for p in line.split(sep)]
        where = f"{Path(path).name}:{number}"
        if len(parts) != fields:
            problems.append((where, f"expected {fields} fields, found {len(parts)}: {line[:80]!r}"))
            continue
        yield where, parts


def to_int(text: str, what: str) -> int:
    """An integer field of a list file or name; ValueError naming the field."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


@dataclass(frozen=True)
class NameRule:
    """A regular expression over a path relative to its split folder (posix), with named groups.

    ``cameras`` maps a letter camera (PRCC's A/B/C) to its index; numeric
    cameras are shifted by ``camera_base`` (1-based names become 0-based).
    """

    regex: str
    example: str
    camera_base: int = 1
    cameras: Mapping[str, int] | None = None

    def parse(self, rel: str) -> dict | None:
        match = re.fullmatch(self.regex, rel)
        if match is None:
            return None
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        out = dict(fields)
        for key in ("pid", "frame"):
            if key in fields:
                out[key] = int(fields[key])
        if "cam" in fields:
            out["cam"] = self.cameras[fields["cam"]] if self.cameras else int(fields["cam"]) - self.camera_base
        return out


@dataclass(frozen=True)
class SplitSource:
    """One folder of a benchmark and the split its images go to."""

    split: str
    folder: str  # relative to the dataset folder
    depth: int = 1  # 2: one sub-folder per person (``<pid>/<image>``)
    rule: NameRule | None = None  # None: the adapter's rule
    fixed: Mapping[str, object] = field(default_factory=dict)  # fields the folder implies (e.g. PRCC test cam)
    clothes: bool = True  # False where the benchmark hides test clothes (LaST)


class FolderAdapter(Adapter):
    """A benchmark whose folders are its splits and whose file names carry the ids.

    Subclasses set: ``dataset``, ``folder`` (the distributed folder name; it
    also becomes ``folder_names``, and ``NAME.h5`` the ``store_name``),
    ``sources``, ``rule``, ``protocols``; optionally ``junk_pids``,
    ``distractor_pids``, ``own_camera`` (every image its own camera) and
    ``finish()`` for a dataset-wide rule.
    """

    dataset: ClassVar[str] = ""
    folder: ClassVar[str] = ""  # the folder the archive unpacks to (accepted as --root or its parent)
    sources: ClassVar[list[SplitSource]] = []
    rule: ClassVar[NameRule | None] = None
    protocols: ClassVar[list[EvalProtocol]] = []
    junk_pids: ClassVar[frozenset] = frozenset()
    distractor_pids: ClassVar[frozenset] = frozenset()
    own_camera: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # the distributed folder is also what `reidkit adapt NAME` looks for without --root; NAME.h5 its default --out
        if cls.folder and "folder_names" not in cls.__dict__:
            cls.folder_names = (cls.folder,)
        if cls.name and cls.folder and "store_name" not in cls.__dict__:
            cls.store_name = f"{cls.name}.h5"

    def locate(self, root: Path) -> Path:
        base = find_dataset_root(root, self.sources[0].folder, (self.folder,))
        require_paths(base, sorted({s.folder for s in self.sources}), f"{self.dataset} layout")
        return base

    def scan(self, root, settings):
        if root is None:
            raise DatasetLayoutError(f"{self.dataset} needs --root (the {self.folder} folder)")
        base = self.locate(Path(root))
        records, problems = [], []
        for source in self.sources:
            scan_problems = []
            folder = os.path.join(base, source.folder)
            rule = source.rule or self.rule
            for rel in image_files(folder, source.depth, problems=scan_problems):
                fields = rule.parse(rel)
                if fields is None:
                    problems.append((f"{source.folder}/{rel}", f"name does not match the {self.dataset} pattern (e.g. {rule.example})"))
                    continue
                fields = {**fields, **source.fixed}
                path = Path(os.path.join(folder, rel))
                records.append(self.make_record(f"{source.folder}/{rel}", path, source, fields, len(records)))
            problems.extend((f"{source.folder}/{rel}", why) for rel, why in scan_problems)
        self.finish(records)
        return DatasetLayout(
            dataset=self.dataset,
            records=records,
            protocols=list(self.protocols),
            settings=self.recorded_settings(settings),
            problems=problems,
        )

    def make_record(self, rel: str, path: Path, source: SplitSource, fields: dict, index: int) -> ImageRecord:
        pid = fields["pid"]
        clothes = fields.get("clothes")
        return ImageRecord(
            path=rel,
            pid=pid,
            camera=index if self.own_camera else fields["cam"],
            splits=(source.split,),
            clothes_key=f"{pid}_{clothes}" if clothes is not None and source.clothes else "",
            frame=fields.get("frame", -1),
            junk=pid in self.junk_pids,
            distractor=pid in self.distractor_pids,
            source=path,
        )

    def finish(self, records: list[ImageRecord]) -> None:
        """Dataset-wide rules after parsing (e.g. DukeMTMC's distractor ids)."""

    def recorded_settings(self, settings: dict) -> dict:
        return {"camera": "own camera per image" if self.own_camera else "from the file name, 0-based"}
