"""Disk full: a store write (adapt), a run chunk write (expand, recolor) and a training checkpoint that fail for lack
of space leave the previous state intact, say so in one line (exit 1, no traceback), and the same command rerun
with space ends with exactly the uninterrupted result (bytes).

Two ways to run out of space: always, a subprocess that makes one low-level write raise ``OSError(ENOSPC)`` after
N calls and then runs ``reidkit.cli.main``; and, where this process may mount (root, ``mount -t tmpfs`` works), a
real size-limited tmpfs, grown with ``mount -o remount`` for the rerun. Without root the tmpfs variants are skipped.
(Store and chunk writes check the free space before each batch: HDF5 can crash with SIGSEGV instead of raising when
a variable-length write meets a full disk, so on a real file system they are refused just before that point.)
"""
import os
import shutil
import subprocess
import sys

import pytest

from reidkit.store.atomic import SPACE_MARGIN
from reidkit.training.checkpoint import checkpoint_dirs
from tests.reliability.crash import AWAY, EXPAND, SMALL_WORLD, WORLD, env, h5_content, run, train_args
from tests.reliability.test_crash_trials import _open_every_part, _run_items

EPOCHS = 2
TRAIN = train_args("resnet10t", EPOCHS)

# Runs reidkit's main with one low-level write made to fail for lack of space after FAULT_AFTER successful calls.
FAULTY = r"""
import errno, os, sys
target, after = os.environ["FAULT_AT"], int(os.environ["FAULT_AFTER"])
calls = [0]

def faulty(owner, attr):
    original = getattr(owner, attr)

    def write(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(*args, **kwargs)

    setattr(owner, attr, write)

if target == "h5-write":
    import h5py
    faulty(h5py.Dataset, "__setitem__")
elif target == "os.replace":
    faulty(os, "replace")
elif target == "torch.save":
    import torch
    faulty(torch, "save")
from reidkit.cli import main
main()
"""


def run_with_fault(args, at: str, after: int) -> subprocess.CompletedProcess:
    """``reidkit ARGS`` in a subprocess whose ``at`` write fails with ENOSPC after ``after`` calls."""
    return subprocess.run([sys.executable, "-c", FAULTY, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**env(), "FAULT_AT": at, "FAULT_AFTER": str(after)}, cwd=AWAY)


def run_console(args) -> subprocess.CompletedProcess:
    from tests.helpers import reidkit_exe

    return subprocess.run([reidkit_exe(), *map(str, args)], capture_output=True, text=True, timeout=600, env=env())


