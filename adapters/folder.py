"""Your own labelled images in folders: ``reidkit adapt folder ROOT --out S.h5`` (docs/datasets/custom.md).

ROOT holds split folders (``train/``, ``query/``, ``gallery/``; names are
settings), each either one sub-folder per person (``train/<person>/<image>``)
or Market-style file names (``0002_c1s1_000451_03.jpg``). Camera and outfit
come from the file name through ``name_pattern`` (named groups pid, camera,
outfit). Without query and gallery (ROOT holding only ``train/``, or the
person folders themselves), persons are split by a seeded holdout.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import click

from reidkit.adapter import Adapter
from reidkit.contracts import Setting
from reidkit.errors import DatasetLayoutError

from reidkit.adapters.common import IMAGE_SUFFIXES, image_files, inside
from reidkit.adapters.custom_common import HOLDOUT_SETTINGS, Entry, build_layout, resolve, set_option, the_input

GROUPS = ("pid", "camera", "outfit")
MARKET_PATTERN = r"(?P<pid>\d+)_c(?P<camera>\d+)"  # 0002_c1s1_000451_03.jpg: person 0002, camera 1
EXAMPLE = "0002_c1s1_000451_03.jpg"


def compile_pattern(text: str) -> re.Pattern:
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise DatasetLayoutError(f"--set name_pattern={text!r} is not a regular expression ({exc})") from None
    unknown = [g for g in pattern.groupindex if g not in GROUPS]
    if unknown:
        raise DatasetLayoutError(f"--set name_pattern: unknown group '{unknown[0]}'; expected named groups among "
                                 f"{', '.join(GROUPS)}, e.g. '{MARKET_PATTERN}'")
    return pattern


def hidden(rel: str) -> bool:
    """Dot files and folders (.DS_Store, ._x.jpg, .ipynb_checkpoints/) are not part of anyone's data."""
    return any(part.startswith(".") for part in rel.split("/"))


