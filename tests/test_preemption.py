"""SIGTERM, as a batch scheduler ends a job: train finishes the step, checkpoints at it, prints one resume line and
exits 143; --resume then reaches exactly the weights of the run that was never stopped. expand and adapt stop at
their safe points with the same kind of line."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.train_helpers import make_store

pytestmark = pytest.mark.slow

# The harness only chooses when the signal comes: a hook sends the process a real SIGTERM after a chosen step.
TERM_AT = """
import os, signal, sys
from reidkit.training import hooks

class TermAt(hooks.Hook):
    def __init__(self, epoch, step):
        self.at = (epoch, step)
    def after_step(self):
        t = self.trainer
        if (t.stats.epoch, t.stats.steps) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)

built = hooks.build_hooks
hooks.build_hooks = lambda *a, **k: built(*a, **k) + [TermAt(int(os.environ["TERM_EPOCH"]), int(os.environ["TERM_STEP"]))]
import reidkit.training.trainer as trainer
trainer.build_hooks = hooks.build_hooks
from reidkit.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("world"))


def _train_args(world, out):
    return ["train", str(world), "--plugin", "cal", "--backbone", "resnet18", "--weights", "none", "--batch", "2,2",
            "--height", "64", "--width", "32", "--num-workers", "0", "--device", "cpu", "--epochs", "2",
            "--steps-per-epoch", "6", "--out", str(out)]


def _losses(out):
    rows = list(csv.DictReader((out / "log.csv").open()))
    return [{k: v for k, v in r.items() if "loss" in k or k in ("epoch", "lr", "images")} for r in rows]


def test_sigterm_mid_epoch_checkpoints_at_the_step_and_resume_is_exact(world, tmp_path):
    whole = tmp_path / "whole"
    r = subprocess.run([sys.executable, "-m", "reidkit.cli", *_train_args(world, whole)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    cut = tmp_path / "cut"
    env = {**os.environ, "TERM_EPOCH": "1", "TERM_STEP": "3"}  # epoch 2 (0-based 1), after its third step
    r = subprocess.run([sys.executable, "-c", TERM_AT, *_train_args(world, cut)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 143, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "epoch" in ln and "SIGTERM" in ln]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "epoch 2, step 3" in lines[0] and f"reidkit train {world.resolve()} --out {cut} --resume" in lines[0]
    folders = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert folders == ["epoch-0001", "epoch-0001-step-000003"]
    # eval keeps reading the last whole epoch's weights
    assert (cut / "model.safetensors").read_bytes() == (cut / "checkpoints" / "epoch-0001" / "model.safetensors").read_bytes()
    assert len(_losses(cut)) == 1

    r = subprocess.run([sys.executable, "-m", "reidkit.cli", "train", str(world), "--out", str(cut), "--resume"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert _losses(cut) == _losses(whole)  # the stopped epoch's row too: its loss sums rode in the checkpoint


def test_sigterm_before_the_first_checkpoint_resumes_inside_epoch_one(world, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = lambda out: [a if a != "2" else "1" for a in _train_args(world, out)]  # noqa: E731 - one epoch
    assert subprocess.run([sys.executable, "-m", "reidkit.cli", *args(whole)], capture_output=True, cwd=tmp_path).returncode == 0
    env = {**os.environ, "TERM_EPOCH": "0", "TERM_STEP": "2"}
    r = subprocess.run([sys.executable, "-c", TERM_AT, *args(cut)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 143, r.stderr
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["epoch-0000-step-000002"]
    assert not (cut / "model.safetensors").exists()  # no whole epoch yet: nothing for eval
    r = subprocess.run([sys.executable, "-m", "reidkit.cli", "train", str(world), "--out", str(cut), "--resume"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()


def test_sigterm_stops_expand_with_one_line_and_a_rerun_finishes(world, tmp_path):
    import shutil

    store = tmp_path / "w.h5"
    shutil.copy(world, store)
    args = [sys.executable, "-m", "reidkit.cli", "expand", str(store), "--generator", "recolor", "--variants", "200"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    parts = tmp_path / "w.h5.parts"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not any(p.is_file() for p in parts.rglob("*")):
        time.sleep(0.05)  # until the run has started writing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip(f"expand finished before the signal came on this machine: {err[-300:]}")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("Stopped by SIGTERM: finished work is kept")
    assert "Traceback" not in err
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