def assert_disk_full_line(proc, writing, advice):
    """Exit 1, no traceback, and one error line, the last (progress lines of the work done may come before it)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [x for x in lines if x.startswith("Error")] == lines[-1:], proc.stderr
    line = lines[-1]
    assert line.startswith(f"Error: no space left on device writing {writing}"), line
    assert f": free space and rerun the same command{advice}" in line, line


# -- a real size-limited file system (root only) -----------------------------------------------------------------
class Tmpfs:
    def __init__(self, path):
        self.path = path

    def resize(self, size: int):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """``make(size)``: a tmpfs of ``size`` bytes at tmp_path/fs (skipped where this process cannot mount one)."""
    mounted = []

    def make(size: int) -> Tmpfs:
        where = tmp_path / "fs"
        where.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a size-limited tmpfs needs root and mount")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(where)
        return Tmpfs(where)

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# -- adapt: a store write ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapt_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("df-adapt")
    run(["adapt", "synthetic", "--out", d / "w.h5", *WORLD])
    return h5_content(d / "w.h5"), (d / "w.h5").stat().st_size


@pytest.mark.parametrize("at, after", [("h5-write", 1), ("os.replace", 0)], ids=["mid-write", "at-publish"])
def test_adapt_out_of_space_keeps_the_previous_store(adapt_reference, tmp_path, at, after):
    reference, _ = adapt_reference
    out = tmp_path / "w.h5"
    run(["adapt", "synthetic", "--out", out, *SMALL_WORLD])  # the previous state: a smaller store under that name
    before = out.read_bytes()
    args = ["adapt", "synthetic", "--out", out, "--force", *WORLD]
    failed = run_with_fault(args, at, after)
    assert_disk_full_line(failed, out, " (no store was written")
    assert out.read_bytes() == before  # the previous store, untouched
    assert os.listdir(tmp_path) == ["w.h5"]  # no partial file, no lock file
    h5_content(out)  # it opens and reads
    run(args)
    assert h5_content(out) == reference


def test_adapt_on_a_full_file_system(adapt_reference, tmpfs):
    reference, size = adapt_reference
    fs = tmpfs(SPACE_MARGIN + size // 2)  # room for the smaller store, not for the larger one
    out = fs.path / "w.h5"
    run(["adapt", "synthetic", "--out", out, *SMALL_WORLD])
    before = out.read_bytes()
    args = ["adapt", "synthetic", "--out", out, "--force", *WORLD]
    assert_disk_full_line(run_console(args), out, " (no store was written")
    assert out.read_bytes() == before
    assert os.listdir(fs.path) == ["w.h5"]
    fs.resize(SPACE_MARGIN + 4 * size)
    run(args)
    assert h5_content(out) == reference


# -- expand (recolor): a run chunk write --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def expand_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("df-expand")
    store = d / "w.h5"
    run(["adapt", "synthetic", "--out", store, *SMALL_WORLD])
    ref = tmp_path_factory.mktemp("df-expand-ref") / "w.h5"
    shutil.copy(store, ref)
    run(["expand", ref, *EXPAND])
    items = _run_items(ref)
    assert len(items) > 20
    return store, items, folder_bytes(ref.parent / "w.h5.parts")


def _check_expand_failure(proc, store, reference):
    assert_disk_full_line(proc, store.parent / "w.h5.parts" / "runs" / "r" / "chunks", " to resume")
    _open_every_part(store)
    published = _run_items(store)
    assert 0 < len(published) < len(reference)  # it failed part way, after some chunks
    assert all(reference[k] == v for k, v in published.items())  # what was published is whole and final
    hidden = [p for p in (store.parent / "w.h5.parts").rglob(".*") if ".partial-" in p.name]
    assert hidden == []  # the chunk being written is gone
    assert not [n for n in os.listdir(store.parent) if n.endswith(".lock")]


def test_expand_out_of_space_keeps_finished_chunks_and_resumes(expand_world, tmp_path):
    source, reference, _ = expand_world
    store = tmp_path / "w.h5"
    shutil.copy(source, store)
    args = ["expand", store, *EXPAND]
    _check_expand_failure(run_with_fault(args, "h5-write", 3), store, reference)
    run(args)
    _open_every_part(store)
    assert _run_items(store) == reference


def test_expand_on_a_full_file_system(expand_world, tmpfs):
    source, reference, parts_size = expand_world
    fs = tmpfs(source.stat().st_size + SPACE_MARGIN + parts_size // 2)  # room for about half of the run
    store = fs.path / "w.h5"
    shutil.copy(source, store)
    args = ["expand", store, *EXPAND]
    _check_expand_failure(run_console(args), store, reference)
    fs.resize(SPACE_MARGIN + 4 * (source.stat().st_size + parts_size))
    run(args)
    _open_every_part(store)
    assert _run_items(store) == reference


# -- train: a checkpoint -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("df-train")
    store = d / "w.h5"
    run(["adapt", "synthetic", "--out", store, *SMALL_WORLD])
    ref = d / "ref"
    run(["train", store, *TRAIN, "--out", ref])
    sizes = {"checkpoint": folder_bytes(checkpoint_dirs(ref)[-1]), "model": (ref / "model.safetensors").stat().st_size}
    return store, (ref / "model.safetensors").read_bytes(), sizes


def _check_train_failure(proc, out):
    """Failed writing epoch 2's checkpoint: epoch 1's is the latest, whole, and the published weights load."""
    from safetensors.torch import load_file

    assert_disk_full_line(proc, out, " with --resume")
    assert [d.name for d in checkpoint_dirs(out)] == ["epoch-0001"]
    assert {"model.safetensors", "state.pt", "log.csv"} <= {p.name for p in checkpoint_dirs(out)[0].iterdir()}
    load_file(out / "model.safetensors")
    assert not (out.parent / f".{out.name}.lock").exists()


def _resume_to_reference(args, out, reference):
    run(args + ["--resume"])
    assert (out / "model.safetensors").read_bytes() == reference
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + EPOCHS, rows


def test_train_out_of_space_keeps_the_last_checkpoint_and_resumes(train_world, tmp_path):
    store, reference, _ = train_world
    out = tmp_path / "run"
    args = ["train", store, *TRAIN, "--out", out]
    _check_train_failure(run_with_fault(args, "torch.save", 1), out)  # epoch 1's state saved, epoch 2's not
    _resume_to_reference(args, out, reference)


def test_train_on_a_full_file_system(train_world, tmpfs):
    """Room for the first checkpoint and the published weights, and half of the second checkpoint: torch's zip
    writer fails without an errno there, and the command still says the disk is full."""
    source, reference, sizes = train_world
    fs = tmpfs(source.stat().st_size + sizes["checkpoint"] + sizes["model"] + sizes["checkpoint"] // 2)
    store = fs.path / "w.h5"
    shutil.copy(source, store)
    out = fs.path / "run"
    args = ["train", store, *TRAIN, "--out", out]
    _check_train_failure(run_console(args), out)
    fs.resize(4 * (source.stat().st_size + sizes["checkpoint"] + sizes["model"]))
    _resume_to_reference(args, out, reference)
