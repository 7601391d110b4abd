"""The study scripts (scripts/summarise_runs.py, scripts/eval_untrained.py) on real run folders and evaluations.

Two tiny runs are trained by the engine (evaluated every epoch, so log.csv carries metrics); the summary of
their log rows is checked against mean, sample std and range worked by hand from the rows themselves, and
eval_untrained's output is read back as an evaluation arm.
"""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_helpers import make_store, tiny_config, train

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    world = make_store(root)
    outs = []
    for seed in (0, 1):
        out = root / f"run-s{seed}"
        train(world, tiny_config("baseline", eval_every=1, epochs=2, seed=seed), out, progress=False, max_steps=1)
        outs.append(out)
    return world, outs


def script(name, *args, cwd):
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def rows_by_epoch(run: Path) -> dict:
    with (run / "log.csv").open() as f:
        return {int(r["epoch"]): r for r in csv.DictReader(f)}


def test_summary_is_mean_sample_std_and_range_of_the_runs_rows(runs, tmp_path):
    _, outs = runs
    got = script("summarise_runs.py", f"tiny={outs[0].parent}/run-s*", "--epoch", 2, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    table = [line for line in got.stdout.splitlines() if line.startswith("| tiny |")]
    assert len(table) == 1
    cells = [c.strip() for c in table[0].strip("|").split("|")]
    assert cells[:3] == ["tiny", "2", "2"]
    # by hand from the two runs' epoch-2 rows: mean, stdev with n - 1 (two values: |a - b| / sqrt(2)), min-max
    a, b = (100 * float(rows_by_epoch(o)[2]["standard_mAP"]) for o in outs)
    assert a != b  # two seeds: a spread to check
    mean, std = (a + b) / 2, abs(a - b) / 2**0.5
    assert cells[4] == f"{mean:.1f} ± {std:.1f} [{min(a, b):.1f}-{max(a, b):.1f}]"
    loss = statistics.fmean(float(rows_by_epoch(o)[2]["id"]) for o in outs)
    assert cells[-1] == f"{loss:.2f}"


def test_every_epoch_all_runs_evaluated_is_a_row_and_a_missing_arm_is_one_line(runs, tmp_path):
    _, outs = runs
    got = script("summarise_runs.py", f"tiny={outs[0]}|{outs[1]}", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert [line.split("|")[2].strip() for line in got.stdout.splitlines() if line.startswith("| tiny |")] == ["1", "2"]
    missing = script("summarise_runs.py", f"none={tmp_path}/nothing-*", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"none: no run folder with a log.csv matches {tmp_path}/nothing-*"]


def test_untrained_floor_is_an_evaluation_the_summary_reads(runs, tmp_path):
    world, outs = runs
    got = script("eval_untrained.py", world, outs[0], "--seed", 3, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    rows = json.loads(got.stdout)
    by_protocol = {r["protocol"]: r for r in rows}
    assert {"standard", "cc"} <= set(by_protocol)
    assert all(0.0 <= r["mAP"] <= 1.0 and r.get("weights") == "untrained" for r in rows)
    again = json.loads(script("eval_untrained.py", world, outs[0], "--seed", 3, cwd=tmp_path).stdout)
    assert [r["mAP"] for r in again] == [r["mAP"] for r in rows]  # seeded: the same fresh weights
    other = json.loads(script("eval_untrained.py", world, outs[0], "--seed", 4, cwd=tmp_path).stdout)
    assert [r["mAP"] for r in other] != [r["mAP"] for r in rows]  # another seed: other weights
    (tmp_path / "floor.json").write_text(got.stdout)
    summary = script("summarise_runs.py", f"floor={tmp_path}/floor.json", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    line = next(x for x in summary.stdout.splitlines() if x.startswith("| floor |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    mAP = 100 * by_protocol["standard"]["mAP"]
    assert cells[1] == "eval" and cells[4] == f"{mAP:.1f} ± 0.0 [{mAP:.1f}-{mAP:.1f}]"
