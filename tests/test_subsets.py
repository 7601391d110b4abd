"""--subset: LUPerson's small-scale (ids=R) and few-shot (images=R) training splits, for every strategy."""
import numpy as np
import pytest
import yaml

from reidkit.errors import ReidkitError
from tests.helpers import one_error_line, run_console
from tests.train_helpers import make_store

PIDS = np.array([7, 7, 7, 3, 3, 9, 9, 9, 9, 5])  # persons of 3, 2, 4 and 1 images (person 7, 3, 9, 5)
INDICES = np.arange(100, 110)


def test_images_keeps_max_round_n_r_1_of_each_person():
    from reidkit.training.subsets import select

    kept = select(INDICES, PIDS, "images=0.5", seed=0)
    counts = {int(p): int((PIDS[np.isin(INDICES, kept)] == p).sum()) for p in np.unique(PIDS)}
    # 3 x 0.5 = 1.5 -> 2 (half to even), 2 x 0.5 -> 1, 4 x 0.5 -> 2, 1 x 0.5 = 0.5 -> 0 -> at least 1
    assert counts == {7: 2, 3: 1, 9: 2, 5: 1}
    assert list(kept) == sorted(kept)  # the store's order is kept
    assert set(select(INDICES, PIDS, "images=1", seed=3)) == set(INDICES)


def test_ids_keeps_int_n_r_persons_with_all_their_images():
    from reidkit.training.subsets import select

    draws = set()
    for seed in range(12):
        kept = select(INDICES, PIDS, "ids=0.5", seed=seed)
        persons = set(PIDS[np.isin(INDICES, kept)].tolist())
        assert len(persons) == 2  # int(4 x 0.5)
        assert set(kept) == set(INDICES[np.isin(PIDS, list(persons))])  # every image of a chosen person
        assert np.array_equal(kept, select(INDICES, PIDS, "ids=0.5", seed=seed))  # the seed decides
        draws.add(frozenset(persons))
    assert len(draws) > 1  # and other seeds choose other persons


@pytest.mark.parametrize("text", ["ids=0", "ids=1.5", "people=0.1", "ids", "ids=abc"])
def test_a_malformed_subset_is_one_line(text):
    from reidkit.training.subsets import parse_subset

    with pytest.raises(ReidkitError, match="expected ids=R or images=R"):
        parse_subset(text)


def test_a_subset_of_fewer_than_two_persons_is_refused():
    from reidkit.training.subsets import select

    with pytest.raises(ReidkitError, match="keeps 1 of the 4 training persons"):
        select(INDICES, PIDS, "ids=0.3", seed=0)  # int(1.2) = 1


def test_train_with_a_subset_records_it_and_trains_on_it_only(tmp_path):
    from reidkit import open_store

    world = make_store(tmp_path, ids=8)
    store = open_store(world)
    train_pids = sorted(set(store.pid[store.split("train")].tolist()))
    args = ["--plugin", "baseline", "--backbone", "resnet18", "--weights", "none", "--batch", "2,2", "--height", "64",
            "--width", "32", "--num-workers", "0", "--device", "cpu", "--steps-per-epoch", "1", "--epochs", "1"]
    r = run_console("train", world, *args, "--subset", "ids=0.5", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["subset"] == "ids=0.5"
    assert len(config["data"]["class_pids"]) == len(train_pids) // 2 and set(config["data"]["class_pids"]) < set(train_pids)
    kept = store.split("train")[np.isin(store.pid[store.split("train")], config["data"]["class_pids"])]
    assert config["data"]["real_images"] == len(kept)
    # resuming with another subset would train another experiment: refused
    line = one_error_line(run_console("train", world, "--out", tmp_path / "run", "--resume", "--epochs", "2", "--subset", "ids=0.25"))
    assert "subset" in line
    line = one_error_line(run_console("train", world, *args, "--subset", "ids=2", "--out", tmp_path / "bad"))
    assert "expected ids=R or images=R" in line and not (tmp_path / "bad").exists()
