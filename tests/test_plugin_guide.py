"""docs/plugins.md's one-example-per-kind package (tests/plugin_packages/reidkit-guide), installed with its real
metadata and used through the real CLI: the ``lower-half`` masker, the ``outfit-list`` prompt source, the
``not-flat`` filter, the ``tiny-cnn`` backbone and the ``softmax`` strategy. The docs show its files verbatim."""
import csv
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import one_error_line, run_console
from tests.train_helpers import make_store

PACKAGE = Path(__file__).parent / "plugin_packages" / "reidkit-guide"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
# two epochs of two P2 x K2 batches of 64 x 32 images, on the CPU
TINY_TRAIN = ("--epochs", "2", "--steps-per-epoch", "2", "--batch", "2,2", "--height", "64", "--width", "32",
              "--num-workers", "0", "--device", "cpu")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """reidkit-guide pip-installed into a folder (real dist-info, real entry points), as test_plugins.py installs
    reidkit-example; built from a copy, so setuptools' build/ and *.egg-info never land in the source tree."""
    source = tmp_path_factory.mktemp("source") / "reidkit-guide"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="module")
def env(site):
    return {"PYTHONPATH": str(site), "REIDKIT_LOAD_PLUGINS": "guide"}


def installed(site, module):
    """A module of the installed package, loaded from its file (the test process does not import the site)."""
    spec = importlib.util.spec_from_file_location(f"guide_{module}", site / "reidkit_guide" / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


# -- a store whose crops we drew: a textured person box on a flat background, and two flat crops -----------------
FLAT = ("train/001_2_c2_000122.png", "train/003_2_c1_000321.png")


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """An LTCC-layout folder of 64 x 32 PNG crops; returns (folder, {store path: person box or None})."""
    import cv2

    root = tmp_path_factory.mktemp("crops") / "LTCC_ReID"
    names = {"train": [f"{pid:03d}_{outfit}_c{cam}_{pid * 100 + outfit * 10 + cam:06d}.png"
                       for pid in (1, 2, 3, 4) for outfit in (1, 2) for cam in (1, 2)],
             "query": ["005_1_c1_000005.png", "006_1_c1_000006.png"],
             "test": ["005_1_c2_000015.png", "005_2_c3_000025.png", "006_1_c2_000016.png", "006_2_c3_000026.png"]}
    boxes = {}
    for split, files in names.items():
        (root / split).mkdir(parents=True)
        for n, name in enumerate(files):
            path = f"{split}/{name}"  # as the store records it
            if path in FLAT:
                image, boxes[path] = np.full((64, 32, 3), (90, 140, 200), np.uint8), None
            else:  # a dark textured person (every channel < 60) on a light flat background (every channel > 140)
                top, left = 4 + n % 5, 6 + n % 4
                boxes[path] = (top, top + 50, left, left + 16)
                image = np.empty((64, 32, 3), np.uint8)
                image[:] = (150 + n, 160, 170 - n)
                image[top:top + 50, left:left + 16] = np.random.default_rng(n).integers(0, 60, (50, 16, 3))
            assert cv2.imwrite(str(root / split / name), image[..., ::-1])
    return root, boxes


def adapt(crops, path, env):
    r = run_console("adapt", "ltcc", "--root", crops[0], "--out", path, env=env)
    assert r.returncode == 0, r.stderr
    return path


def expected_label_map(box, waist):
    """What masker.py says: the person's box is label 1, from ``waist`` of its height down label 2 (clothing)."""
    out = np.zeros((64, 32), np.uint8)
    if box is not None:
        top, bottom, left, right = box
        out[top:bottom, left:right] = 1
        out[top + int(waist * (bottom - top)):bottom, left:right] = 2
    return out


def expand(store, env, *args):
    r = run_console("expand", store, "--generator", "recolor", "--json", *args, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- the docs ------------------------------------------------------------------------------------------------
def test_docs_show_every_file_of_the_package_verbatim():
    """Each file of reidkit-guide appears in docs/plugins.md as a code block labelled with its path, byte for byte."""
    shown = dict(re.findall(r"^`(reidkit-guide/[^`]+)`:\n\n```[a-z]*\n(.*?)^```$", DOCS.read_text(), re.S | re.M))
    files = {f"reidkit-guide/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*")
             if p.is_file() and p.suffix in (".py", ".toml") and not {"build", "__pycache__"} & set(p.relative_to(PACKAGE).parts)}
    assert set(shown) == files
    for label, block in shown.items():
        assert block == (PACKAGE.parent / label).read_text(), f"docs/plugins.md shows an outdated {label}"


# -- discovery -----------------------------------------------------------------------------------------------
def test_plugins_lists_one_registration_of_each_kind(env):
    r = run_console("plugins", "--json", env=env)
    assert r.returncode == 0, r.stderr
    guide = next(p for p in json.loads(r.stdout) if p["name"] == "guide")
    assert guide["distribution"] == "reidkit-guide" and guide["version"] == "0.1.0" and not guide["builtin"]
    assert guide["error"] is None and guide["refused"] == []
    assert guide["registers"] == {"adapters": [], "maskers": ["lower-half"], "prompt_sources": ["outfit-list"],
                                  "generators": [], "filters": ["not-flat"], "backbones": ["tiny-cnn"],
                                  "strategies": ["softmax"], "commands": []}
    r = run_console("plugins", "guide", "--json", env=env)
    settings = json.loads(r.stdout)["settings"]
    assert settings["maskers"]["lower-half"]["waist"] == {**settings["maskers"]["lower-half"]["waist"], "default": 0.5,
                                                          "type": "float", "min": 0, "max": 1}
    assert settings["prompt_sources"]["outfit-list"]["seed"]["type"] == "int"
    assert settings["filters"]["not-flat"]["min_std"]["default"] == 3.0
    assert settings["strategies"]["softmax"]["label_smoothing"]["max_open"] is True
    r = run_console("plugins", "not-flat", env=env)
    assert r.returncode == 0 and "filter 'not-flat'" in r.stdout and "min_std: float = 3.0 (>= 0)" in r.stdout


def test_modules_keep_heavy_libraries_out_of_import(site):
    code = ("import sys, reidkit_guide.masker, reidkit_guide.prompts, reidkit_guide.filter, reidkit_guide.backbone, "
            "reidkit_guide.strategy; print([m for m in ('torch', 'timm', 'cv2') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# -- masker --------------------------------------------------------------------------------------------------
def test_masker_labels_the_lower_part_of_the_person_box(env, crops, tmp_path):
    import reidkit

    store = adapt(crops, tmp_path / "ltcc.h5", env)
    r = run_console("mask", store, "--masker", "lower-half", "--split", "all", "--mask-set", "waist=0.25", "--name",
                    "quarter", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["covered"], out["labels"], out["clothing"]) == (22, ["background", "person", "lower-body"], ["lower-body"])
    opened = reidkit.open_store(store)
    masks = opened.mask_sets()["quarter"]
    for index, path in enumerate(opened.image_paths):
        assert (masks.label_map(index) == expected_label_map(crops[1][str(path)], 0.25)).all(), path
    # a bad value is refused in one line, before anything is computed
    line = one_error_line(run_console("mask", store, "--masker", "lower-half", "--mask-set", "waist=2", env=env))
    assert line == "Error: masker 'lower-half': setting 'waist' must be a number >= 0 and <= 1, got 2"
    assert set(reidkit.open_store(store).mask_sets()) == {"quarter"}


def test_masker_named_by_expand_limits_the_repainting_to_its_clothing(env, crops, tmp_path):
    import reidkit

    store = adapt(crops, tmp_path / "ltcc.h5", env)
    summary = expand(store, env, "--masker", "lower-half", "--variants", "1")
    assert summary["masker"] == "lower-half" and summary["generated"] == 16
    opened = reidkit.open_store(store)
    run = opened.run(summary["run"])
    for item, source in enumerate(run.source_index()):
        box = crops[1][str(opened.image_paths[source])]
        clothing = expected_label_map(box, 0.5) == 2  # expand computed the masks itself, with the default waist
        changed = (run.image(item) != opened.image(source)).any(axis=2)
        assert not (changed & ~clothing).any()  # nothing outside the lower half of the box
        if box is None:  # a flat crop: no person, no clothing, nothing repainted
            assert not changed.any()
        else:
            assert changed[clothing].mean() > 0.9


# -- prompt source -------------------------------------------------------------------------------------------
def test_prompt_source_gives_outfits_of_its_list_drawn_from_its_seed(env, crops, tmp_path, site):
    import reidkit

    prompts = installed(site, "prompts")
    listed = {", ".join(outfit) for outfit in prompts.OUTFITS}

    def targets(store, seed, name):
        summary = expand(store, env, "--masker", "lower-half", "--prompts", "outfit-list", "--prompt-set", f"seed={seed}",
                         "--variants", "2", "--name", name)
        assert summary["prompts"] == "outfit-list" and summary["chosen_by"]["prompts"] == "given"
        run = reidkit.open_store(store).run(name)
        assert run.settings["prompt_settings"] == {"seed": seed}
        pairs = set(zip(run.column("target_clothes_key").tolist(), run.column("prompt").tolist()))
        by_key = dict(pairs)
        assert len(by_key) == len(pairs)  # one outfit per clothes key
        return by_key

    first = targets(adapt(crops, tmp_path / "a.h5", env), 3, "seed3")
    assert set(first.values()) <= listed and len(first) == 8  # every outfit of the training split is a target
    # the seed decides, in another process on another store
    other_store = adapt(crops, tmp_path / "b.h5", env)
    assert targets(other_store, 3, "seed3") == first
    assert targets(other_store, 4, "seed4") != first
    line = one_error_line(run_console("expand", other_store, "--prompts", "outfit-list", "--prompt-set", "seed=-1", env=env))
    assert line == "Error: prompt source 'outfit-list': setting 'seed' must be an integer >= 0, got -1"


# -- filter --------------------------------------------------------------------------------------------------
def test_filter_rejects_exactly_the_flat_images(env, crops, tmp_path):
    import reidkit

    store = adapt(crops, tmp_path / "ltcc.h5", env)
    summary = expand(store, env, "--masker", "lower-half", "--filter", "not-flat", "--variants", "2", "--name", "judged")
    assert (summary["generated"], summary["rejected"]) == (32, 4)
    assert summary["reject_reasons"] == {"not-flat: flat": 4}
    opened = reidkit.open_store(store)
    run = opened.run("judged")
    flat_sources = {i for i, path in enumerate(opened.image_paths) if str(path) in FLAT}
    assert len(flat_sources) == 2
    rejected = {int(s) for s, kept in zip(run.source_index(), run.kept()) if not kept}
    assert rejected == flat_sources and (~run.kept()).sum() == 4  # both variants of each flat crop, nothing else
    stds = [run.scores(i)["not-flat.std"] for i in range(len(run.kept()))]
    assert all((std == 0) == (int(s) in flat_sources) for std, s in zip(stds, run.source_index()))
    assert min(std for std, kept in zip(stds, run.kept()) if kept) > 3
    # its setting is used: nothing is below a threshold of 0
    summary = expand(store, env, "--masker", "lower-half", "--filter", "not-flat:min_std=0", "--variants", "1", "--name", "lenient")
    assert summary["rejected"] == 0 and summary["kept"] == 16
    line = one_error_line(run_console("expand", store, "--filter", "not-flat:min_std=abc", env=env))
    assert line == "Error: filter 'not-flat': setting 'min_std' must be a number >= 0, got 'abc'"


# -- backbone ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("world"), ids=6, outfits=2, cameras=2)


def test_backbone_trains_and_evaluates(env, world, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "run"
    r = run_console("train", world, "--strategy", "softmax", "--backbone", "tiny-cnn", "--set", "backbone.channels=8",
                    "--set", "backbone.feature_dim=32", *TINY_TRAIN, "--out", out, "--json", env=env)
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["backbone"] == {"plugin": "tiny-cnn", "channels": 8, "feature_dim": 32, "resolved_weights": None}
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    assert shapes["backbone.trunk.0.weight"] == (8, 3, 3, 3)  # channels
    assert shapes["backbone.embed.weight"] == (32, 32)  # feature_dim x (channels * 2 ** (blocks - 1))
    assert shapes["heads.classifier.weight"] == (config["data"]["num_classes"], 32)  # the heads read feature_dim
    features = tmp_path / "features.npz"
    r = run_console("eval", world, "--checkpoint", out, "--save-features", features, "--json", env=env)
    assert r.returncode == 0, r.stderr
    results = {p["protocol"]: p for p in json.loads(r.stdout)}
    assert results["standard"]["epoch"] == 2 and results["standard"]["queries"] > 0
    assert 0 <= results["standard"]["mAP"] <= 1
    saved = np.load(features)
    assert saved["features"].shape[1] == 32 and np.isfinite(saved["features"]).all()


@pytest.mark.parametrize("setting, message", [
    ("backbone.chanels=8", "Error: unknown backbone setting(s) in option --set backbone: chanels "
                           "(backbone 'tiny-cnn' takes: blocks, channels, feature_dim, plugin)"),
    ("backbone.channels=abc", "Error: setting 'backbone.channels' from option --set backbone: expected an integer >= 1, got 'abc'"),
])
def test_a_mistyped_backbone_setting_is_refused_in_one_line_before_the_run(env, world, tmp_path, setting, message):
    out = tmp_path / "run"
    line = one_error_line(run_console("train", world, "--strategy", "softmax", "--set", setting, *TINY_TRAIN, "--out", out,
                                      env=env))
    assert line == message
    assert not (out / "config.yaml").exists()


def test_backbone_with_a_built_in_strategy(env, world, tmp_path):
    """What docs/training.md promises (--backbone NAME picks a registered backbone plugin) with the default strategy:
    baseline's defaults carry the timm backbone's settings, which another plugin starts without."""
    r = run_console("train", world, "--strategy", "baseline", "--backbone", "tiny-cnn", *TINY_TRAIN, "--out",
                    tmp_path / "run", env=env)
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["backbone"] == {"plugin": "tiny-cnn", "resolved_weights": None}  # none of timm's keys came along


# -- strategy ------------------------------------------------------------------------------------------------
def test_strategy_trains_with_its_loss_and_schedule_and_evaluates(env, world, tmp_path):
    from reidkit.training.config import COMMON

    out = tmp_path / "run"
    r = run_console("train", world, "--strategy", "softmax", "--set", "warmup_epochs=1", *TINY_TRAIN, "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert "softmax_ce" in rows[0] and not {"id", "triplet"} & set(rows[0])  # its loss, no one else's
    assert all(np.isfinite(float(row["softmax_ce"])) for row in rows)
    # its lr_factor: warm-up (epoch 0: 1/2), then the cosine from its top (epoch 1 of 2: factor 1)
    assert [float(row["lr"]) for row in rows] == pytest.approx([3.5e-4 / 2, 3.5e-4])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["strategy"] == "softmax" and config["backbone"]["plugin"] == "tiny-cnn"
    assert (config["label_smoothing"], config["min_lr_factor"], config["warmup_epochs"]) == (0.1, 0.01, 1)
    # every shared setting neither given by TINY_TRAIN nor in the strategy's own defaults is reidkit's
    own = {"epochs", "backbone", "warmup_epochs", "min_lr_factor", "label_smoothing"}  # strategy.py's defaults
    given = {"device", "num_workers", "max_steps_per_epoch", "ids_per_batch", "images_per_id", "height", "width"} | own
    assert {k: config[k] for k in COMMON if k not in given} == {k: v for k, v in COMMON.items() if k not in given}
    r = run_console("eval", world, "--checkpoint", out, "--protocol", "standard", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["epoch"] == 2


@pytest.mark.parametrize("setting, message", [
    ("label_smoothing=1", "Error: setting 'label_smoothing' from option --set label_smoothing: expected a number >= 0 "
                          "and < 1, got 1 (int)"),
    ("min_lr_factor=-0.5", "Error: setting 'min_lr_factor' from option --set min_lr_factor: expected a number >= 0 "
                           "and <= 1, got -0.5 (float)"),
])
def test_a_bad_strategy_setting_is_refused_in_one_line_before_the_run(env, world, tmp_path, setting, message):
    out = tmp_path / "run"
    line = one_error_line(run_console("train", world, "--strategy", "softmax", "--set", setting, "--out", out, env=env))
    assert line == message
    assert not out.exists()
