"""reidkit expand with the weight-free recolor generator: determinism, provenance, resume, shards, merge."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import reidkit
from reidkit.generation import merge_run, run_expand
from reidkit.store.runs import ITEM_COLUMNS
from tests.helpers import make_world, reidkit_exe, run_cli, run_console


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w.h5", ids=6, outfits=2, cameras=3, shots=1)


def items_by_key(store_path, run):
    r = reidkit.open_store(store_path).run(run)
    return {(int(s), int(v)): r.image_bytes(j) for j, (s, v) in enumerate(zip(r.source_index(), r.variant()))}


def fresh_copy(world, tmp_path, name="w.h5"):
    dest = tmp_path / name
    shutil.copy(world, dest)
    return dest


def test_same_seed_same_bytes_other_seed_other_images(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    run_expand(store, variants=2, seed=3, name="a", show_progress=False)
    run_expand(store, variants=2, seed=3, name="b", batch_size=5, chunk_size=7, show_progress=False)
    run_expand(store, variants=2, seed=4, name="c", show_progress=False)
    a, b, c = (items_by_key(store, n) for n in "abc")
    assert len(a) == 2 * len(reidkit.open_store(store).split("train"))
    assert a == b  # batch and chunk sizes change nothing
    assert sum(a[k] != c[k] for k in a) > len(a) // 2


def test_provenance_complete_and_targets_exclude_own_outfit(world, tmp_path):
    store_path = fresh_copy(world, tmp_path)
    summary = run_expand(store_path, variants=3, seed=0, name="p", filters=["sanity"], show_progress=False)
    store = reidkit.open_store(store_path)
    run = store.run("p")
    assert summary["generated"] == len(run) == 3 * len(store.split("train"))
    for col in ITEM_COLUMNS:
        assert run.has_column(col)
    src = run.source_index()
    assert np.array_equal(run.column("pid"), store.pid[src])
    assert np.array_equal(run.column("camera"), store.camera[src])
    targets = run.column("target_clothes_key")
    assert not np.any(targets == store.clothes_key[src])
    assert all(t in set(store.clothes_key[store.split("train")]) for t in targets)
    # variants of one image wear distinct outfits
    for s in np.unique(src):
        assert len(set(targets[src == s])) == 3
    assert len(set(run.column("seed").tolist())) == len(run)
    assert all(p for p in run.column("prompt"))
    assert all("sanity.std" in json.loads(s) for s in run.column("scores"))
    info = run.info
    assert info["generator"] == "recolor" and info["reidkit_version"] == reidkit.__version__
    assert info["settings"]["generator_settings"]["shade_strength"] == 1.0
    assert info["settings"]["prompts"] == "templates" and info["settings"]["masker"] == "store"
    assert info["store_fingerprint"] == store.fingerprint
    # the target outfit's prompt says what its garments look like; the same target looks alike
    same = [j for j in range(len(run)) if targets[j] == targets[0]]
    assert len({run.column("prompt")[j] for j in same}) == 1


def test_recolor_changes_only_masked_pixels(world, tmp_path):
    store_path = fresh_copy(world, tmp_path)
    run_expand(store_path, variants=1, seed=0, name="m", show_progress=False)
    store = reidkit.open_store(store_path)
    run, masks = store.run("m"), store.mask_sets()["ground_truth"]
    for j in range(0, len(run), 5):
        s = int(run.source_index()[j])
        src, out, mask = store.image(s), run.image(j), masks.clothing_mask(s)
        assert np.array_equal(out[~mask], src[~mask])
        assert np.abs(out[mask].astype(int) - src[mask]).mean() > 5


def test_shard_union_equals_unsharded_and_merge_from_other_machine(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    run_expand(store, variants=2, seed=1, name="full", show_progress=False)
    full = items_by_key(store, "full")
    # shard 0 here, shards 1 and 2 on "another machine" (a copy of the same store)
    other = tmp_path / "other"
    other.mkdir()
    other_store = fresh_copy(world, other)
    s0 = run_expand(store, variants=2, seed=1, name="sh", shard="0/3", show_progress=False)
    s1 = run_expand(other_store, variants=2, seed=1, name="sh", shard=(1, 3), show_progress=False)
    s2 = run_expand(other_store, variants=2, seed=1, name="sh", shard="2/3", show_progress=False)
    assert s0["generated"] + s1["generated"] + s2["generated"] == len(full)
    keys0 = set(items_by_key(store, "sh"))
    assert keys0.isdisjoint(items_by_key(other_store, "sh"))
    result = run_cli("expand", store, "--merge", "sh", "--from", other_store)
    assert result.exit_code == 0, result.output
    assert items_by_key(store, "sh") == full
    again = merge_run(store, "sh", [other_store])  # idempotent
    assert again["added"] == 0 and again["items"] == len(full)


def test_rerun_with_other_settings_refused_in_one_line(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    assert run_cli("expand", store, "--variants", "1", "--name", "x").exit_code == 0
    proc = run_console("expand", store, "--variants", "1", "--name", "x", "--seed", "9")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "other settings" in proc.stderr and "Traceback" not in proc.stderr
    rerun = run_cli("expand", store, "--variants", "1", "--name", "x", "--json")
    assert rerun.exit_code == 0 and json.loads(rerun.stdout)["generated"] == 0


def test_bad_input_one_line_errors(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    for args, needle in ((["--generator", "nope"], "unknown generator 'nope'"),
                         (["--set", "colour=1"], "has no setting 'colour'"),
                         (["--shard", "3/2"], "0 <= I < N"),
                         (["--split", "val"], "no split 'val'"),
                         (["--masker", "store", "--mask-set", "set=parsed"], "no mask set 'parsed'")):
        proc = run_console("expand", store, "--variants", "1", *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_yaml_config_equals_flags(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("generator: recolor\nprompts: templates\nvariants: 2\nseed: 5\nname: cfg\nfilters: [sanity]\n"
                   "generator_settings: {jitter: 0}\nprompt_settings: {pattern_rate: 1.0}\n")
    assert run_cli("expand", store, "--config", cfg).exit_code == 0
    flags = run_cli("expand", store, "--variants", "2", "--seed", "5", "--name", "flags", "--filter", "sanity",
                    "--set", "jitter=0", "--prompt-set", "pattern_rate=1.0")
    assert flags.exit_code == 0, flags.output
    assert items_by_key(store, "cfg") == items_by_key(store, "flags")


def test_resume_after_kill_9(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    args = ["expand", str(store), "--variants", "12", "--seed", "2", "--chunk-size", "8", "--batch-size", "4", "--name", "k"]
    chunks_dir = Path(str(store) + ".parts") / "runs" / "k" / "chunks"
    proc = subprocess.Popen([reidkit_exe(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(chunks_dir.glob("*.h5")) and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    published = len(items_by_key(store, "k"))
    total = 12 * len(reidkit.open_store(store).split("train"))
    assert 0 < published < total, "the kill must land mid-run"
    rerun = run_console(*args, "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["skipped"] == published
    run_expand(store, variants=12, seed=2, name="ref", show_progress=False)
    assert items_by_key(store, "k") == items_by_key(store, "ref")


def test_torchrun_two_processes_equal_single_process(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "--no-python", reidkit_exe(),
                           "expand", str(store), "--variants", "2", "--seed", "7", "--name", "dist", "--chunk-size", "10"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tags = {p.name.split("-")[0] for p in (Path(str(store) + ".parts") / "runs" / "dist" / "chunks").glob("*.h5")}
    assert tags == {"shard0of2", "shard1of2"}  # each rank took its own shard
    run_expand(store, variants=2, seed=7, name="single", show_progress=False)
    assert items_by_key(store, "dist") == items_by_key(store, "single")


def test_query_split_variants_draw_targets_from_training_outfits_only(world, tmp_path):
    store_path = fresh_copy(world, tmp_path)
    summary = run_expand(store_path, split="query", variants=2, name="q", show_progress=False)
    store = reidkit.open_store(store_path)
    run = store.run("q")
    query = store.split("query")
    assert summary["generated"] == 2 * len(query) and set(run.source_index().tolist()) == set(query.tolist())
    train_outfits = set(store.clothes_key[store.split("train")])
    assert set(run.column("target_clothes_key")) <= train_outfits  # no test outfit leaks into prompts
