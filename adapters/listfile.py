"""Your own labelled images in a list: ``reidkit adapt list LIST.csv --out S.h5`` (docs/datasets/custom.md).

A CSV or TSV file (by extension, else sniffed) whose header names at least
``path`` and ``pid``, optionally ``camera``, ``outfit``, ``split``
(train/query/gallery) and ``tracklet``. Paths are relative to the list's
folder (absolute ones must lie inside it). Without a split column (or with
no query and gallery rows), persons are split by a seeded holdout.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import click

from reidkit.adapter import SPLITS, Adapter
from reidkit.contracts import Setting
from reidkit.errors import DatasetLayoutError

from reidkit.adapters.common import inside
from reidkit.adapters.custom_common import HOLDOUT_SETTINGS, Entry, build_layout, resolve, set_option, the_input

REQUIRED = ("path", "pid")
OPTIONAL = ("camera", "outfit", "split", "tracklet")
DELIMITERS = {"comma": ",", "tab": "\t", "semicolon": ";"}
BY_SUFFIX = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
SHOWN = {",": "comma", "\t": "tab", ";": "semicolon", "|": "|"}


def delimiter_of(path: Path, text: str, choice: str) -> str:
    if choice != "auto":
        return DELIMITERS[choice]
    if path.suffix.lower() in BY_SUFFIX:
        return BY_SUFFIX[path.suffix.lower()]
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",\t;|").delimiter
    except csv.Error:
        raise DatasetLayoutError(f"{path}: cannot tell how the columns are separated; expected a .csv or .tsv file "
                                 "or --set delimiter=comma|tab|semicolon") from None


def read_table(path: Path, delimiter_choice: str) -> tuple[str, list[tuple[int, list[str]]]]:
    """(the delimiter, [(line number, cells)]) for the non-blank rows, header first."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetLayoutError(f"{path}: not UTF-8 text (byte {exc.start}); expected a CSV or TSV list") from None
    except OSError as exc:
        raise DatasetLayoutError(f"cannot read list {path}: {exc.strerror or exc}") from None
    delimiter = delimiter_of(path, text, delimiter_choice)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise DatasetLayoutError(f"{path.name}:{reader.line_num}: {exc}; expected {SHOWN[delimiter]}-separated "
                                 "columns") from None
    if not rows:
        raise DatasetLayoutError(f"{path} is empty; expected a header naming path and pid, then one row per image")
    return delimiter, rows


def within(base: Path, text: str) -> str | None:
    """``text`` as a posix path relative to ``base`` when it stays inside it (absolute paths too), else None."""
    if os.path.isabs(text):
        text = os.path.relpath(os.path.normpath(text), base)
    path = inside(base, text)
    return None if path is None else Path(os.path.relpath(path, base)).as_posix()


class CustomList(Adapter):
    """Your own labelled images listed in a CSV or TSV file (docs/datasets/custom.md).

    \b
    Header: path, pid (required); camera, outfit, split, tracklet (optional;
    other columns are ignored). path: relative to the list's folder. pid,
    camera, tracklet: whole numbers or names (one kind per column; names are
    numbered in sorted order and recorded). split: train, query or gallery;
    without it (or without query and gallery rows): a seeded split by
    persons (--set holdout=0.5 --set seed=0), one query per (person, camera)
    of the test persons, the rest gallery. No camera column: every image is
    its own camera. With outfits: the cc and sc protocols besides standard.
    """

    name = "list"
    summary = "Your own labelled images listed in a CSV/TSV file (path, pid, camera, outfit, split, tracklet)."
    needs_root = False  # LIST is the positional argument (or --root)
    defaults = {"delimiter": "auto", **HOLDOUT_SETTINGS["defaults"]}
    settings_spec = {
        "delimiter": Setting(str, "how columns are separated; auto: by extension (.csv, .tsv), else sniffed",
                             choices=("auto", *DELIMITERS)),
        **HOLDOUT_SETTINGS["spec"],
    }
    options: list = []  # below the class: LIST and --set (whose help lists the settings above)

    def scan(self, root, settings):
        path = the_input(root, settings.get("list"), "LIST", self.name)
        if not path.is_file():
            raise DatasetLayoutError(f"{path} {'is not a file' if path.exists() else 'does not exist'}; "
                                     "expected a CSV or TSV list of images")
        opts, given = resolve(type(self), settings)
        base = Path(os.path.abspath(path.parent))
        delimiter, rows = read_table(path, opts["delimiter"])
        (header_line, header), rows = rows[0], rows[1:]
        columns = [c.lower() for c in header]
        name = path.name
        for required in REQUIRED:
            if required not in columns:
                raise DatasetLayoutError(
                    f"{name}:{header_line}: the header has no '{required}' column (found: {', '.join(header) or 'nothing'}); "
                    f"expected at least path and pid, optionally {', '.join(OPTIONAL)}")
        for i, column in enumerate(columns):
            if column and column in columns[:i]:
                raise DatasetLayoutError(f"{name}:{header_line}: column '{column}' appears twice in the header; "
                                         "expected each column once")
        at = {c: columns.index(c) for c in (*REQUIRED, *OPTIONAL) if c in columns}
        entries, problems, first_line = [], [], {}
        for line, cells in rows:
            where = f"{name}:{line}"
            if len(cells) != len(columns):
                problems.append((where, f"expected {len(columns)} fields as in the header, found {len(cells)}"))
                continue
            value = {c: cells[i] for c, i in at.items()}
            if not value["path"]:
                problems.append((where, f"no image path (a person with no image); expected a path relative to {base}"))
                continue
            if not value["pid"]:
                problems.append((where, "empty pid; expected a person id (a whole number or a name)"))
                continue
            rel = within(base, value["path"])
            if rel is None:
                problems.append((where, f"{value['path']} points outside the list's folder {base}; expected a path "
                                        "inside it"))
                continue
            if rel in first_line:
                problems.append((where, f"{rel} is listed again (first on line {first_line[rel]}); expected each "
                                        "image once"))
                continue
            first_line[rel] = line
            split = value.get("split", "").lower() or None
            if "split" in at and split not in SPLITS:
                problems.append((where, f"split {value['split']!r}; expected {', '.join(SPLITS)}"))
                continue
            source = base / rel
            if not source.is_file() and not os.path.islink(source):  # a broken link is read and reported as a bad file
                problems.append((where, f"listed image {rel} not found"))
                continue
            entries.append(Entry(where=where, path=rel, source=source, person=value["pid"],
                                 camera=value.get("camera") or None, outfit=value.get("outfit") or None,
                                 tracklet=value.get("tracklet") or None, split=split))
        if {e.split for e in entries} <= {"train", None}:  # no query or gallery rows: split by holdout
            for e in entries:
                e.split = None
        ignored = [h for h, c in zip(header, columns) if c and c not in at]
        settings_out = {"list": os.path.abspath(path), "delimiter": SHOWN.get(delimiter, delimiter), "columns": sorted(at),
                        **({"ignored_columns": ignored} if ignored else {})}
        return build_layout(
            "list", entries, opts, given, problems, where=name,
            camera_from="column camera", outfit_from="column outfit", settings=settings_out,
            empty=f"{path} lists no images; expected a header naming path and pid, then one row per image",
        )


CustomList.options = [
    click.Argument(["list"], required=False, metavar="LIST", type=click.Path(path_type=Path)),
    set_option(CustomList),
]