def is_folder(entry) -> bool:
    """Whether a scandir entry is a folder (a symlink loop is not: image_files reports it as a bad file)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def folder_kind(folder: Path) -> str:
    """'persons' (sub-folders), 'files' (images directly inside) or 'empty'; both at once: one line."""
    dirs, files = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if is_folder(entry):
                dirs.append(entry.name)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                files.append(entry.name)
    if dirs and files:
        raise DatasetLayoutError(f"{folder} holds both images ({sorted(files)[0]}) and person folders "
                                 f"({sorted(dirs)[0]}/); expected one or the other")
    return "persons" if dirs else "files" if files else "empty"


class CustomFolder(Adapter):
    """Your own labelled images in folders (docs/datasets/custom.md).

    \b
    ROOT/train, ROOT/query, ROOT/gallery (names: --set train_dir=... etc.),
    each either one sub-folder per person (train/<person>/<image>; any folder
    name, numbered in sorted order and recorded) or Market-style names
    (0002_c1s1_000451_03.jpg). Camera and outfit from the file name:
      --set name_pattern='(?P<pid>\\d+)_(?P<outfit>\\d+)_c(?P<camera>\\d+)'
    Without query and gallery (only train/, or ROOT holding the person
    folders): a seeded split by persons (--set holdout=0.5 --set seed=0),
    one query per (person, camera) of the test persons, the rest gallery.
    No camera given: every image is its own camera. With outfits: the cc and
    sc protocols besides standard.
    """

    name = "folder"
    summary = "Your own labelled images: split folders of person folders or Market-style names."
    needs_root = False  # ROOT is the positional argument (or --root)
    defaults = {"train_dir": "train", "query_dir": "query", "gallery_dir": "gallery", "name_pattern": "",
                **HOLDOUT_SETTINGS["defaults"]}
    settings_spec = {
        "train_dir": Setting(str, "the training folder, relative to ROOT"),
        "query_dir": Setting(str, "the query folder, relative to ROOT"),
        "gallery_dir": Setting(str, "the gallery folder, relative to ROOT"),
        "name_pattern": Setting(str, "regular expression matched at the start of each file name, named groups pid, "
                                     f"camera, outfit; empty: {MARKET_PATTERN} for file-name folders, nothing for "
                                     "person folders"),
        **HOLDOUT_SETTINGS["spec"],
    }
    options: list = []  # below the class: ROOT and --set (whose help lists the settings above)

    def scan(self, root, settings):
        base = the_input(root, settings.get("folder"), "ROOT", self.name)
        if not base.exists():
            raise DatasetLayoutError(f"{base} does not exist; expected the folder holding your images")
        if not base.is_dir():
            raise DatasetLayoutError(f"{base} is not a folder; expected the folder holding train/, query/, gallery/ "
                                     "or one folder per person")
        opts, given = resolve(type(self), settings)
        user_pattern = compile_pattern(opts["name_pattern"]) if opts["name_pattern"] else None
        folders = {}
        for split in ("train", "query", "gallery"):
            name = opts[f"{split}_dir"]
            path = inside(base, name)
            if path is None:
                raise DatasetLayoutError(f"--set {split}_dir={name!r}: expected a folder inside {base}")
            if path.is_dir():
                folders[split] = (Path(os.path.relpath(path, base)).as_posix(), path)
        if not folders:
            folders[None] = ("", base)  # ROOT is the one labelled folder
        entries, problems, layouts = [], [], {}
        for split, (rel, folder) in folders.items():
            kind = folder_kind(folder)
            layouts[rel or "."] = {"persons": "person folders", "files": "file names", "empty": "empty"}[kind]
            if kind == "persons":
                entries += self.person_folders(folder, rel, split, user_pattern, problems)
            elif kind == "files":
                pattern = user_pattern or re.compile(MARKET_PATTERN)
                if "pid" not in pattern.groupindex:
                    raise DatasetLayoutError(f"--set name_pattern={pattern.pattern!r}: {folder} holds images, not "
                                             "person folders, so the pattern needs a (?P<pid>...) group")
                entries += self.file_names(folder, rel, split, pattern, problems)
        if "train" in folders and len(folders) == 1:
            entries = [replace(e, split=None) for e in entries]  # only train/: split by holdout
        uses = user_pattern.pattern if user_pattern else (MARKET_PATTERN if "file names" in layouts.values() else "")
        settings_out = {"folder": os.path.abspath(base), "layout": layouts, "name_pattern": uses,
                        **{f"{s}_dir": opts[f"{s}_dir"] for s in ("train", "query", "gallery")}}
        return build_layout(
            "folder", entries, opts, given, problems, where=str(base),
            camera_from="group camera of name_pattern", outfit_from="group outfit of name_pattern",
            settings=settings_out,
            empty=f"no images found in {base}; expected train/, query/ and gallery/ folders, or one folder per person",
        )

    @staticmethod
    def person_folders(folder: Path, rel: str, split, pattern, problems) -> list[Entry]:
        prefix = f"{rel}/" if rel else ""
        scan_problems = []
        found = [r for r in image_files(folder, 2, problems=scan_problems) if not hidden(r)]
        problems.extend((prefix + p, why) for p, why in scan_problems)
        persons = {r.split("/", 1)[0] for r in found}
        with os.scandir(folder) as listing:
            empty = sorted(e.name for e in listing if not e.name.startswith(".") and is_folder(e) and e.name not in persons)
        for name in empty:
            problems.append((f"{prefix}{name}/", "person folder holds no image; expected at least one "
                                                 f"{', '.join(sorted(IMAGE_SUFFIXES))} file in it"))
        out = []
        for r in found:
            person, file_name = r.split("/", 1)
            fields = {}
            if pattern is not None:
                match = pattern.match(file_name)
                if match is None:
                    problems.append((prefix + r, f"file name does not match name_pattern {pattern.pattern!r}"))
                    continue
                fields = match.groupdict()
            out.append(Entry(where=prefix + r, path=prefix + r, source=folder / r, person=person,
                             camera=fields.get("camera"), outfit=fields.get("outfit"), split=split, person_is_name=True))
        return out

    @staticmethod
    def file_names(folder: Path, rel: str, split, pattern, problems) -> list[Entry]:
        prefix = f"{rel}/" if rel else ""
        scan_problems = []
        found = [r for r in image_files(folder, 1, problems=scan_problems) if not hidden(r)]
        problems.extend((prefix + p, why) for p, why in scan_problems)
        out = []
        for r in found:
            match = pattern.match(r)
            if match is None or match.group("pid") is None:
                default = "" if pattern.pattern != MARKET_PATTERN else f", the default for Market-style names such as {EXAMPLE}"
                problems.append((prefix + r, f"file name does not match name_pattern {pattern.pattern!r}{default}"))
                continue
            fields = match.groupdict()
            out.append(Entry(where=prefix + r, path=prefix + r, source=folder / r, person=fields["pid"],
                             camera=fields.get("camera"), outfit=fields.get("outfit"), split=split))
        return out


CustomFolder.options = [
    click.Argument(["folder"], required=False, metavar="ROOT", type=click.Path(path_type=Path)),
    set_option(CustomFolder),
]
