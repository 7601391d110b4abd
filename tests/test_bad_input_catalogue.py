"""Issue 14: a catalogue of bad input, one row per kind, each run through the installed ``reidkit`` console script.

Every row builds one bad input in its own folder (copies of small shared fixtures), runs the command and asserts
what docs/reliability.md promises for bad input: a non-zero exit, exactly one non-empty line on stderr, no
traceback, a line that names what was wrong (the row's keywords), an anticipated error rather than the CLI's
catch-all for unexpected exceptions, and nothing changed on disk: every path under the row's folder (files with
size and sha256, folders, symlinks) is the same before and after, so nothing was written, half-written, created
or removed.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest

from tests.miniature_layouts import (build_ccvid, build_cuhk03, build_deepchange, build_last, build_ltcc, build_market,
                                     build_msmt17, build_prcc)

EXE = Path(sys.executable).parent / "reidkit"
TRAIN = ("--batch", "2,2", "--height", "64", "--width", "32", "--num-workers", "0", "--device", "cpu",
         "--backbone", "test_resnet", "--weights", "none", "--amp", "none")
CATCH_ALL = "rerun with --debug for the traceback"  # the CLI's line for an exception nobody anticipated


def reidkit(*args, cwd, env=None, timeout=240):
    full = {k: v for k, v in os.environ.items() if not k.startswith("REIDKIT_")}
    full.update({"HF_HUB_OFFLINE": "1", "REIDKIT_PROGRESS_SECONDS": "600", **(env or {})})
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout)


def snapshot(root: Path) -> dict:
    """Every path under ``root``: ('dir',), ('link', target) or ('file', size, sha256); symlinks are not followed."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = ("dir",)
            else:
                seen[rel] = ("file", st.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return seen


# -- image bytes: structurally plausible files whose data, size or format is wrong --------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose every chunk CRC is right, whatever ``idat`` holds."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _pixels(height=16, width=8):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encoded(ext: str) -> bytes:
    import cv2

    return cv2.imencode(ext, _pixels())[1].tobytes()


def bad_image(kind: str) -> bytes:
    rows = b"".join(b"\x00" + r.tobytes() for r in _pixels())
    if kind == "jpg_truncated":
        data = _encoded(".jpg")
        return data[: len(data) // 2]
    if kind == "jpg_huge":
        data = bytearray(_encoded(".jpg"))
        struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, 60000, 60000)
        return bytes(data)
    if kind == "png_truncated":
        return _encoded(".png")[:-30]
    if kind == "png_bad_crc":
        data = bytearray(_encoded(".png"))
        data[45] ^= 0xFF  # inside IDAT: its CRC no longer matches
        return bytes(data)
    if kind == "png_valid_crc_corrupt_data":
        deflated = bytearray(zlib.compress(rows))
        deflated[len(deflated) // 2] ^= 0xFF
        return _png(8, 16, bytes(deflated))
    if kind == "png_huge":
        return _png(60000, 60000, zlib.compress(rows))
    if kind == "bmp_truncated":
        data = _encoded(".bmp")
        return data[: len(data) // 2]
    if kind == "bmp_huge":
        data = bytearray(_encoded(".bmp"))
        struct.pack_into("<ii", data, 18, 60000, 60000)
        return bytes(data)
    if kind == "empty":
        return b""
    if kind == "gif_bytes":
        return b"GIF89a\x08\x00\x10\x00\x00\x00\x00;"
    if kind == "text":
        return b"this is not an image at all\n" * 4
    raise ValueError(kind)


class Planted:
    """Unpickling this makes a folder (``os.mkdir``): a loader that unpickles leaves a trace the snapshot sees."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


# -- shared fixtures: built once per module, copied per row ---------------------------------------------------------
class Shared:
    def __init__(self, root: Path):
        self.root = root

    @cached_property
    def store(self) -> Path:
        path = self.root / "s.h5"
        r = reidkit("adapt", "synthetic", "--out", path, "--ids", "4", "--shots", "1", "--height", "64", "--width", "32",
                    cwd=self.root)
        assert r.returncode == 0, r.stderr
        return path

    @cached_property
    def store_with_run(self) -> Path:
        folder = self.root / "with-run"
        folder.mkdir()
        path = folder / "s.h5"
        shutil.copy(self.store, path)
        r = reidkit("expand", path, "--variants", "1", "--limit", "2", "--name", "r", "--device", "cpu", cwd=folder)
        assert r.returncode == 0, r.stderr
        return path

    @cached_property
    def run(self) -> Path:
        """A finished 1-epoch training run of the smallest timm model (a 1.5 MB checkpoint)."""
        out = self.root / "run"
        r = reidkit("train", self.store, *TRAIN, "--epochs", "1", "--steps-per-epoch", "1", "--out", out, cwd=self.root)
        assert r.returncode == 0, r.stderr
        return out

    @cached_property
    def eval_index(self) -> np.ndarray:
        import reidkit as api

        store = api.open_store(self.store)
        return np.unique(np.concatenate([store.split("query"), store.split("gallery")])).astype(np.int64)

    @cached_property
    def cuda(self) -> bool:
        import torch

        return torch.cuda.is_available()


@dataclass
class Ctx:
    tmp: Path
    shared: Shared
    cleanups: list = field(default_factory=list)

    def store(self, name="s.h5") -> Path:
        return Path(shutil.copy(self.shared.store, self.tmp / name))

    def store_with_run(self) -> Path:
        src = self.shared.store_with_run
        shutil.copytree(src.parent, self.tmp / "st")
        return self.tmp / "st" / src.name

    def run(self) -> Path:
        return Path(shutil.copytree(self.shared.run, self.tmp / "run"))

    def write(self, name: str, data) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        return path

    def features(self, features=None, index=None, **arrays) -> Path:
        index = self.shared.eval_index if index is None else index
        features = np.random.default_rng(0).normal(size=(len(index), 8)).astype(np.float32) if features is None else features
        path = self.tmp / "f.npz"
        np.savez(path, features=features, index=index, **arrays)
        return path

    def under_a_file(self, name: str) -> Path:
        """A path inside a regular file: no one, root included, can create it."""
        self.write("blocker", b"a regular file, not a folder\n")
        return self.tmp / "blocker" / name


ROWS = []


def row(kind, *needles, marks=()):
    """Register a row: ``fn(ctx)`` builds the bad input and returns the command's arguments (or ``(args, env)``)."""
    def register(fn):
        ROWS.append(pytest.param(fn, needles, id=kind, marks=marks))
        return fn
    return register


# -- images under adapt (no --skip-bad): every accepted format, damaged ----------------------------------------------
IMAGE_ROWS = [
    ("jpg_truncated", ".jpg"), ("jpg_huge", ".jpg"), ("jpeg_empty", ".jpeg"), ("png_truncated", ".png"),
    ("png_bad_crc", ".png"), ("png_valid_crc_corrupt_data", ".png"), ("png_huge", ".png"), ("bmp_truncated", ".bmp"),
    ("bmp_huge", ".bmp"), ("gif_bytes_named_png", ".png"), ("text_named_jpg", ".jpg"),
]


def _image_row(kind, ext):
    data = bad_image({"jpeg_empty": "empty", "gif_bytes_named_png": "gif_bytes", "text_named_jpg": "text"}.get(kind, kind))
    name = f"0005_c4s2_012346_00{ext}"

    @row(f"adapt-image-{kind}", name, "--skip-bad")
    def build(c):
        base = build_market(c.tmp / "data")
        (base / "query" / name).write_bytes(data)
        return ["adapt", "market1501", "--root", base, "--out", c.tmp / "m.h5"]


for _kind, _ext in IMAGE_ROWS:
    _image_row(_kind, _ext)


# -- names and list files that do not parse, paths escaping the root, broken symlinks --------------------------------
@row("adapt-market-name-unparsed", "person5.jpg")
def _(c):
    base = build_market(c.tmp / "data")
    shutil.copy(base / "query" / "0003_c1s1_001051_00.jpg", base / "query" / "person5.jpg")
    return ["adapt", "market1501", "--root", base, "--out", c.tmp / "m.h5"]


@row("adapt-ltcc-name-unparsed", "001_c11_015999.png")
def _(c):
    base = build_ltcc(c.tmp / "data")
    shutil.copy(base / "train" / "001_1_c11_015861.png", base / "train" / "001_c11_015999.png")
    return ["adapt", "ltcc", "--root", base, "--out", c.tmp / "l.h5"]


@row("adapt-prcc-camera-not-abc", "D_cropped_rgb099.jpg")
def _(c):
    base = build_prcc(c.tmp / "data")
    shutil.copy(base / "rgb" / "train" / "001" / "A_cropped_rgb001.jpg", base / "rgb" / "train" / "001" / "D_cropped_rgb099.jpg")
    return ["adapt", "prcc", "--root", base, "--out", c.tmp / "p.h5"]


@row("adapt-msmt17-list-line-wrong-fields", "list_train.txt:4", "fields")
def _(c):
    base = build_msmt17(c.tmp / "data", extra_lines={"train": ["0001/0001_000_15_0303afternoon_0100_0.jpg"]})
    return ["adapt", "msmt17", "--root", base, "--out", c.tmp / "m.h5"]


@row("adapt-msmt17-list-path-escapes-root", "list_train.txt:4", "outside")
def _(c):
    base = build_msmt17(c.tmp / "data", extra_lines={"train": ["../../secret.jpg 1"]})
    shutil.copy(base / "train" / "0000" / "0000_000_01_0303morning_0015_0.jpg", c.tmp / "secret.jpg")
    return ["adapt", "msmt17", "--root", base, "--out", c.tmp / "m.h5"]


@row("adapt-deepchange-list-path-escapes-root", "train-set-bbox.txt:4", "outside")
def _(c):
    base = build_deepchange(c.tmp / "data")
    with open(base / "train-set-bbox.txt", "a") as fh:
        fh.write("../P0001_C3_W1_F0001.jpg,10\n")
    return ["adapt", "deepchange", "--root", base, "--out", c.tmp / "d.h5"]


@row("adapt-ccvid-list-path-escapes-root", "train.txt:3", "outside")
def _(c):
    base = build_ccvid(c.tmp / "data")
    with open(base / "train.txt", "a") as fh:
        fh.write("../../elsewhere\t001\tu1_l1_s1_c1_b1\n")
    return ["adapt", "ccvid", "--root", base, "--out", c.tmp / "c.h5"]


@row("adapt-cuhk03-split-index-outside-list", "outside the file list")
def _(c):
    base, _, _ = build_cuhk03(c.tmp / "data", extra_train=(999,))
    return ["adapt", "cuhk03", "--root", base, "--out", c.tmp / "c.h5"]


@row("adapt-symlink-loop", "0009_c1s1_000100_01.jpg", "broken symlink")
def _(c):
    base = build_market(c.tmp / "data")
    os.symlink("0009_c1s1_000100_01.jpg", base / "bounding_box_train" / "0009_c1s1_000100_01.jpg")
    return ["adapt", "market1501", "--root", base, "--out", c.tmp / "m.h5"]


@row("adapt-dangling-symlink", "0009_c1s1_000100_01.jpg", "broken symlink")
def _(c):
    base = build_market(c.tmp / "data")
    os.symlink("gone.jpg", base / "bounding_box_train" / "0009_c1s1_000100_01.jpg")
    return ["adapt", "market1501", "--root", base, "--out", c.tmp / "m.h5"]


@row("adapt-folder-symlink-loop", "gallery/loop", "broken symlink")
def _(c):
    base = build_last(c.tmp / "data")
    (base / "test" / "gallery" / "loop").symlink_to("loop")
    return ["adapt", "last", "--root", base, "--out", c.tmp / "l.h5"]


@row("adapt-root-missing", "no-such-folder")
def _(c):
    return ["adapt", "market1501", "--root", c.tmp / "no-such-folder", "--out", c.tmp / "m.h5"]


# -- stores and runs that are damaged or foreign ---------------------------------------------------------------------
@row("store-truncated", "s.h5", "truncated")
def _(c):
    path = c.store()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return ["info", path]


@row("store-not-hdf5", "s.h5", "not a reidkit store")
def _(c):
    return ["info", c.write("s.h5", "split,pid\ntrain,1\n")]


@row("store-newer-schema", "schema version 99")
def _(c):
    import h5py

    path = c.store()
    with h5py.File(path, "r+") as h5:
        h5.attrs["schema_version"] = 99
    return ["info", path]


@row("store-missing-group", "s.h5", "images")
def _(c):
    import h5py

    path = c.store()
    with h5py.File(path, "r+") as h5:
        del h5["images"]
    return ["info", path]


@row("store-missing", "nothing.h5")
def _(c):
    return ["info", c.tmp / "nothing.h5"]


@row("run-chunk-truncated", "'r'")
def _(c):
    path = c.store_with_run()
    chunk = max((p for p in path.parent.rglob("*") if p.is_file() and "runs" in p.parts), key=lambda p: p.stat().st_size)
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    return ["show", path, "--run", "r", "--out", c.tmp / "sheet.png"]


# -- settings: YAML syntax, YAML types, every key=value option, numbers out of range ---------------------------------
@row("expand-yaml-syntax", "bad.yaml")
def _(c):
    return ["expand", c.store(), "--config", c.write("bad.yaml", "variants: [1, 2\nseed: 0\n")]


@row("train-yaml-syntax", "bad.yaml")
def _(c):
    return ["train", c.store(), "--config", c.write("bad.yaml", "epochs: {1\n"), "--out", c.tmp / "run"]


@row("expand-yaml-variants-abc", "variants", "bad.yaml")
def _(c):
    return ["expand", c.store(), "--config", c.write("bad.yaml", "variants: abc\n")]


@row("train-yaml-epochs-abc", "'epochs'", "bad.yaml")
def _(c):
    return ["train", c.store(), "--config", c.write("bad.yaml", "epochs: abc\n"), "--out", c.tmp / "run"]


@row("train-yaml-ids-per-batch-list", "'ids_per_batch'", "bad.yaml")
def _(c):
    return ["train", c.store(), "--config", c.write("bad.yaml", "ids_per_batch: [1, 2]\n"), "--out", c.tmp / "run"]


@row("user-config-unknown-key", "site.yaml", "frobnicate")
def _(c):
    return ["expand", c.store(), "--variants", "1"], {"REIDKIT_CONFIG": str(c.write("site.yaml", "expand:\n  frobnicate: 1\n"))}


@row("expand-set-wrong-type", "'jitter'", "abc")
def _(c):
    return ["expand", c.store(), "--set", "jitter=abc"]


@row("expand-set-not-key-value", "jitter")
def _(c):
    return ["expand", c.store(), "--set", "jitter"]


@row("expand-prompt-set-wrong-type", "'seed'", "abc")
def _(c):
    return ["expand", c.store(), "--prompt-set", "seed=abc"]


@row("expand-mask-set-wrong-type", "'iterations'", "abc")
def _(c):
    return ["expand", c.store(), "--masker", "heuristic", "--mask-set", "iterations=abc"]


@row("expand-filter-setting-wrong-type", "'min_std'", "abc")
def _(c):
    return ["expand", c.store(), "--filter", "sanity:min_std=abc"]


@row("mask-mask-set-out-of-range", "'border'", "0.9")
def _(c):
    return ["mask", c.store(), "--masker", "heuristic", "--mask-set", "border=0.9"]


@row("train-epochs-negative", "--epochs", "-2")
def _(c):
    return ["train", c.store(), *TRAIN, "--epochs", "-2", "--out", c.tmp / "run"]


@row("train-height-zero", "--height", "0")
def _(c):
    args = [a for a in TRAIN]
    del args[args.index("--height"):args.index("--height") + 2]
    return ["train", c.store(), *args, "--height", "0", "--out", c.tmp / "run"]


# -- unknown plugin names, and a plugin that breaks its contract ------------------------------------------------------
for _option, _kind in (("--generator", "generator"), ("--prompts", "prompt source"), ("--masker", "masker"),
                       ("--filter", "filter")):
    def _unknown(option=_option, kind=_kind):
        @row(f"unknown-{kind.replace(' ', '-')}", "nosuch", kind)
        def build(c):
            return ["expand", c.store(), option, "nosuch"]

    _unknown()


@row("unknown-mask-masker", "nosuch", "masker")
def _(c):
    return ["mask", c.store(), "--masker", "nosuch"]


@row("unknown-adapter", "nosuch", "adapter")
def _(c):
    return ["adapt", "nosuch", "--out", c.tmp / "x.h5"]


@row("unknown-strategy", "nosuch", "strategy")
def _(c):
    return ["train", c.store(), *TRAIN, "--strategy", "nosuch", "--out", c.tmp / "run"]


@row("unknown-backbone", "nosuchnet")
def _(c):
    return ["train", c.store(), *[a if a != "test_resnet" else "nosuchnet" for a in TRAIN], "--out", c.tmp / "run"]


@row("plugin-missing-required-method", "incomplete")
def _(c):
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("reidkit-incomplete")
    except PackageNotFoundError:
        pytest.skip("tests/plugin_packages/reidkit-incomplete is not installed in this environment")
    return ["expand", c.store(), "--generator", "incomplete"]


# -- features for eval ----------------------------------------------------------------------------------------------
@row("eval-features-nan", "features", "NaN")
def _(c):
    index = c.shared.eval_index
    features = np.ones((len(index), 8), np.float32)
    features[3, 2] = np.nan
    return ["eval", c.store(), "--features", c.features(features, index)]


@row("eval-features-wrong-rows", "features", "rows")
def _(c):
    index = c.shared.eval_index
    return ["eval", c.store(), "--features", c.features(np.ones((len(index) - 3, 8), np.float32), index)]


@row("eval-features-pickled-object", "f.npz")
def _(c):
    index = c.shared.eval_index
    planted = np.empty(len(index), dtype=object)
    planted[:] = [Planted(c.tmp / "unpickled") for _ in index]
    return ["eval", c.store(), "--features", c.features(planted, index)]


@row("eval-features-missing-gallery", "features", "gallery")
def _(c):
    import reidkit as api

    query = np.asarray(api.open_store(c.shared.store).split("query"), np.int64)
    return ["eval", c.store(), "--features", c.features(np.ones((len(query), 8), np.float32), query)]


# -- checkpoints: wrong shapes, a planted pickle ----------------------------------------------------------------------
def _wrong_shapes(run: Path):
    """The largest tensor of every weights file replaced by a 3 x 5 one; the file's metadata (epoch, ...) kept."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    for path in [run / "model.safetensors", *run.glob("checkpoints/*/model.safetensors")]:
        with safe_open(str(path), "np") as fh:
            tensors, metadata = {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()
        name = max(tensors, key=lambda k: tensors[k].size)
        tensors[name] = np.zeros((3, 5), tensors[name].dtype)
        save_file(tensors, str(path), metadata=metadata)


@row("train-resume-checkpoint-wrong-shapes", "model.safetensors", "size mismatch")
def _(c):
    run = c.run()
    _wrong_shapes(run)
    return ["train", c.store(), "--resume", "--out", run, "--epochs", "2"]


@row("train-resume-state-is-a-planted-pickle", "state.pt", "not a reidkit training state")
def _(c):
    run = c.run()
    for state in run.glob("checkpoints/*/state.pt"):
        state.write_bytes(pickle.dumps({"epoch": 1, "payload": Planted(c.tmp / "unpickled")}))
    return ["train", c.store(), "--resume", "--out", run, "--epochs", "2"]


@row("eval-checkpoint-wrong-shapes", "model.safetensors")
def _(c):
    run = c.run()
    _wrong_shapes(run)
    return ["eval", c.store(), "--checkpoint", run, "--device", "cpu"]


# -- a GPU asked for where there is none ------------------------------------------------------------------------------
def _no_gpu(c):
    if c.shared.cuda:
        pytest.skip("this machine has a GPU: --device cuda is valid here")


@row("expand-device-cuda-without-gpu", "cuda")
def _(c):
    _no_gpu(c)
    return ["expand", c.store(), "--variants", "1", "--device", "cuda"]


@row("train-device-cuda-without-gpu", "cuda")
def _(c):
    _no_gpu(c)
    return ["train", c.store(), *[a if a != "cpu" else "cuda" for a in TRAIN], "--out", c.tmp / "run"]


@row("eval-device-cuda-without-gpu", "cuda")
def _(c):
    _no_gpu(c)
    return ["eval", c.store(), "--features", c.features(), "--device", "cuda"]


# -- output locations that cannot be written ---------------------------------------------------------------------------
@row("adapt-out-in-read-only-folder", "--out", "ro")
def _(c):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions (the under-a-file rows cover an unwritable --out for root)")
    folder = c.tmp / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    c.cleanups.append(lambda: folder.chmod(0o755))
    return ["adapt", "synthetic", "--out", folder / "x.h5", "--ids", "4"]


@row("adapt-out-under-a-file", "--out", "blocker")
def _(c):
    return ["adapt", "synthetic", "--out", c.under_a_file("x.h5"), "--ids", "4"]


@row("adapt-out-name-too-long", "bytes")
def _(c):
    return ["adapt", "synthetic", "--out", c.tmp / ("s" * 300 + ".h5"), "--ids", "4"]


@row("train-out-under-a-file", "blocker")
def _(c):
    return ["train", c.store(), *TRAIN, "--epochs", "1", "--out", c.under_a_file("run")]


@row("show-out-under-a-file", "--out", "blocker")
def _(c):
    return ["show", c.store_with_run(), "--run", "r", "--out", c.under_a_file("sheet.png")]


@row("info-preview-under-a-file", "p.png")
def _(c):
    return ["info", c.store(), "--preview", c.under_a_file("p.png")]


# -- the test ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return Shared(tmp_path_factory.mktemp("catalogue-shared"))


def test_catalogue_has_at_least_40_kinds():
    assert len(ROWS) >= 40 and len({p.id for p in ROWS}) == len(ROWS)


@pytest.mark.parametrize("build, needles", ROWS)
def test_bad_input(build, needles, shared, tmp_path):
    ctx = Ctx(tmp_path / "row", shared)
    ctx.tmp.mkdir()
    try:
        made = build(ctx)
        args, env = made if isinstance(made, tuple) else (made, None)
        before = snapshot(ctx.tmp)
        r = reidkit(*args, cwd=ctx.tmp, env=env)
        after = snapshot(ctx.tmp)
    finally:
        for undo in ctx.cleanups:
            undo()
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert CATCH_ALL not in lines[0], lines[0]  # an anticipated error, not an exception nobody checked for
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert sorted(set(after) - set(before)) == [], "new paths"
    assert sorted(set(before) - set(after)) == [], "removed paths"
    assert after == before, "changed files"
