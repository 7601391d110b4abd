"""SIGKILL at seeded random moments during `reidkit mask` (heuristic: no weights) and `reidkit expand --generator dlcr`
on the tiny inpainting pipeline: the store and every part open, nothing half-written is visible, and rerunning the
same command ends with exactly the uninterrupted result (mask label maps; run items' image bytes and columns)."""
import os
import shutil

import pytest

from tests.reliability.crash import WORLD, kill_at, kill_moment, run, timed_run, trials, visible_files
from tests.reliability.test_crash_trials import _open_every_part

TINY_WORLD = ("--ids", "4", "--outfits", "2", "--cameras", "2", "--height", "64", "--width", "32")
MASK = ("--masker", "heuristic", "--split", "all", "--batch-size", "16")  # 432 images: chunks of 256 and 176


def _leftovers_are_hidden(folder):
    """What a kill leaves beside the store and in its sidecar, other than published files: hidden names only."""
    published = set(visible_files(folder))
    for path in folder.rglob("*"):
        rel = str(path.relative_to(folder))
        if path.is_file() and rel not in published:
            assert any(part.startswith(".") for part in path.relative_to(folder).parts), rel


# -- mask (heuristic) ---------------------------------------------------------------------------------------------
def _mask_items(store_path) -> dict:
    """image index -> label map bytes of mask set 'heuristic'; an index twice fails."""
    from reidkit import open_store

    sets = open_store(store_path).mask_sets()
    if "heuristic" not in sets:
        return {}
    ms = sets["heuristic"]
    index = [int(i) for i in ms.index]
    assert len(index) == len(set(index)), "an image masked twice"
    return {i: ms.label_map(i).tobytes() for i in index}


def _mask_lock(folder):
    return lambda: (folder / ".w.h5.masks.heuristic.lock").exists()  # taken before the first image is masked


@pytest.fixture(scope="module")
def mask_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("mask-world")
    store = d / "w.h5"
    run(["adapt", "synthetic", "--out", store, *WORLD])
    ref = tmp_path_factory.mktemp("mask-ref") / "w.h5"
    shutil.copy(store, ref)
    seconds = timed_run(["mask", ref, *MASK], _mask_lock(ref.parent))
    items = _mask_items(ref)
    assert len(items) == 432 and len(list((ref.parent / "w.h5.parts" / "masks" / "heuristic" / "chunks").iterdir())) >= 2
    return store, items, seconds


@pytest.mark.parametrize("trial", trials(default=2))
def test_mask_killed_at_a_random_moment(mask_world, tmp_path, trial):
    source, reference, window = mask_world
    store = tmp_path / "w.h5"
    shutil.copy(source, store)
    args = ["mask", store, *MASK]
    kill_at(args, _mask_lock(tmp_path), kill_moment("mask", trial, window))
    _open_every_part(store)
    _leftovers_are_hidden(tmp_path)
    published = _mask_items(store)
    assert all(reference[i] == v for i, v in published.items())  # what a reader sees is whole and final
    run(args)
    _open_every_part(store)
    assert _mask_items(store) == reference
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n or n.endswith(".lock")]


# -- expand --generator dlcr (tiny inpainting pipeline, 4 items) ---------------------------------------------------
def dlcr_args(store, sd):
    return ["expand", store, "--generator", "dlcr", "--prompts", "templates", "--masker", "store", "--model", sd,
            "--device", "cpu", "--variants", "1", "--limit", "4", "--batch-size", "1", "--chunk-size", "1",
            "--set", "steps=2", "--set", "width=32", "--set", "height=64", "--name", "d", "--seed", "3"]


def _dlcr_items(store_path) -> dict:
    """(source_index, variant) -> image bytes and columns of run 'd'; an item twice fails."""
    from reidkit import open_store

    runs = open_store(store_path).runs()
    if "d" not in runs:
        return {}
    r = runs["d"]
    columns = ("source_index", "variant", "pid", "camera", "target_clothes_key", "prompt", "seed", "kept", "scores")
    values = {c: r.column(c) for c in columns} if r.files else {}
    items = {}
    for i in range(len(r)):
        key = (int(values["source_index"][i]), int(values["variant"][i]))
        assert key not in items, f"item {key} published twice"
        items[key] = (r.image_bytes(i), *(str(values[c][i]) for c in columns))
    return items


@pytest.fixture(scope="module")
def dlcr_world(tmp_path_factory):
    from tests.tiny_models import build_tiny_inpaint_pipeline

    sd = build_tiny_inpaint_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd-inpaint")
    d = tmp_path_factory.mktemp("dlcr-world")
    store = d / "w.h5"
    run(["adapt", "synthetic", "--out", store, *TINY_WORLD])
    ref = tmp_path_factory.mktemp("dlcr-ref") / "w.h5"
    shutil.copy(store, ref)
    seconds = timed_run(dlcr_args(ref, sd), (ref.parent / "w.h5.parts").exists)
    items = _dlcr_items(ref)
    assert len(items) == 4
    return store, sd, items, seconds


@pytest.mark.parametrize("trial", trials(default=1))
def test_dlcr_expand_killed_at_a_random_moment(dlcr_world, tmp_path, trial):
    source, sd, reference, window = dlcr_world
    store = tmp_path / "w.h5"
    shutil.copy(source, store)
    args = dlcr_args(store, sd)
    kill_at(args, (tmp_path / "w.h5.parts").exists, kill_moment("dlcr", trial, window))
    _open_every_part(store)
    _leftovers_are_hidden(tmp_path)
    published = _dlcr_items(store)
    assert all(reference[k] == v for k, v in published.items())
    run(args)
    _open_every_part(store)
    assert _dlcr_items(store) == reference
