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
from tests.helpers import make_world, one_error_line, reidkit_exe, run_cli, run_console


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


def test_rerun_with_other_settingsone_error_line(world, tmp_path):
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


# -- which masker and prompt source, and user-level defaults ($REIDKIT_CONFIG) -----------------------------------
def test_generator_declares_its_masker_and_prompt_source(world, tmp_path):
    from reidkit.generation.engine import plugin_choice
    from reidkit.plugins.generators.dlcr import DlcrGenerator
    from reidkit.plugins.generators.recolor import RecolorGenerator

    assert plugin_choice(None, DlcrGenerator, "dlcr", "default_masker", "store") == ("parser", "dlcr's default")
    assert plugin_choice(None, DlcrGenerator, "dlcr", "default_prompts", "templates") == ("llava-llama", "dlcr's default")
    assert plugin_choice("heuristic", DlcrGenerator, "dlcr", "default_masker", "store") == ("heuristic", "given")
    assert plugin_choice(None, RecolorGenerator, "recolor", "default_masker", "store") == ("store", "default")
    store = fresh_copy(world, tmp_path)
    summary = run_expand(store, variants=1, limit=2, name="r", show_progress=False)
    assert (summary["generator"], summary["masker"], summary["prompts"]) == ("recolor", "store", "templates")
    assert summary["chosen_by"] == {"masker": "default", "prompts": "default"}
    # dlcr with nothing named reaches for its own models: LLaVA first (the clothing bank), then the parser
    offline = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "no-cache"), "HF_HOME": str(tmp_path / "no-home"),
               "REIDKIT_CONFIG": ""}
    proc = run_console("expand", store, "--generator", "dlcr", "--variants", "1", "--limit", "1", "--device", "cpu", env=offline)
    assert proc.returncode == 1 and "llava-hf/llava-1.5-7b-hf" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_console("expand", store, "--generator", "dlcr", "--prompts", "templates", "--variants", "1", "--limit", "1",
                       "--name", "d2", "--device", "cpu", env=offline)
    assert proc.returncode == 1 and "cannot load parser 'mattmdjaga/segformer_b2_clothes'" in proc.stderr


