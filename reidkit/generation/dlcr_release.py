"""DLCR's released generated images as a generated run of a store (``reidkit import-dlcr``).

What is known of the release (CroitoruAlin/dlcr README and loaders): one PNG
per original training image holding its variants side by side (split as
``'h (b w) c -> b h w c'``: tile k is the k-th from the left), a ``.txt``
beside it with one clothing description per line (line k is tile k's
prompt), in "the same directory structure" as the dataset; and, for PRCC's
query variants, an unpacked layout ``<root>/<variant folder>/<person
folder>/<file>`` with one image per variant. What exactly the archives hold is
not known, so the import decides nothing by person label and trusts no fixed
folder depth:

- Files are matched by their path relative to the release folder against the
  store's source paths (relative to the dataset root), extensions removed,
  under ONE prefix alignment for the whole import: leading folders ``R`` of
  the release paths are replaced by leading folders ``S`` of the store paths
  (``--prefix R=S``, or ``--prefix S`` when the release lacks ``S``).
  Estimated: the alignment that matches the most files.
- The layout (tiled or unpacked, and where the variant folders sit) is the
  one that matches the most files (a ``.txt`` beside an image means tiled;
  a tie between the two is settled by the images' widths).
- Refused in one line, before anything is written: fewer than ``min_match``
  of the image files match, two files map to one item, a width that is not a
  multiple of the tile count (``floor_width`` drops the remainder columns on
  the right instead), or too few files usable.
- Matched files whose tiles do not have the source's size, whose ``.txt``
  has another number of lines than tiles, or that do not decode are "odd":
  skipped, counted and named in the run's provenance. Ignored files
  (``__MACOSX``, ``.DS_Store``, AppleDouble ``._*``, a ``.txt`` beside no
  image) are counted too.

Items are written through the same chunk API and resume rule as ``reidkit
expand`` (``reidkit.generation.parts.open_part``, the engine's chunk writer,
``GeneratedRun.done_keys``, one writer per run): a kill leaves the finished
chunks, a rerun adds only the missing (source, variant) items, and a
half-written chunk is never published.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reidkit._version import __version__
from reidkit.errors import ReidkitError

GENERATOR = "dlcr-release"
DEFAULT_TILES = 10  # the released data: 10 variants per image
DEFAULT_MIN_MATCH = 0.9
DEFAULT_CHUNK_SIZE = 256
TAG = "import"  # chunk-name tag of imported chunks
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
IGNORED_FOLDERS = frozenset({"__MACOSX"})  # macOS zip resource forks
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
SAMPLE = 512  # release files whose store candidates propose alignments (every candidate is then counted over all files)
CANDIDATES = 12  # proposed alignments counted over all files
PER_NAME = 5000  # store paths looked at per file name when proposing alignments
EXAMPLES = 3
LAYOUTS = ("auto", "tiled", "unpacked")


# -- alignment ----------------------------------------------------------------------------------------------------
def _folder(prefix: str) -> str:
    """A prefix as '' or 'a/b/' (posix, no leading './' or '/')."""
    p = prefix.replace("\\", "/").strip()
    while p.startswith("./"):
        p = p[2:]
    p = p.strip("/")
    return p + "/" if p else ""


@dataclass(frozen=True, order=True)
class Alignment:
    """Release paths less the leading folders ``release``, under the leading folders ``store``."""

    release: str = ""
    store: str = ""

    @classmethod
    def parse(cls, text: str) -> "Alignment":
        """``R=S`` (replace R by S) or ``S`` (the store's paths have S where the release's start)."""
        release, sep, store = str(text).partition("=")
        return cls(_folder(release), _folder(store)) if sep else cls("", _folder(release))

    def apply(self, key: str) -> str | None:
        if not key.startswith(self.release):
            return None
        return self.store + key[len(self.release):]

    @property
    def option(self) -> str:
        return f"{self.release}={self.store}"

    def describe(self) -> str:
        return f"--prefix '{self.option}' (release paths less '{self.release}', under '{self.store}' in the store)"

    def as_dict(self) -> dict:
        return {"release": self.release, "store": self.store, "option": self.option}


def minimal_alignment(release_key: str, store_key: str) -> Alignment | None:
    """The alignment mapping ``release_key`` onto ``store_key`` with their common trailing folders kept (None if
    even the file names differ)."""
    r, s = release_key.split("/"), store_key.split("/")
    common = 0
    while common < min(len(r), len(s)) and r[-1 - common] == s[-1 - common]:
        common += 1
    if common == 0:
        return None
    head_r, head_s = r[: len(r) - common], s[: len(s) - common]
    return Alignment("/".join(head_r) + "/" if head_r else "", "/".join(head_s) + "/" if head_s else "")


# -- keys ---------------------------------------------------------------------------------------------------------
def release_key(rel: str) -> str:
    """A release path less its extension (and an image extension under it: ``x.jpg.png`` -> ``x``)."""
    stem, ext = posixpath.splitext(rel)
    inner, inner_ext = posixpath.splitext(stem)
    return inner if inner_ext.lower() in IMAGE_SUFFIXES and posixpath.basename(inner) else stem


def store_key(path: str) -> str:
    return posixpath.splitext(str(path).replace("\\", "/"))[0]


def natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# -- scanning the release folder -----------------------------------------------------------------------------------
@dataclass
class ReleaseScan:
    root: Path
    images: list[str]  # posix paths relative to root, sorted
    texts: dict[str, str]  # image path -> the .txt beside it
    ignored: Counter = field(default_factory=Counter)  # kind -> files
    other: list[str] = field(default_factory=list)  # neither image nor text nor ignored

    def counts(self) -> dict:
        return {"ignored": dict(sorted(self.ignored.items())), "other_files": len(self.other)}


def scan_release(root) -> ReleaseScan:
    """Every file under ``root`` sorted into images, their ``.txt`` files, ignored files and others."""
    root = Path(root)
    if not root.exists():
        raise ReidkitError(f"release folder {root} does not exist; expected the folder DLCR's archives were extracted into")
    if not root.is_dir():
        raise ReidkitError(f"{root} is a file; expected the folder DLCR's archives were extracted into (extract the zip parts first)")
    images, txts, other, ignored = [], [], [], Counter()
    seen = set()  # folders already walked (device, inode): a symlink loop is walked once
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else rel_folder + "/"
        for d in list(dirs):
            if d in IGNORED_FOLDERS:
                ignored[d] += sum(len(f) for _, _, f in os.walk(os.path.join(folder, d)))
                dirs.remove(d)
        dirs.sort()
        for name in sorted(files):
            suffix = posixpath.splitext(name)[1].lower()
            if name in IGNORED_NAMES:
                ignored[name] += 1
            elif name.startswith("._"):
                ignored["._* (AppleDouble)"] += 1
            elif suffix in IMAGE_SUFFIXES:
                images.append(prefix + name)
            elif suffix == ".txt":
                txts.append(prefix + name)
            else:
                other.append(prefix + name)
    by_stem = {}
    for rel in images:
        by_stem.setdefault(posixpath.splitext(rel)[0], []).append(rel)
        by_stem.setdefault(rel, []).append(rel)  # x.png.txt beside x.png
    texts = {}
    for t in txts:
        owners = by_stem.get(posixpath.splitext(t)[0], [])
        if not owners:
            ignored["orphan .txt"] += 1
        for img in owners:
            texts[img] = t
    return ReleaseScan(root, sorted(images), texts, ignored, other)


# -- the layouts: which part of a path is the variant, which the key ------------------------------------------------
@dataclass(frozen=True)
class Layout:
    kind: str  # "tiled" or "unpacked"
    depth: int = 0  # unpacked: wrapper folders above the variant folders

    def split(self, rel: str):
        """(variant folder or None, matching key, wrapper) of a release path; None when it cannot hold one."""
        if self.kind == "tiled":
            return None, release_key(rel), ""
        parts = rel.split("/")
        if len(parts) < self.depth + 2:
            return None
        return parts[self.depth], release_key("/".join(parts[self.depth + 1:])), "/".join(parts[: self.depth])

    def describe(self, wrapper: str = "") -> str:
        if self.kind == "tiled":
            return "tiled (variants side by side in one image per source)"
        return f"unpacked (one folder per variant{f' under {wrapper!r}' if wrapper else ''})"


@dataclass
class Entry:
    rel: str
    key: str
    folder: str | None  # unpacked: the variant folder


def entries_of(scan: ReleaseScan, layout: Layout) -> tuple[list[Entry], list[str]]:
    """(entries, image paths that do not fit the layout: outside any variant folder)."""
    out, misfits = [], []
    for rel in scan.images:
        parsed = layout.split(rel)
        if parsed is None:
            misfits.append(rel)
            continue
        folder, key, _ = parsed
        out.append(Entry(rel, key, folder))
    return out, misfits


def top_chain(scan: ReleaseScan) -> int:
    """How many leading folders every image of the release shares (the wrapper folders of an unpacked layout)."""
    if not scan.images:
        return 0
    dirs = [rel.split("/")[:-1] for rel in scan.images]
    depth = 0
    while all(len(d) > depth for d in dirs) and len({d[depth] for d in dirs}) == 1:
        depth += 1
    return depth


# -- matching -----------------------------------------------------------------------------------------------------
@dataclass
class StoreIndex:
    """The store items a release may match: their keys, and the keys by file name (for proposing alignments)."""

    split_names: list[str]
    of_key: dict[str, int]
    ambiguous: set[str]
    by_name: dict[str, list[str]]

    @classmethod
    def build(cls, store, split: str) -> "StoreIndex":
        names = split_names(store, split)
        idx = np.unique(np.concatenate([store.split(n) for n in names]))
        paths = store.image_paths
        of_key, ambiguous, by_name = {}, set(), {}
        for i in idx.tolist():
            key = store_key(paths[i])
            if key in of_key:
                ambiguous.add(key)
            of_key[key] = int(i)
            by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
        return cls(names, of_key, ambiguous, by_name)

    def find(self, key: str):
        """Store index of ``key``; -1 when two store images share it (x.jpg and x.png), None when absent."""
        if key in self.ambiguous:
            return -1
        return self.of_key.get(key)


def split_names(store, split: str) -> list[str]:
    """``split`` itself, or for 'query' every query split (PRCC: query_cc and query_sc)."""
    if split in store.splits:
        return [split]
    if split == "query":
        names = sorted(n for n in store.splits if n.startswith("query"))
        if names:
            return names
    raise ReidkitError(f"store {store.path} has no split '{split}' (splits: {', '.join(sorted(store.splits))}); "
                       "expected --split train, query, or one of those")


def propose(entries: list[Entry], index: StoreIndex) -> list[Alignment]:
    """Alignments supported by a spread-out sample of the files, most supported first (and the identity)."""
    step = max(1, len(entries) // SAMPLE)
    votes = Counter()
    for e in entries[::step][:SAMPLE]:
        seen = set()
        for skey in index.by_name.get(e.key.rsplit("/", 1)[-1], ())[:PER_NAME]:
            a = minimal_alignment(e.key, skey)
            if a is not None and a not in seen:
                seen.add(a)
                votes[a] += 1
    ranked = [a for a, _ in sorted(votes.items(), key=lambda kv: (-kv[1], len(kv[0].release) + len(kv[0].store), kv[0]))]
    return list(dict.fromkeys(ranked[:CANDIDATES] + [Alignment()]))


def count_matches(entries: list[Entry], alignment: Alignment, index: StoreIndex) -> int:
    found = 0
    for e in entries:
        target = alignment.apply(e.key)
        if target is not None and index.find(target) is not None:
            found += 1
    return found


def best_alignment(entries: list[Entry], index: StoreIndex, given: Alignment | None) -> tuple[Alignment, int]:
    if given is not None:
        return given, count_matches(entries, given, index)
    scored = [(count_matches(entries, a, index), a) for a in propose(entries, index)]
    # most files matched; then the shortest prefixes; then by name (deterministic)
    count, a = min(scored, key=lambda ca: (-ca[0], len(ca[1].release) + len(ca[1].store), ca[1]))
    return a, count


@dataclass
class Match:
    entry: Entry
    source: int
    variant: int
    txt: str | None = None
    lines: list[str] | None = None


@dataclass
class Plan:
    layout: Layout
    wrapper: str
    alignment: Alignment
    estimated: bool
    entries: list[Entry]
    misfits: list[str]
    matched: list[Match]
    unmatched: list[tuple[str, str]]  # (release path, why)
    duplicates: list[tuple[str, str, str]]  # (first file, second file, store path)
    folders: list[str]  # unpacked: variant folders in natural order
    split_images: int = 0  # store images the release could match


def match(scan: ReleaseScan, index: StoreIndex, store, layout: Layout, alignment: Alignment, estimated: bool) -> Plan:
    entries, misfits = entries_of(scan, layout)
    folders = sorted({e.folder for e in entries if e.folder is not None}, key=natural_key)
    position = {f: v for v, f in enumerate(folders)}
    wrapper = "/".join(scan.images[0].split("/")[: layout.depth]) + "/" if layout.kind == "unpacked" and layout.depth else ""
    matched, unmatched, duplicates, taken = [], [], [], {}
    paths = store.image_paths
    for rel in misfits:
        unmatched.append((rel, f"outside the variant folders under '{wrapper}'"))
    for e in entries:
        target = alignment.apply(e.key)
        if target is None:
            unmatched.append((e.rel, f"not under '{alignment.release}'"))
            continue
        source = index.find(target)
        if source is None:
            unmatched.append((e.rel, f"no {'/'.join(index.split_names)} image '{target}.*'"))
            continue
        if source == -1:
            unmatched.append((e.rel, f"two store images are '{target}.*'"))
            continue
        slot = (source, e.folder)
        if slot in taken:
            duplicates.append((taken[slot], e.rel, str(paths[source])))
            continue
        taken[slot] = e.rel
        matched.append(Match(e, source, 0, scan.texts.get(e.rel)))
    # unpacked: a source's variants are numbered 0, 1, ... over the folders holding it, in the folders' natural order
    # (every folder holds every source in DLCR's query variants: then variant = the folder's position)
    matched.sort(key=lambda m: (m.source, position.get(m.entry.folder, -1)))
    for j, m in enumerate(matched):
        m.variant = m.variant if m.entry.folder is None else (
            matched[j - 1].variant + 1 if j and matched[j - 1].source == m.source else 0)
    return Plan(layout, wrapper, alignment, estimated, entries, misfits, matched, unmatched, duplicates, folders,
                len(index.of_key))


def choose_plan(scan: ReleaseScan, index: StoreIndex, store, layout: str, given: Alignment | None, tiles: int) -> Plan:
    """The layout and alignment that match the most files (``layout``/``given``: as the user fixed them)."""
    candidates = []
    if layout in ("auto", "tiled"):
        candidates.append(Layout("tiled"))
    if layout == "unpacked" or (layout == "auto" and not scan.texts):  # a .txt beside an image: the tiled release
        candidates += [Layout("unpacked", d) for d in range(top_chain(scan) + 1)]
    scored = []
    for lay in candidates:
        entries, _ = entries_of(scan, lay)
        a, count = best_alignment(entries, index, given)
        scored.append((count, lay, a))
    top = max(c for c, _, _ in scored)
    best = [(lay, a) for c, lay, a in scored if c == top]
    kinds = {lay.kind for lay, _ in best}
    if len(kinds) == 2:  # the same files match either way: one variant per file, or n side by side?
        tiled = next((lay, a) for lay, a in best if lay.kind == "tiled")
        plan = match(scan, index, store, tiled[0], tiled[1], given is None)
        widths = Counter(_width_kind(scan.root / m.entry.rel, store, m.source, tiles) for m in plan.matched[:16])
        prefer = "unpacked" if widths["source"] > widths["tiled"] else "tiled"
        best = [(lay, a) for lay, a in best if lay.kind == prefer]
    lay, a = max(best, key=lambda la: la[0].depth)  # unpacked ties: the deepest variant level
    return match(scan, index, store, lay, a, given is None)


def _width_kind(path: Path, store, source: int, tiles: int) -> str:
    size = header(path)
    if size is None:
        return "unknown"
    w = int(store.width[source])
    return "source" if size[0] == w else "tiled" if size[0] == tiles * w else "other"


# -- reading release images ---------------------------------------------------------------------------------------
def header(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image's header (nothing decoded); None when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # PIL raises many kinds for a damaged or foreign file
        return None


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB: any mode converted as DLCR's loader does (PIL ``convert('RGB')``: grey repeated, alpha dropped,
    palette looked up), except 16-bit grey, scaled to 8 bits by its high byte (as reidkit's own decoder; PIL would
    clip it); ValueError if it fails."""
    from PIL import Image

    from reidkit.store.imagecodec import check_size

    try:
        with Image.open(path) as im:
            check_size(int(im.size[1]), int(im.size[0]), (im.format or "image").lower())
            if im.mode == "I" or im.mode.startswith("I;16"):
                grey = (np.clip(np.asarray(im, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
                rgb = np.repeat(grey[..., None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"))
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"decoded to shape {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def read_lines(path: Path) -> list[str]:
    """One prompt per line (whitespace stripped, trailing empty lines dropped)."""
    text = Path(path).read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def tiles_of(rgb: np.ndarray, n: int) -> list[np.ndarray]:
    """``'h (b w) c -> b h w c'`` with b = n: tile k the k-th from the left (columns past n * (W // n) dropped)."""
    w = rgb.shape[1] // n
    return [np.ascontiguousarray(rgb[:, k * w:(k + 1) * w]) for k in range(n)]


# -- checking the matched files before anything is written --------------------------------------------------------
@dataclass
class Checked:
    usable: list[Match]
    odd: list[tuple[str, str, str]]  # (release path, reason kind, detail)
    floored: int
    line_counts: Counter = field(default_factory=Counter)  # .txt line counts that differ from the tile count


def check_files(plan: Plan, scan: ReleaseScan, store, tiles: int, floor_width: bool) -> Checked:
    """Headers and .txt files of the matched files: widths divisible (or floored), sizes, line counts."""
    n = tiles if plan.layout.kind == "tiled" else 1
    usable, odd, not_divisible, floored, line_counts = [], [], [], 0, Counter()
    for m in plan.matched:
        path = scan.root / m.entry.rel
        size = header(path)
        if size is None:
            odd.append((m.entry.rel, "unreadable", "not an image PIL can open"))
            continue
        width, height = size
        sw, sh = int(store.width[m.source]), int(store.height[m.source])
        if width % n:
            if not floor_width:
                not_divisible.append((m, width, sw))
                continue
            floored += 1
        if m.txt is not None:
            try:
                m.lines = read_lines(scan.root / m.txt)
            except OSError as exc:
                odd.append((m.entry.rel, "txt unreadable", f"{m.txt}: {exc.strerror or exc}"))
                continue
            if len(m.lines) != n:
                line_counts[len(m.lines)] += 1
                odd.append((m.entry.rel, "txt lines", f"{m.txt} has {len(m.lines)} lines for {n} tiles"))
                continue
        if (width // n, height) != (sw, sh):
            what = f"{n} tiles of {width // n}x{height}" if n > 1 else f"{width}x{height}"
            odd.append((m.entry.rel, "size", f"{what}, its source {store.image_paths[m.source]} is {sw}x{sh}"))
            continue
        usable.append(m)
    if not_divisible:
        m, width, sw = not_divisible[0]
        hint = f"{width // sw} times its source's {sw} px: --tiles {width // sw}?" if sw and width % sw == 0 else \
            f"its source is {sw} px wide"
        raise ReidkitError(f"{len(not_divisible)} of {len(plan.matched)} matched files have a width that is not a multiple of "
                           f"--tiles {n}, e.g. {m.entry.rel} is {width} px wide ({hint}); expected {n} tiles side by side "
                           f"(--floor-width drops the {width % n} columns on the right, --tiles N sets the count)")
    return Checked(usable, odd, floored, line_counts)


def tile_count_hint(checked: Checked, plan: Plan, store, scan: ReleaseScan) -> str:
    """What the odd files suggest about --tiles (their .txt line counts and widths in source widths)."""
    lines = checked.line_counts
    ratios = Counter()
    for m in plan.matched[:64]:
        size = header(scan.root / m.entry.rel)
        sw = int(store.width[m.source])
        if size and sw and size[0] % sw == 0:
            ratios[size[0] // sw] += 1
    hints = []
    if lines:
        hints.append(f".txt files mostly have {lines.most_common(1)[0][0]} lines")
    if ratios:
        hints.append(f"images are mostly {ratios.most_common(1)[0][0]} source widths wide")
    return f" ({'; '.join(hints)})" if hints else ""


# -- the import ---------------------------------------------------------------------------------------------------
def default_run_name(split: str) -> str:
    return f"{GENERATOR}-{split}"


def _examples(pairs, limit=EXAMPLES) -> list[str]:
    return [f"{a} ({b})" for a, b in pairs[:limit]]


def refuse_unmatched(plan: Plan, scan: ReleaseScan, store, split: str, min_match: float):
    total = len(scan.images)
    share = len(plan.matched) / total if total else 0.0
    if total and share + 1e-12 >= min_match:
        return
    if not total:
        raise ReidkitError(f"{scan.root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); expected DLCR's "
                           "extracted release (extract every zip part first)")
    eg = "; ".join(f"'{a}' ({b})" for a, b in plan.unmatched[:EXAMPLES])
    best = f"best alignment {plan.alignment.describe()}, {plan.layout.describe(plan.wrapper)}" if plan.matched or \
        not plan.estimated else "no alignment matches any file (names are compared with the store's, extensions removed)"
    raise ReidkitError(f"only {len(plan.matched):,} of {total:,} image files under {scan.root} ({share:.0%}) match a "
                       f"'{split}' image of {store.path.name} ({store.dataset}) (--min-match {min_match:g}); {best}; e.g. {eg}; expected "
                       "DLCR's release of the benchmark this store was adapted from (check --split, give --prefix "
                       "RELEASE=STORE, or lower --min-match)")


def refuse_duplicates(plan: Plan):
    if not plan.duplicates:
        return
    eg = "; ".join(f"'{a}' and '{b}' -> {p}" for a, b, p in plan.duplicates[:EXAMPLES])
    raise ReidkitError(f"{len(plan.duplicates):,} release files map to an item another file already maps to under "
                       f"alignment {plan.alignment.describe()}, {plan.layout.describe(plan.wrapper)}: {eg}; expected one "
                       "file per source image (and variant folder): remove the extra copies, or give --prefix")


def refuse_odd(checked: Checked, plan: Plan, scan: ReleaseScan, store, tiles: int, min_match: float):
    total = len(scan.images)
    share = len(checked.usable) / total if total else 0.0
    if share + 1e-12 >= min_match:
        return
    kinds = Counter(kind for _, kind, _ in checked.odd)
    eg = "; ".join(f"'{a}' ({d})" for a, _, d in checked.odd[:EXAMPLES])
    raise ReidkitError(f"only {len(checked.usable):,} of {total:,} image files under {scan.root} ({share:.0%}) can be "
                       f"imported (--min-match {min_match:g}): {len(checked.odd):,} matched files are odd "
                       f"({', '.join(f'{k}: {v}' for k, v in kinds.most_common())}), e.g. {eg}"
                       f"{tile_count_hint(checked, plan, store, scan)}; expected {tiles} tiles of the source's size "
                       "per file and one .txt line per tile (set --tiles)")


@dataclass
class _Writer:
    """The expand engine's chunk writer, fed with imported tiles."""

    inner: object

    def add(self, source: int, variant: int, pid: int, camera: int, prompt: str, image: np.ndarray):
        from reidkit.generation.contracts import GenerationItem, Verdict

        item = GenerationItem(source_index=int(source), variant=int(variant), image=None, mask=None, label_map=None,
                              labels=[], clothing=[], target_key="", items=[], prompt=prompt, seed=-1, pid=int(pid),
                              camera=int(camera))
        self.inner.add(item, image, Verdict(True))

    def flush(self):
        self.inner.flush()


def import_release(release, store_path, *, split: str = "train", name: str | None = None, prefix: str | None = None,
                   tiles: int = DEFAULT_TILES, min_match: float = DEFAULT_MIN_MATCH, floor_width: bool = False,
                   layout: str = "auto", release_name: str | None = None, release_revision: str | None = None,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, show_progress: bool = True) -> dict:
    """Import (or finish importing) DLCR's extracted release folder ``release`` into a generated run of the store.

    Returns a summary dict: run, path, layout, alignment, files (image files found), matched, imported_files,
    items (in the run), written (this call), already_present, unmatched, odd (reason -> files), floored, ignored,
    other_files.
    """
    from reidkit.generation.engine import _ChunkWriter
    from reidkit.generation.parts import open_part
    from reidkit.store import chunks, open_store
    from reidkit.store.lock import one_writer_per_run_shard
    from reidkit.store.runs import KIND, GeneratedRun

    if int(tiles) < 1:
        raise ReidkitError(f"--tiles must be at least 1, got {tiles}")
    if not 0.0 < float(min_match) <= 1.0:
        raise ReidkitError(f"--min-match must be in (0, 1], got {min_match}")
    if layout not in LAYOUTS:
        raise ReidkitError(f"--layout must be one of {', '.join(LAYOUTS)}, got '{layout}'")
    store = open_store(store_path)
    index = StoreIndex.build(store, split)
    scan = scan_release(release)
    given = Alignment.parse(prefix) if prefix is not None else None
    plan = choose_plan(scan, index, store, layout, given, int(tiles))
    refuse_unmatched(plan, scan, store, split, min_match)
    refuse_duplicates(plan)
    n = int(tiles) if plan.layout.kind == "tiled" else 1
    checked = check_files(plan, scan, store, n, floor_width)
    refuse_odd(checked, plan, scan, store, n, min_match)

    run_name = name or default_run_name(split)
    run_dir = chunks.part_dir(store, KIND, run_name)
    variants = n if plan.layout.kind == "tiled" else max(m.variant for m in plan.matched) + 1
    settings = {
        "generator": GENERATOR,
        "layout": plan.layout.kind,
        "tiles": n,
        "variant_folders": plan.folders if plan.layout.kind == "unpacked" else None,
        "split": split,
        "alignment": plan.alignment.option,
        "floor_width": bool(floor_width),
        "release_name": release_name,
        "release_revision": release_revision,
    }
    started = time.perf_counter()
    with one_writer_per_run_shard(store.path, run_name, TAG):
        existing = (run_dir / "part.json").is_file()
        done = set()
        info = _info(settings, plan, scan, checked, variants, split, release_name, release_revision, n,
                     len(checked.usable) * n if plan.layout.kind == "tiled" else len(checked.usable))
        if existing:  # other settings are refused now, before any work
            open_part(store, KIND, run_name, info, must_match=("settings",))
            done = GeneratedRun(run_dir, store).done_keys()
        writer = _Writer(_ChunkWriter(run_dir, TAG, chunk_size, {"generator": GENERATOR, "reidkit_version": __version__},
                                      create=None if existing else lambda: open_part(store, KIND, run_name, info,
                                                                                      must_match=("settings",))))
        written, already, late_odd = _write(writer, checked.usable, plan, scan, store, n, done, show_progress, run_name)
        checked.odd.extend(late_odd)
        if (run_dir / "part.json").is_file():
            _record_release(run_dir, plan, scan, checked)  # this import's counts (a rerun may have found more files)
    run = GeneratedRun(run_dir, store) if (run_dir / "part.json").is_file() else None
    odd = Counter(kind for _, kind, _ in checked.odd)
    return {
        "run": run_name, "path": str(run_dir), "store": str(store.path), "layout": plan.layout.kind,
        "variant_folders": plan.folders if plan.layout.kind == "unpacked" else None, "tiles": n,
        "alignment": {**plan.alignment.as_dict(), "estimated": plan.estimated}, "files": len(scan.images),
        "matched": len(plan.matched), "imported_files": len(checked.usable) - len(late_odd),
        "items": len(run) if run is not None and run.files else 0, "written": written, "already_present": already,
        "unmatched": len(plan.unmatched), "odd": dict(sorted(odd.items())), "floored": checked.floored,
        "seconds": round(time.perf_counter() - started, 3), **scan.counts(),
    }


def _write(writer: _Writer, usable, plan: Plan, scan: ReleaseScan, store, n: int, done: set, show_progress: bool,
           run_name: str):
    """Every usable file's missing items, in (source, variant) order; returns (written, already present, odd found)."""
    from reidkit.progress import progress_bar

    written = already = 0
    late_odd = []
    total = sum(n for _ in usable)
    with progress_bar(total if show_progress else 0, f"import {run_name}") as update:
        try:
            for m in usable:
                keys = [(m.source, k) for k in range(n)] if plan.layout.kind == "tiled" else [(m.source, m.variant)]
                missing = [key not in done for key in keys]
                if not any(missing):
                    already += len(keys)
                    update(advance=len(keys))
                    continue
                try:
                    rgb = read_rgb(scan.root / m.entry.rel)
                except ValueError as exc:  # passed the header check, fails to decode: odd, skipped
                    late_odd.append((m.entry.rel, "undecodable", str(exc)))
                    update(advance=len(keys))
                    continue
                images = tiles_of(rgb, n)
                pid, camera = int(store.pid[m.source]), int(store.camera[m.source])
                for k, (key, image, want) in enumerate(zip(keys, images, missing)):
                    if not want:
                        already += 1
                        continue
                    prompt = m.lines[k] if m.lines is not None else ""
                    writer.add(key[0], key[1], pid, camera, prompt, image)
                    written += 1
                update(advance=len(keys))
        finally:
            writer.flush()  # every finished item is published, also on Ctrl-C
    return written, already, late_odd


def _release_block(plan: Plan, scan: ReleaseScan, checked: Checked, release_name, release_revision, n: int) -> dict:
    odd = Counter(kind for _, kind, _ in checked.odd)
    return {
        "name": release_name,
        "revision": release_revision,
        "folder": str(Path(scan.root).resolve()),
        "layout": plan.layout.kind,
        "layout_wrapper": plan.wrapper,
        "tiles": n,
        "variant_folders": plan.folders if plan.layout.kind == "unpacked" else None,
        "variant_rule": "tile position from the left" if plan.layout.kind == "tiled" else
                        "position of the folder among the variant folders holding the source image (natural order)",
        "alignment": {**plan.alignment.as_dict(), "estimated": plan.estimated},
        "counts": {
            "image_files": len(scan.images),
            "matched_files": len(plan.matched),
            "imported_files": len(checked.usable) - sum(1 for _, k, _ in checked.odd if k == "undecodable"),
            "unmatched_files": len(plan.unmatched),
            "split_images": plan.split_images,
            "sources_covered": len({m.source for m in checked.usable}),
            "odd_files": dict(sorted(odd.items())),
            "floored_files": checked.floored,
            "text_files": len(set(scan.texts.values())),
            **scan.counts(),
        },
        "examples": {
            "unmatched": _examples(plan.unmatched),
            "odd": [f"{a} ({d})" for a, _, d in checked.odd[:EXAMPLES]],
            "other": scan.other[:EXAMPLES],
        },
    }


def _info(settings, plan, scan, checked, variants, split, release_name, release_revision, n, items_planned) -> dict:
    return {
        "generator": GENERATOR,
        "model_id": None,
        "seed": None,
        "variants": int(variants),
        "split": split,
        "settings": settings,
        "reidkit_version": __version__,
        "items_planned": int(items_planned),
        "release": _release_block(plan, scan, checked, release_name, release_revision, n),
        "seed_rule": "none: imported images (item seed -1)",
    }


def _record_release(run_dir: Path, plan: Plan, scan: ReleaseScan, checked: Checked):
    """The run's provenance updated with this import's counts (atomic; the settings stay as they are)."""
    from reidkit.store import atomic

    meta = run_dir / "part.json"
    info = json.loads(meta.read_text())
    old = info.get("release") or {}
    new = _release_block(plan, scan, checked, old.get("name"), old.get("revision"), int(info.get("settings", {}).get("tiles", 1)))
    if json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
        info["release"] = new
        info["items_planned"] = new["counts"]["imported_files"] * int(info.get("settings", {}).get("tiles", 1))
        atomic.write_json_atomic(meta, info, replace=True)
