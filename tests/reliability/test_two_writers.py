"""Two writers: a second `reidkit train` into a run folder, or a second `reidkit mask` of a mask set, is refused in one
line while the first runs; the first then finishes whole.

The first process runs reidkit's main with its work held at a gate (a file the test creates), so the second always
arrives while the first holds its lock, without any timing.
"""
import subprocess
import sys
import time

import reidkit
from reidkit.store.lock import lock_path
from tests.helpers import one_error_line
from tests.reliability.crash import AWAY, env, run

SMALL_WORLD = ("--ids", "4", "--outfits", "2", "--cameras", "2", "--height", "64", "--width", "32")
TRAIN = ("--plugin", "baseline", "--backbone", "resnet10t", "--weights", "none", "--batch", "2,2", "--height", "32",
         "--width", "16", "--num-workers", "0", "--device", "cpu", "--amp", "none", "--epochs", "1",
         "--steps-per-epoch", "1")

# reidkit's main with MODULE.ATTR (the command's work, called once its lock is held) waiting for the file GATE.
GATED = r"""
import importlib, os, sys, time
module, attr = os.environ["GATE_AT"].rsplit(".", 1)
owner = importlib.import_module(module)
work = getattr(owner, attr)

def gated(*args, **kwargs):
    while not os.path.exists(os.environ["GATE"]):
        time.sleep(0.02)
    return work(*args, **kwargs)

setattr(owner, attr, gated)
from reidkit.cli import main
main()
"""


def start_gated(args, gate_at: str, gate):
    return subprocess.Popen([sys.executable, "-c", GATED, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**env(), "GATE_AT": gate_at, "GATE": str(gate)}, cwd=AWAY)


def wait_for_lock(proc, lock):
    """Until ``proc`` holds ``lock`` (the lock file names its pid, written once the flock is taken)."""
    while True:
        try:
            if lock.read_text() == str(proc.pid):
                return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the first writer ended before taking its lock: {proc.communicate()}")
        time.sleep(0.02)


def run_console(args):
    from tests.helpers import reidkit_exe

    return subprocess.run([reidkit_exe(), *map(str, args)], capture_output=True, text=True, timeout=600, env=env())


def finish(proc, gate):
    gate.write_text("go")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def test_second_train_into_the_same_run_folder_is_refused(tmp_path):
    store = tmp_path / "w.h5"
    run(["adapt", "synthetic", "--out", store, *SMALL_WORLD])
    out, gate = tmp_path / "run", tmp_path / "gate"
    args = ["train", store, *TRAIN, "--out", out]
    first = start_gated(args, "reidkit.training.engine.Trainer", gate)  # built inside engine.train's lock
    try:
        wait_for_lock(first, lock_path(out))
        second = run_console(args + ["--seed", "3"])
        line = one_error_line(second)
        assert line == (f"Error: training run {out} is being written by another reidkit process (pid {first.pid}); "
                        "expected one writer at a time (wait for it to finish, or stop it)")
        assert not out.exists()  # the second wrote nothing (the first is still at its gate)
        finish(first, gate)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and (out / "model.safetensors").is_file() and (out / "checkpoints" / "epoch-0001").is_dir()
    assert not lock_path(out).exists()


def _masks(store_path, name):
    ms = reidkit.open_store(store_path).mask_sets()[name]
    return {int(i): ms.label_map(int(i)).tobytes() for i in ms.index}


def test_second_mask_of_the_same_mask_set_is_refused(tmp_path):
    store = tmp_path / "w.h5"
    run(["adapt", "synthetic", "--out", store, *SMALL_WORLD])
    gate = tmp_path / "gate"
    args = ["mask", store, "--masker", "heuristic", "--split", "all", "--batch-size", "4"]
    first = start_gated(args, "reidkit.generation.masking._ensure_computed", gate)  # inside ensure_masks' lock
    lock = lock_path(store, "masks.heuristic")
    try:
        wait_for_lock(first, lock)
        second = run_console(args)
        line = one_error_line(second)
        assert line == (f"Error: mask set 'heuristic' of {store} is being written by another reidkit process "
                        f"(pid {first.pid}); expected one writer at a time (wait for it to finish, or stop it)")
        other = run_console(args + ["--name", "other"])  # another mask set of the same store: written side by side
        assert other.returncode == 0, other.stderr
        assert not (tmp_path / "w.h5.parts" / "masks" / "heuristic").exists()  # the refused one wrote nothing
        finish(first, gate)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    masks = _masks(store, "heuristic")
    assert sorted(masks) == list(range(len(reidkit.open_store(store))))  # the first finished whole: every image
    assert masks == _masks(store, "other")  # the same masker and settings: the same label maps
    assert not lock.exists()