def test_user_config_lies_under_config_file_and_flags(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    user = tmp_path / "site.yaml"
    # flat plugin settings apply to whichever plugin runs; per-plugin ones only to theirs (dlcr, heuristic: unused here)
    user.write_text("expand:\n  variants: 2\n  seed: 5\n  prompt_settings: {pattern_rate: 1.0}\n"
                    "  generator_settings: {recolor: {jitter: 0}, dlcr: {steps: 2}}\n"
                    "  masker_settings: {heuristic: {waist: 0.5}}\n"
                    "train:\n  num_workers: 0\n")
    env = {"REIDKIT_CONFIG": str(user)}
    assert run_cli("expand", store, "--name", "user", env=env).exit_code == 0
    flags = run_cli("expand", store, "--variants", "2", "--seed", "5", "--name", "flags", "--set", "jitter=0",
                    "--prompt-set", "pattern_rate=1.0", env={"REIDKIT_CONFIG": ""})
    assert flags.exit_code == 0, flags.output
    assert items_by_key(store, "user") == items_by_key(store, "flags")
    # --config over it (plugin settings merged key by key), then the flags
    cfg = tmp_path / "run.yaml"
    cfg.write_text("variants: 1\ngenerator_settings: {shade_strength: 0.5}\n")
    assert run_cli("expand", store, "--config", cfg, "--name", "cfg", "--json", env=env).exit_code == 0
    settings = reidkit.open_store(store).run("cfg").info["settings"]
    assert (settings["variants"], settings["seed"]) == (1, 5)
    assert (settings["generator_settings"]["jitter"], settings["generator_settings"]["shade_strength"]) == (0, 0.5)
    assert run_cli("expand", store, "--config", cfg, "--variants", "3", "--name", "flag", env=env).exit_code == 0
    assert reidkit.open_store(store).run("flag").info["settings"]["variants"] == 3
    # mistakes in the file: one line naming it
    for text, needle in (("expnad:\n  seed: 1\n", "unknown sections ['expnad']"),
                         ("expand:\n  sead: 1\n", "unknown keys ['sead']"),
                         ("- a\n", "expected sections")):
        user.write_text(text)
        proc = run_console("expand", store, "--name", "bad", env=env)
        assert proc.returncode == 1 and needle in proc.stderr and "REIDKIT_CONFIG" in proc.stderr, proc.stderr
        assert proc.stderr.strip().count("\n") == 0
    proc = run_console("expand", store, "--name", "bad", env={"REIDKIT_CONFIG": str(tmp_path / "missing.yaml")})
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_user_config_merge_rules():
    from reidkit.user_config import merge_under, split_per_plugin

    assert merge_under({"epochs": 1, "backbone": {"model": "resnet18", "weights": None}},
                       {"backbone": {"model": "resnet50"}, "lr": 0.1}) == \
        {"epochs": 1, "backbone": {"model": "resnet50", "weights": None}, "lr": 0.1}
    flat, per = split_per_plugin({"device": "cpu", "generator_settings": {"dlcr": {"steps": 2}},
                                  "masker_settings": {"set": "ground_truth"}})
    assert flat == {"device": "cpu", "masker_settings": {"set": "ground_truth"}}
    assert per == {"generator_settings": {"dlcr": {"steps": 2}}}


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_expand_cuda_without_gpu_refused_in_one_line_nothing_written(world, tmp_path, device):
    store = fresh_copy(world, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = run_console("expand", store, "--variants", "1", "--limit", "2", "--device", device, "--name", "dev",
                    env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU visible, even on a machine that has one
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"'{device}'" in lines[0] and "no CUDA GPU" in lines[0] and "--device cpu" in lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_expand_unknown_deviceone_error_line(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    r = run_console("expand", store, "--variants", "1", "--limit", "2", "--device", "gpu7", "--name", "dev")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "unknown torch device 'gpu7'" in r.stderr
    assert not any(p.name == "dev" for p in tmp_path.rglob("*"))


BAD_FILE_BANK = "outfit-a: [red shirt, blue jeans]\noutfit-b: 7\n"


@pytest.mark.parametrize("args, message", [
    # issue 14: a bad setting failed after the clothing bank was written
    (["--set", "jitter=abc"], "generator 'recolor': setting 'jitter' must be a number >= 0, got 'abc'"),
    # issue 14: dlcr's setting was not checked before its model load (offline: nothing may be fetched either)
    (["--generator", "dlcr", "--set", "steps=abc", "--device", "cpu"],
     "generator 'dlcr': setting 'steps' must be an integer >= 1, got 'abc'"),
    (["--generator", "dlcr", "--set", "scheduler=pndm"], "generator 'dlcr': setting 'scheduler' must be one of ddim, dpm-solver++, unipc, model, got 'pndm'"),
    (["--generator", "dlcr", "--set", "attention_slicing=sometimes"],
     "generator 'dlcr': setting 'attention_slicing' must be true or false, got 'sometimes'"),
    (["--prompts", "templates", "--prompt-set", "pattern_rate=2"],
     "prompt source 'templates': setting 'pattern_rate' must be a number >= 0 and <= 1, got 2"),
    (["--prompts", "llava-llama", "--prompt-set", "fallback=maybe"],
     "prompt source 'llava-llama': setting 'fallback' must be one of none, answers, got 'maybe'"),
    (["--masker", "heuristic", "--mask-set", "iterations=abc"], "masker 'heuristic': setting 'iterations' must be an integer >= 1, got 'abc'"),
    (["--masker", "heuristic", "--mask-set", "hand_rows=[0.4,x]"],
     "masker 'heuristic': setting 'hand_rows' must be a list of numbers, each >= 0 and <= 1, got [0.4, 'x']"),
    (["--masker", "parser", "--mask-set", "preset=xyz"], "masker 'parser': setting 'preset' must be one of auto, lip, atr, model, got 'xyz'"),
    (["--filter", "sanity:min_std=abc"], "filter 'sanity': setting 'min_std' must be a number >= 0, got 'abc'"),
    (["--filter", "reid-confidence:tau=1.5"], "filter 'reid-confidence': setting 'tau' must be a number >= 0 and <= 1, got 1.5"),
    # issue 14: these left sidecar folders behind (the clothing bank was built before they were found)
    (["--mask-set", "set=nope"], "has no mask set 'nope' (mask sets: ground_truth)"),
    (["--prompts", "file", "--prompt-set", "path=MISSING"], "prompt source 'file' needs --prompt-set path=FILE.yaml|json"),
    (["--prompts", "file", "--prompt-set", "path=BADBANK"], "outfit 'outfit-b' must be a list of strings or one string"),
    (["--filter", "reid-confidence:checkpoint=MISSING"], "is not a reidkit training run (no config.yaml"),
    (["--filter", "reid-confidence:checkpoint=UNFINISHED"], "has no model.safetensors yet"),
])
def test_bad_plugin_input_refused_in_one_line_before_anything_is_written(world, tmp_path, args, message):
    store = fresh_copy(world, tmp_path)
    (tmp_path / "bad.yaml").write_text(BAD_FILE_BANK)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("plugin: baseline\ndata: {num_classes: 2}\n")
    paths = {"MISSING": str(tmp_path / "missing"), "BADBANK": str(tmp_path / "bad.yaml"), "UNFINISHED": str(unfinished)}
    args = [next((a.replace(k, v) for k, v in paths.items() if k in a), a) for a in args]
    start = time.perf_counter()
    proc = run_console("expand", store, "--variants", "1", *args, env={"HF_HUB_OFFLINE": "1"})
    line = one_error_line(proc)
    assert message in line
    assert not Path(str(store) + ".parts").exists()  # nothing written: no bank, no masks, no run
    assert time.perf_counter() - start < 60  # no model was loaded (or looked for) first


def test_yaml_plugin_settings_checked_before_anything_is_written(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("generator: dlcr\ngenerator_settings: {steps: abc}\nprompts: templates\nmasker: store\n")
    line = one_error_line(run_console("expand", store, "--config", cfg, "--device", "cpu", env={"HF_HUB_OFFLINE": "1"}))
    assert line == "Error: generator 'dlcr': setting 'steps' must be an integer >= 1, got 'abc'"
    cfg.write_text("prompt_settings: {pattern_rate: [1, 2]}\n")
    line = one_error_line(run_console("expand", store, "--config", cfg))
    assert line == "Error: prompt source 'templates': setting 'pattern_rate' must be a number >= 0 and <= 1, got [1, 2]"
    assert not Path(str(store) + ".parts").exists()


def test_library_settings_checked_and_paths_accepted_for_string_settings(world, tmp_path):
    from reidkit.errors import PluginError

    store = fresh_copy(world, tmp_path)
    with pytest.raises(PluginError, match=r"^generator 'recolor': setting 'jitter' must be a number >= 0, got 'abc'$"):
        run_expand(store, variants=1, generator_settings={"jitter": "abc"}, show_progress=False)
    with pytest.raises(PluginError, match=r"setting 'shade_strength' must be a number >= 0, got True"):
        run_expand(store, variants=1, generator_settings={"shade_strength": True}, show_progress=False)
    assert not Path(str(store) + ".parts").exists()
    bank = tmp_path / "bank.yaml"
    bank.write_text("outfit-a: [red shirt, blue jeans]\n")
    # a pathlib.Path for a string setting, an integer for a float one, YAML 1.1's string '1e-1' for a float one
    summary = run_expand(store, variants=1, prompts="file", prompt_settings={"path": bank},
                         generator_settings={"jitter": 3, "shade_blur": "1e-1"}, show_progress=False)
    assert summary["generated"] > 0


def test_mask_command_checks_settings_before_anything_is_written(world, tmp_path):
    store = fresh_copy(world, tmp_path)
    line = one_error_line(run_console("mask", store, "--masker", "heuristic", "--mask-set", "waist=tall"))
    assert line == "Error: masker 'heuristic': setting 'waist' must be a number >= 0 and <= 1, got 'tall'"
    assert not Path(str(store) + ".parts").exists()


@pytest.mark.parametrize("yaml_text, message", [
    # issue 14: these failed with a TypeError naming neither key nor file
    ("variants: abc", "setting 'variants' must be an integer >= 1, got 'abc'"),
    ("batch_size: [1, 2]", "setting 'batch_size' must be an integer >= 1 (or null), got [1, 2]"),
    ("seed: x", "setting 'seed' must be an integer >= 0, got 'x'"),
    ("limit: 0", "setting 'limit' must be an integer >= 1 (or null), got 0"),
    ("filters: 3", "setting 'filters' must be a list (or null), got 3"),
    ("generator_settings: 5", "setting 'generator_settings' must be a mapping (key: value) (or null), got 5"),
])
def test_yaml_run_settings_checked_naming_key_and_file(world, tmp_path, yaml_text, message):
    store = fresh_copy(world, tmp_path)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml_text + "\n")
    line = one_error_line(run_console("expand", store, "--config", cfg))
    assert line == f"Error: --config {cfg}: {message}"
    site = tmp_path / "site.yaml"
    site.write_text("expand:\n  " + yaml_text + "\n")
    line = one_error_line(run_console("expand", store, env={"REIDKIT_CONFIG": str(site)}))
    assert line == f"Error: $REIDKIT_CONFIG {site} (expand:): {message}"
    assert not Path(str(store) + ".parts").exists()
