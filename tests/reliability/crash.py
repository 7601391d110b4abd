"""Crash trials: run the installed ``reidkit`` as a subprocess, SIGKILL it at a seeded random moment, then check.

Trials per command: ``REIDKIT_CRASH_TRIALS`` (default ``DEFAULT_TRIALS``); trial 0 of each command always
runs, the others are marked ``slow`` (``-m "not slow"`` keeps the fast subset).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import reidkit_exe

DEFAULT_TRIALS = 3
SEED = 20261126


def trials(default: int = DEFAULT_TRIALS):
    """pytest params ``(k, N)`` for k < N (N: ``REIDKIT_CRASH_TRIALS`` or ``default``): trial 0 always runs,
    later ones are marked slow."""
    count = max(1, int(os.environ.get("REIDKIT_CRASH_TRIALS") or default))
    return [pytest.param((k, count), marks=() if k == 0 else pytest.mark.slow, id=f"trial{k}") for k in range(count)]


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "REIDKIT_PROGRESS_SECONDS": "600"}


def run(args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run([reidkit_exe(), *map(str, args)], capture_output=True, text=True, env=env(), cwd=cwd, timeout=timeout)
    assert r.returncode == 0, f"reidkit {' '.join(map(str, args))}: {r.stderr}"
    return r


def _start(args, cwd=None):
    return subprocess.Popen([reidkit_exe(), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env(), cwd=cwd)


def _wait_for(proc, started, poll=0.005):
    """Wait until ``started()`` is true (the command began writing) or the process ended."""
    while proc.poll() is None and not started():
        time.sleep(poll)


def timed_run(args, started, cwd=None) -> float:
    """Run to completion; seconds from the moment ``started()`` turned true to the end: the window kills fall in."""
    proc = _start(args, cwd)
    _wait_for(proc, started)
    begin = time.monotonic()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"reidkit {' '.join(map(str, args))}: {err.decode()}"
    return time.monotonic() - begin


def kill_at(args, started, seconds: float, cwd=None) -> int | None:
    """Start ``reidkit ARGS``, SIGKILL it ``seconds`` after ``started()`` turned true; its exit code (None: killed)."""
    proc = _start(args, cwd)
    try:
        _wait_for(proc, started)
        proc.wait(timeout=seconds)
        return proc.returncode  # finished before the kill
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def kill_moment(command: str, trial: tuple[int, int], window: float) -> float:
    """Trial k of N kills at a seeded moment in the k-th of N equal slices of [0, 1.1 x window] (the window: how
    long the uninterrupted run wrote), so a few trials spread over the whole write. Past the window on purpose:
    some trials kill while the result is published, or after the end."""
    k, n = trial
    fraction = (k + random.Random(f"{SEED}-{command}-{k}-{n}").random()) / n
    return 1.1 * fraction * window


def h5_content(path: Path, skip_attrs=("created",)) -> dict:
    """Every dataset (bytes) and attribute of an HDF5 file, by name: what 'the same result' means for a store."""
    import h5py

    out = {}
    with h5py.File(path, "r") as h5:
        def visit(name, obj):
            for k, v in obj.attrs.items():
                if k not in skip_attrs:
                    out[f"{name}@{k}"] = v.tobytes() if isinstance(v, np.ndarray) else v
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if obj.dtype.kind == "O":
                    out[name] = [bytes(x) if isinstance(x, (bytes, np.ndarray)) else x for x in
                                 (d.tobytes() if isinstance(d, np.ndarray) else d for d in data)]
                else:
                    out[name] = data.tobytes()

        for k, v in h5.attrs.items():
            if k not in skip_attrs:
                out[f"/@{k}"] = v
        h5.visititems(visit)
    return out


def visible_files(folder: Path) -> list[str]:
    """Files a user (or a reader) sees: hidden partial and lock files excluded."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


# the worlds, runs and trainings the reliability tests interrupt (small enough for CI, big enough for several chunks)
WORLD = ("--ids", "24", "--outfits", "3", "--cameras", "3", "--shots", "2", "--height", "64", "--width", "32")
SMALL_WORLD = ("--ids", "8", "--outfits", "2", "--cameras", "2", "--height", "64", "--width", "32")
EXPAND = ("--variants", "3", "--chunk-size", "4", "--batch-size", "4", "--name", "r", "--seed", "5")


def train_args(backbone: str, epochs: int) -> tuple:
    """A tiny CPU training run: one step per epoch, no workers, no downloads."""
    return ("--plugin", "baseline", "--backbone", backbone, "--weights", "none", "--batch", "2,2", "--height", "32",
            "--width", "16", "--num-workers", "0", "--device", "cpu", "--amp", "none", "--epochs", str(epochs),
            "--steps-per-epoch", "1")

# a working folder away from the source tree: `python -c` puts the cwd first on sys.path, and the source tree's
# reidkit/ (without its plugins, which setuptools maps in from plugins/ and adapters/) would shadow the install
AWAY = __import__("tempfile").gettempdir()
