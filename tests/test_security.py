"""Security: nothing runs code from user files, and nothing reaches the network unless a hub id is used.

Each loader is handed a file that executes code when unpickled (or a YAML python tag); the real
console script runs on it and must fail in one line without the code ever running (no marker
file). A source check keeps the unsafe loading calls out of reidkit, its plugins and adapters.
The demo runs with every outgoing connection refused and recorded: the record must stay empty.
"""
from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path

import pytest

from tests.helpers import make_world, run_console

ROOT = Path(__file__).resolve().parent.parent


class Planted:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def plant_pickle(path: Path, marker: Path, torch_format: bool = True) -> Path:
    """``path`` holding the planted object: as torch.save writes it (a zip with data.pkl), or a bare pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if torch_format:
        import torch

        torch.save({"model": Planted(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Planted(marker)))
    return path


def plant_yaml(path: Path, marker: Path) -> Path:
    path.write_text(f"epochs: !!python/object/apply:os.system [\"touch '{marker}'\"]\n"
                    f"lr: !!python/object/apply:os.system [\"touch '{marker}'\"]\n")
    return path


def test_planted_pickle_really_runs_code_when_unpickled(tmp_path):
    """The planted files are live: unpickling one (what an unsafe loader would do) creates the marker."""
    marker = tmp_path / "marker"
    pickle.loads(plant_pickle(tmp_path / "x.pkl", marker, torch_format=False).read_bytes())
    assert marker.exists()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)


TRAIN = ("--plugin", "baseline", "--backbone", "resnet10t", "--weights", "none", "--height", "32", "--width", "16",
         "--steps-per-epoch", "1", "--num-workers", "0", "--ids-per-batch", "2", "--images-per-id", "2", "--device", "cpu")


@pytest.fixture(scope="module")
def trained_run(world, tmp_path_factory):
    """A finished one-epoch training run (the real train command)."""
    out = tmp_path_factory.mktemp("run") / "run"
    proc = run_console("train", world, *TRAIN, "--epochs", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def refused(proc, marker: Path, about: str | None = None) -> str:
    """The command failed in one line (naming ``about`` when given) and the planted code never ran."""
    assert not marker.exists(), "code from a user file was executed"
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]  # progress lines may precede it
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]), proc.stderr
    assert about is None or about in errors[0], errors[0]  # it failed on the planted file, not on something else
    return errors[0]


def test_resume_never_unpickles_code_from_state_pt(world, trained_run, tmp_path):
    marker = tmp_path / "marker"
    run = copy_run(trained_run, tmp_path / "run")
    states = list(run.glob("checkpoints/*/state.pt"))
    assert states, "the run layout changed: no checkpoints/*/state.pt to plant"
    for state in states:
        plant_pickle(state, marker)
    proc = run_console("train", world, *TRAIN, "--epochs", "2", "--out", run, "--resume")
    refused(proc, marker)


@pytest.mark.parametrize("torch_format", [True, False], ids=["torch-zip", "bare-pickle"])
def test_eval_checkpoint_weights_are_never_unpickled(world, trained_run, tmp_path, torch_format):
    marker = tmp_path / "marker"
    run = copy_run(trained_run, tmp_path / "run")
    for weights in [run / "model.safetensors", *run.glob("checkpoints/*/model.safetensors")]:
        plant_pickle(weights, marker, torch_format)
    for name in ("pytorch_model.bin", "model.pt", "model.pth", "checkpoint.pth.tar"):  # names other tools load
        plant_pickle(run / name, marker, torch_format)
    refused(run_console("eval", world, "--checkpoint", run), marker)
    refused(run_console("export", "--checkpoint", run, "--out", tmp_path / "m.onnx"), marker)


def test_expand_filter_checkpoint_is_never_unpickled(world, trained_run, tmp_path):
    marker = tmp_path / "marker"
    run = copy_run(trained_run, tmp_path / "run")
    plant_pickle(run / "model.safetensors", marker)
    proc = run_console("expand", world, "--generator", "recolor", "--prompts", "templates", "--masker", "store",
                       "--variants", "1", "--limit", "2", "--name", "evil",
                       "--filter", f"reid-confidence:checkpoint={run}")
    refused(proc, marker)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_eval_features_files_are_never_unpickled(world, tmp_path, suffix):
    import numpy as np

    marker = tmp_path / "marker"
    path = tmp_path / f"features{suffix}"
    objects = np.empty(2, dtype=object)
    objects[:] = [Planted(marker), Planted(marker)]
    if suffix == ".npy":
        np.save(path, objects, allow_pickle=True)
    else:
        np.savez(path, features=objects, index=objects)
    refused(run_console("eval", world, "--features", path), marker)


def test_backbone_weights_and_init_from_are_never_unpickled(world, tmp_path):
    marker = tmp_path / "marker"
    evil = plant_pickle(tmp_path / "start.safetensors", marker)
    refused(run_console("train", world, *TRAIN, "--epochs", "1", "--weights", evil, "--out", tmp_path / "a"), marker, evil.name)
    export = tmp_path / "export"
    plant_pickle(export / "backbone.safetensors", marker)
    plant_yaml(export / "settings.yaml", marker)
    args = [a for a in TRAIN if a not in ("--weights", "none")]
    refused(run_console("train", world, *args, "--epochs", "1", "--init-from", export, "--out", tmp_path / "b"), marker, "export")


def test_yaml_python_tags_are_never_constructed(world, trained_run, tmp_path):
    marker = tmp_path / "marker"
    evil = plant_yaml(tmp_path / "evil.yaml", marker)
    refused(run_console("train", world, *TRAIN, "--epochs", "1", "--config", evil, "--out", tmp_path / "a"), marker, "evil.yaml")
    refused(run_console("expand", world, "--generator", "recolor", "--config", evil), marker)
    # $REIDKIT_CONFIG: user and site defaults
    refused(run_console("train", world, *TRAIN, "--epochs", "1", "--out", tmp_path / "b", env={"REIDKIT_CONFIG": str(evil)}), marker, "evil.yaml")
    # a run folder's own config.yaml (eval reads it to rebuild the model)
    run = copy_run(trained_run, tmp_path / "run")
    plant_yaml(run / "config.yaml", marker)
    refused(run_console("eval", world, "--checkpoint", run), marker)


UNSAFE = [
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load without weights_only=True"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"yaml\.(?:load|unsafe_load|full_load|load_all)\((?![^)]*SafeLoader)"), "yaml.load without SafeLoader"),
    (re.compile(r"trust_remote_code\s*=\s*True"), "trust_remote_code=True"),
    (re.compile(r"\bpickle\.loads?\(|\bdill\.|\bjoblib\.load\(|\bmarshal\.loads?\("), "unpickling"),
]


def test_source_has_no_unsafe_loading_calls():
    found = []
    for folder in ("reidkit", "plugins", "adapters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for pattern, what in UNSAFE:
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    found.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not found, "\n".join(found)


# -- no network unless a hub id is used -----------------------------------------------------------
GUARD = '''
import os, socket

_RECORD = os.environ["REIDKIT_TEST_NET_RECORD"]


def _refuse(*args, **kwargs):
    with open(_RECORD, "a") as f:
        f.write(f"{os.getpid()} {args[1:] if args and isinstance(args[0], socket.socket) else args!r}\\n")
    raise OSError("network refused by the test")


def _connect(self, *args, **kwargs):
    return _refuse(self, *args)


socket.socket.connect = _connect
socket.socket.connect_ex = _connect
socket.create_connection = _refuse
'''


def offline_env(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose Python processes cannot connect anywhere (each try is recorded); no offline flags set."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    record = tmp_path / "connections.txt"
    record.write_text("")
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                "HF_DATASETS_OFFLINE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(guard)
    env["REIDKIT_TEST_NET_RECORD"] = str(record)
    return env, record


def test_network_guard_refuses_and_records(tmp_path):
    """The guard works in a child process: a connection attempt is refused and recorded."""
    import subprocess

    env, record = offline_env(tmp_path)
    code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept OSError as e:\n    print(e)\n"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "network refused by the test" in proc.stdout, proc.stderr
    assert "127.0.0.1" in record.read_text()


@pytest.mark.slow
def test_demo_never_reaches_the_network(tmp_path):
    env, record = offline_env(tmp_path)
    out = tmp_path / "demo"
    proc = _run_with_env(env, tmp_path, "demo", "--quick", "--seeds", "0", "--no-refine", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert record.read_text() == "", f"network attempts: {record.read_text()[:2000]}"
    assert any(out.iterdir())


def _run_with_env(env: dict, cwd: Path, *args):
    """The console script with exactly ``env`` (run_console adds to os.environ; this one must drop variables)."""
    import subprocess

    from tests.helpers import reidkit_exe

    return subprocess.run([reidkit_exe(), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
