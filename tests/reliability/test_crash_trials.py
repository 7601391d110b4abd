"""SIGKILL at seeded random moments during adapt, expand (recolor) and train: nothing half-written is ever
visible, and rerunning the same command (train: with --resume) ends with exactly the uninterrupted result."""
import os
import shutil

import pytest

from reidkit.errors import StoreError
from tests.reliability.crash import (EXPAND, SMALL_WORLD, WORLD, h5_content, kill_at, kill_moment, run, timed_run, train_args,
                                     trials, visible_files)

EPOCHS = 3
TRAIN = train_args("resnet18", EPOCHS)


def _leftovers(folder):
    """Hidden names a kill may leave beside a store: its partial files and its writer lock, nothing else."""
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def _writing(folder):
    """True once adapt has created its hidden partial file in ``folder``: the write has begun."""
    return lambda: any(n.startswith(".w.h5.partial-") for n in os.listdir(folder))


# -- adapt --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapt_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapt-ref")
    seconds = timed_run(["adapt", "synthetic", "--out", d / "w.h5", *WORLD], _writing(d))
    return h5_content(d / "w.h5"), seconds


@pytest.mark.parametrize("trial", trials())
def test_adapt_killed_at_a_random_moment(adapt_reference, tmp_path, trial):
    from reidkit import open_store

    reference, window = adapt_reference
    out = tmp_path / "w.h5"
    args = ["adapt", "synthetic", "--out", out, *WORLD]
    kill_at(args, _writing(tmp_path), kill_moment("adapt", trial, window))
    for name in _leftovers(tmp_path):
        assert name.startswith(".w.h5.partial-") or name == ".w.h5.lock", name
    if out.exists():  # published before the kill: then it is whole
        assert h5_content(out) == reference
        return
    assert visible_files(tmp_path) == []  # no half-written store under any name a reader would open
    with pytest.raises(StoreError, match="does not exist"):
        open_store(out)
    run(args)
    assert h5_content(out) == reference
    assert os.listdir(tmp_path) == ["w.h5"]  # the rerun removed the dead writer's partial file


# -- expand (recolor: no model weights) ---------------------------------------------------------------------------
def _run_items(store_path) -> dict:
    """(source_index, variant) -> every column of the item, image bytes included; duplicates fail."""
    from reidkit import open_store

    store = open_store(store_path)
    runs = store.runs()
    if "r" not in runs:
        return {}
    run_ = runs["r"]
    columns = [c for c in ("source_index", "variant", "pid", "camera", "target_clothes_key", "prompt", "seed", "kept",
                           "reject_reason", "scores")]
    values = {c: run_.column(c) for c in columns} if run_.files else {}
    items = {}
    for i in range(len(run_)):
        key = (int(values["source_index"][i]), int(values["variant"][i]))
        assert key not in items, f"item {key} published twice"
        items[key] = (run_.image_bytes(i), *(str(values[c][i]) for c in columns))
    return items


def _open_every_part(store_path):
    """The store and every part in its sidecar open and read."""
    from reidkit import open_store
    from reidkit.store.chunks import ChunkedPart

    store = open_store(store_path)
    for kind in ("masks", "prompts", "runs"):
        folder = store.parts_dir / kind
        for part in (folder.iterdir() if folder.is_dir() else ()):
            if (part / "part.json").is_file():
                p = ChunkedPart(part)
                for f in range(len(p.files)):
                    p._handle(f)  # every published chunk is a whole HDF5 file
                assert len(p) >= 0


@pytest.fixture(scope="module")
def expand_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("expand-world")
    store = d / "w.h5"
    run(["adapt", "synthetic", "--out", store, *SMALL_WORLD])
    ref = tmp_path_factory.mktemp("expand-ref") / "w.h5"
    shutil.copy(store, ref)
    seconds = timed_run(["expand", ref, *EXPAND], (ref.parent / "w.h5.parts").exists)
    items = _run_items(ref)
    assert len(items) > 20
    return store, items, seconds


@pytest.mark.parametrize("trial", trials())
def test_expand_killed_at_a_random_moment(expand_world, tmp_path, trial):
    source, reference, window = expand_world
    store = tmp_path / "w.h5"
    shutil.copy(source, store)
    args = ["expand", store, *EXPAND]
    kill_at(args, (tmp_path / "w.h5.parts").exists, kill_moment("expand", trial, window))
    _open_every_part(store)
    published = _run_items(store)
    assert all(reference[k] == v for k, v in published.items())  # what a reader sees is whole and final
    run(args)
    _open_every_part(store)
    assert _run_items(store) == reference


# -- train (--resume) ---------------------------------------------------------------------------------------------
def _weights(run_dir):
    return (run_dir / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def train_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-world")
    store = d / "w.h5"
    run(["adapt", "synthetic", "--out", store, *SMALL_WORLD])
    ref = d / "ref"
    seconds = timed_run(["train", store, *TRAIN, "--out", ref], (ref / "checkpoints").exists)
    return store, _weights(ref), seconds


def _check_run_opens(run_dir):
    """Whatever a kill left: published weights load, every visible checkpoint is whole."""
    from safetensors.torch import load_file

    if (run_dir / "model.safetensors").exists():
        load_file(run_dir / "model.safetensors")
    checkpoints = run_dir / "checkpoints"
    for epoch in sorted(checkpoints.iterdir()) if checkpoints.is_dir() else ():
        if epoch.name.startswith("."):
            continue  # a hidden partial checkpoint: never read
        assert {"model.safetensors", "state.pt", "log.csv"} <= {p.name for p in epoch.iterdir()}, epoch
        load_file(epoch / "model.safetensors")


@pytest.mark.parametrize("trial", trials(default=2))
def test_train_killed_at_a_random_moment_resumes_to_the_same_weights(train_world, tmp_path, trial):
    store, reference, window = train_world
    out = tmp_path / "run"
    args = ["train", store, *TRAIN, "--out", out]
    kill_at(args, (out / "checkpoints").exists, kill_moment("train", trial, window))  # from the 1st checkpoint on
    _check_run_opens(out)
    run(args + ["--resume"] if out.exists() else args)
    assert _weights(out) == reference
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + EPOCHS, rows  # header + one row per epoch: the log agrees with the checkpoint
