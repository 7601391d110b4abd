"""Distributed for real: `reidkit train` as 2 CPU processes under torchrun and under accelerate launch (gloo),
then a single-process load."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reidkit import open_store
from tests.train_helpers import make_store


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    # --multi_gpu is accelerate's multi-process launcher (torch.distributed.run underneath); without a GPU its ranks use the CPU
    "accelerate": [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_process_training_stays_in_sync_and_loads_in_one_process(tmp_path, launcher):
    from reidkit.evaluation.inference import load_reid_model

    store = make_store(tmp_path)
    out = tmp_path / "runs" / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # CAL's clothes classifier (its own optimiser, gradients averaged by hand) from epoch 0, the adversarial term from 1
    (tmp_path / "cal.yaml").write_text("clothes_start_epoch: 0\nadversarial_start_epoch: 1\n")
    cmd = [*LAUNCHERS[launcher], "-m", "reidkit.cli",
           "train", str(store), "--plugin", "cal", "--backbone", "resnet18", "--weights", "none", "--epochs", "2", "--batch", "2,2",
           "--height", "64", "--width", "32", "--out", str(out), "--num-workers", "0", "--device", "cpu",
           "--steps-per-epoch", "2", "--seed", "3", "--config", str(tmp_path / "cal.yaml"), "--check-sync", "--eval-every", "2"]
    # cwd away from the repository root, so `-m reidkit.cli` runs the installed package
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert set(ranks[0]) == {"1", "2"} and ranks[0] == ranks[1]  # identical parameters on both ranks, every epoch (--check-sync)
    assert ranks[0]["1"] != ranks[0]["2"]  # and they did train
    log = (out / "log.csv").read_text().splitlines()
    assert "clothes" in log[0] and "cal" in log[0].split(",")  # both CAL terms ran under DDP
    header = log[0].split(",")
    assert any(c.endswith("_mAP") for c in header)  # evaluated at the last epoch, extraction shared by both ranks
    assert log[-1].split(",")[header.index(next(c for c in header if c.endswith("_mAP")))] != ""
    assert result.stdout.count("trained ") == 1  # rank 0 reports
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["world_size"] == 2
    model = load_reid_model(out, "cpu")
    s = open_store(store)
    feats = model.features([s.image(i) for i in s.split("gallery")[:4]])
    assert feats.shape == (4, 1024) and np.isfinite(feats).all()


@pytest.mark.slow
def test_eval_under_torchrun_shares_extraction_and_gives_the_single_process_numbers(tmp_path):
    """`reidkit eval --checkpoint` as 2 processes: each extracts half of the rows, rank 0 scores; the features and
    the metrics equal a single process's (same model, same images; batch mates differ, so features to float rounding)."""
    store = make_store(tmp_path)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "reidkit.cli"]
    train = ["train", str(store), "--plugin", "baseline", "--backbone", "resnet18", "--weights", "none", "--epochs", "1",
             "--batch", "2,2", "--height", "64", "--width", "32", "--out", str(out), "--num-workers", "0", "--device", "cpu",
             "--steps-per-epoch", "2"]
    assert subprocess.run(base + train, env=env, capture_output=True, cwd=tmp_path, timeout=300).returncode == 0
    results = {}
    for name, launcher in (("single", base), ("torchrun", [*LAUNCHERS["torchrun"], "-m", "reidkit.cli"])):
        feats = tmp_path / f"{name}.npz"
        proc = subprocess.run([*launcher, "eval", str(store), "--checkpoint", str(out), "--json", "--save-features", str(feats)],
                              env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[:4000]  # the ranks' own errors come first, torchrun's summary last
        results[name] = (json.loads(proc.stdout), np.load(feats))
        done = [int(ln.split(":")[1].split("/")[0]) for ln in proc.stderr.splitlines() if ln.startswith("test features:")]
        results[name] += (done,)
    (single, f1, rows1), (shared, f2, rows2) = results["single"], results["torchrun"]
    n = len(f1["index"])
    assert rows1 == [n] and sorted(rows2) == [n // 2, n - n // 2]  # each rank extracted its half
    assert np.array_equal(f1["index"], f2["index"])
    assert np.allclose(f1["features"], f2["features"], atol=1e-5)
    assert [r["protocol"] for r in single] == [r["protocol"] for r in shared]
    for a, b in zip(single, shared):
        assert abs(a["rank1"] - b["rank1"]) < 1e-9 and abs(a["mAP"] - b["mAP"]) < 1e-6
