"""reidkit train A.h5 B.h5: several stores trained on as one, person ids kept apart per store (fast-reid's mixing)."""
import json

import numpy as np
import pytest
import yaml

from tests.helpers import one_error_line, run_console
from tests.train_helpers import make_store

ARGS = ["--strategy", "baseline", "--backbone", "resnet18", "--weights", "none", "--batch", "2,2", "--height", "64",
        "--width", "32", "--num-workers", "0", "--device", "cpu", "--steps-per-epoch", "2", "--epochs", "1"]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("a"), ids=8), make_store(tmp_path_factory.mktemp("b"), ids=6, outfits=2)


def test_the_union_reads_every_store_in_order_with_namespaced_ids(two):
    from reidkit import open_store
    from reidkit.store.union import NAMESPACE, StoreUnion

    a, b = open_store(two[0]), open_store(two[1])
    union = StoreUnion([a, b])
    assert len(union) == len(a) + len(b)
    assert np.array_equal(union.split("train"), np.concatenate([a.split("train"), b.split("train") + len(a)]))
    i = int(b.split("train")[3])
    assert np.array_equal(union.image(len(a) + i), b.image(i)) and np.array_equal(union.image(5), a.image(5))
    # the synthetic worlds number their persons from 0 alike: the same number is two persons here
    assert set(a.pid.tolist()) & set(b.pid.tolist())
    assert np.array_equal(union.pid, np.concatenate([a.pid, b.pid + NAMESPACE]))
    assert len(set(union.pid[union.split("train")].tolist())) == len(set(a.pid[a.split("train")].tolist())) + len(
        set(b.pid[b.split("train")].tolist()))
    assert union.fingerprint not in (a.fingerprint, b.fingerprint)


def test_train_on_two_stores_records_both_and_keeps_their_persons_apart(two, tmp_path):
    from reidkit import open_store

    a, b = (open_store(p) for p in two)
    out = tmp_path / "run"
    r = run_console("train", two[0], two[1], *ARGS, "--out", out)
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["store"] == [str(two[0].resolve()), str(two[1].resolve())]
    persons = [len(set(s.pid[s.split("train")].tolist())) for s in (a, b)]
    assert config["data"]["num_classes"] == sum(persons)
    assert config["data"]["real_images"] == len(a.split("train")) + len(b.split("train"))
    assert sum(p >= 1_000_000 for p in config["data"]["class_pids"]) == persons[1]
    # it evaluates on either store; resuming needs the same stores
    r = run_console("eval", two[1], "--checkpoint", out, "--protocol", "standard", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)[0]  # the results say which stores trained the run and which one evaluated it
    assert row["trained_on"] == config["store"] and row["evaluated_on"] == str(two[1].resolve())
    line = one_error_line(run_console("train", two[0], "--out", out, "--resume", "--epochs", "2"))
    assert "trained on another store" in line


def test_generated_runs_with_several_stores_are_one_line(two, tmp_path):
    line = one_error_line(run_console("train", two[0], two[1], *ARGS, "--generated", "gen", "--out", tmp_path / "run"))
    assert "several stores" in line
