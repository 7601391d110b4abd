"""The run around the methods, as their reference code runs it (shared/methods.md 1.6; issue 25).

Every expected number here is worked by hand from the reference's definition:
CAL's and BoT's identity samplers, BoT's warm-up as its scheduler is stepped,
CAL's video recipe and its plain cross-entropy, float32 training, P x K as the
global batch.
"""
from __future__ import annotations

import numpy as np
import pytest

from reidkit.errors import ReidkitError
from reidkit.training.config import read_config_file, resolve_config
from reidkit.training.data import GENERATED, REAL, TrainItems
from reidkit.training.samplers import IdentityBatchSampler


def hand_items(sizes, variants_of_first=0) -> TrainItems:
    """Persons with ``sizes`` real images each (person c's images numbered in a row), and, optionally,
    ``variants_of_first`` generated variants of each of person 0's images."""
    label = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)]).astype(np.int64)
    n = len(label)
    kind, source, variant = np.zeros(n, np.int64), np.arange(n), np.full(n, -1)
    if variants_of_first:
        src = np.repeat(np.arange(sizes[0]), variants_of_first)
        kind = np.concatenate([kind, np.full(len(src), GENERATED)])
        source = np.concatenate([source, src])
        variant = np.concatenate([variant, np.tile(np.arange(variants_of_first), sizes[0])])
        label = np.concatenate([label, np.zeros(len(src), np.int64)])
    m = len(label)
    return TrainItems(kind=kind, ref=np.arange(m), run=np.where(kind == REAL, -1, 0), label=label,
                      clothes=np.where(kind == REAL, 0, -1), source=source, variant=variant,
                      run_names=["gen"] if variants_of_first else [], num_classes=len(sizes), num_clothes=1,
                      label_of_pid={c: c for c in range(len(sizes))}, clothes_of_class=[[0]] * len(sizes))


# --- 3. the identity sampler ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("epoch", [0, 3])
def test_cal_sampler_uses_every_group_once(seed, epoch):
    # persons of 64, 8, 8, 8, 8 images, K = 8: groups 8 + 1 + 1 + 1 + 1 = 12; P = 2 consecutive groups a batch:
    # 12 / 2 = 6 batches, 6 x 2 x 8 = 96 rows: every image exactly once
    items = hand_items([64, 8, 8, 8, 8])
    batches = IdentityBatchSampler(items, 2, 8, seed=seed, kind="cal").batches(epoch)
    assert len(batches) == 6
    rows = [i for b in batches for i, _ in b]
    assert sorted(rows) == list(range(96))
    for b in batches:  # two groups of 8 images, each group one person's (a batch may hold two of person 0's)
        labels = items.label[[i for i, _ in b]]
        assert len(set(labels[:8])) == 1 and len(set(labels[8:])) == 1


def test_cal_sampler_can_pair_two_groups_of_one_person():
    items = hand_items([64, 8, 8, 8, 8])
    twice = 0
    for seed in range(20):
        for b in IdentityBatchSampler(items, 2, 8, seed=seed, kind="cal").batches(0):
            twice += items.label[b[0][0]] == items.label[b[8][0]]
    assert twice > 0  # person 0 holds 8 of the 12 groups: batches of two of its groups must happen


def test_bot_sampler_drops_the_largest_persons_groups():
    # BoT: P = 2 distinct persons per batch while two persons have groups. Every batch holds at least one of the
    # four one-group persons, so at most 4 batches (64 of the 96 images); person 0 can use at most 4 of its 8 groups
    items = hand_items([64, 8, 8, 8, 8])
    for seed in range(10):
        batches = IdentityBatchSampler(items, 2, 8, seed=seed, kind="bot").batches(0)
        assert 2 <= len(batches) <= 4
        for b in batches:
            labels = items.label[[i for i, _ in b]]
            assert labels[0] != labels[8] and (labels[0] != 0 or labels[8] != 0)
        assert sum(1 for b in batches for i, _ in b if items.label[i] == 0) <= 32


def test_cal_sampler_fills_a_small_person_with_replacement():
    # CAL: a person with fewer than K images gives one group of K drawn with replacement
    items = hand_items([3, 8])
    batches = IdentityBatchSampler(items, 2, 8, seed=0, kind="cal").batches(0)
    assert len(batches) == 1
    rows = [i for i, _ in batches[0]]
    small = [i for i in rows if items.label[i] == 0]
    assert len(small) == 8 and set(small) <= {0, 1, 2}


def test_sampler_epoch_is_a_function_of_seed_and_epoch_alone():
    # a resumed run (a fresh sampler) sees exactly the batches the uninterrupted run saw
    items = hand_items([64, 8, 8, 8, 8])
    run = IdentityBatchSampler(items, 2, 8, seed=3, kind="cal")
    seen = [run.batches(e) for e in range(4)]
    assert IdentityBatchSampler(items, 2, 8, seed=3, kind="cal").batches(2) == seen[2]
    assert seen[0] != seen[1]


def test_strategies_choose_their_references_sampler():
    assert resolve_config("cal")["sampler"] == "cal"
    assert resolve_config("baseline")["sampler"] == "bot"
    assert resolve_config("progressive", {}, {"generated": ["g"]})["sampler"] == "cal"
    assert resolve_config("progressive", {}, {"generated": ["g"], "base": "baseline"})["sampler"] == "bot"
    with pytest.raises(ReidkitError, match="sampler"):
        resolve_config("cal", {"sampler": "random"})


# --- 2. the global batch ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cal", "bot"])
@pytest.mark.parametrize("world", [2, 4])
def test_ranks_share_one_global_batch(kind, world):
    # P x K per optimiser step whatever the number of processes: the ranks' shares together are the single
    # process's batch, with the same sample seeds (so the same augmentations)
    items = hand_items([16, 16, 16, 16, 16, 16, 16, 16])
    single = IdentityBatchSampler(items, 4, 4, seed=5, kind=kind).batches(1)
    shares = [IdentityBatchSampler(items, 4, 4, seed=5, kind=kind, rank=r, world=world).batches(1) for r in range(world)]
    assert all(len(s) == len(single) for s in shares)
    for step, batch in enumerate(single):
        groups = [batch[g * 4:(g + 1) * 4] for g in range(4)]
        for r in range(world):
            assert shares[r][step] == [row for g in groups[r::world] for row in g]


def test_ranks_share_paired_batches_with_their_partners():
    items = hand_items([8, 8, 8, 8], variants_of_first=2)
    limit = lambda e, v: 2  # noqa: E731
    single = IdentityBatchSampler(items, 2, 4, seed=2, variant_limit=limit, kind="cal").batches(0)
    r0, r1 = (IdentityBatchSampler(items, 2, 4, seed=2, variant_limit=limit, kind="cal", rank=r, world=2).batches(0)
              for r in (0, 1))
    for a, b, whole in zip(r0, r1, single):
        # the single process: 8 real rows (2 groups of 4), then their 8 partners in the same order
        assert a == whole[0:4] + whole[8:12] and b == whole[4:8] + whole[12:16]


def test_global_batch_must_split_evenly():
    items = hand_items([8, 8, 8])
    with pytest.raises(ReidkitError, match="multiple of the 2 processes"):
        IdentityBatchSampler(items, 3, 4, seed=0, kind="cal", world=2)


def test_reference_batches():
    cal = resolve_config("cal")
    assert (cal["ids_per_batch"], cal["images_per_id"]) == (8, 8)  # CAL: 2 processes x (4 persons x 8 images)
    dlcr = resolve_config("progressive", {}, {"generated": ["g"]})
    assert (dlcr["ids_per_batch"], dlcr["images_per_id"]) == (4, 8)  # DLCR: one process, 4 x 8 real + partners
    bot = resolve_config("baseline")
    assert (bot["ids_per_batch"], bot["images_per_id"]) == (16, 4)


# --- 4. precision ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", ["baseline", "cal", "progressive", "pretrain"])
def test_float32_by_default(plugin):
    from reidkit.training.engine import _amp_dtype

    config = resolve_config(plugin, {}, {"generated": ["g"]} if plugin == "progressive" else {})
    assert config["amp"] == "none"
    assert _amp_dtype(config["amp"], "cuda") is None  # no autocast even on a GPU
    assert _amp_dtype("bf16", "cuda") is not None  # the opt-in stays


# --- 7. BoT's learning rate as its code runs it -------------------------------------------------------------

def test_bot_warmup_as_its_scheduler_is_stepped():
    from reidkit.plugins.strategies.baseline import BaselineStrategy

    strategy = BaselineStrategy(resolve_config("baseline"))
    # WarmupMultiStepLR stepped at each epoch's start: 0-based epoch e reads index e + 1;
    # factor 0.01 (1 - a) + a with a = (e + 1) / 10, i.e. 0.109, 0.208, ..., 0.901; 1 from e = 9
    expected = {0: 0.109, 1: 0.208, 2: 0.307, 3: 0.406, 4: 0.505, 5: 0.604, 6: 0.703, 7: 0.802, 8: 0.901,
                9: 1.0, 38: 1.0, 39: 0.1, 68: 0.1, 69: 0.01, 119: 0.01}
    for epoch, factor in expected.items():
        assert strategy.lr_factor(epoch) == pytest.approx(factor, abs=1e-12), epoch


def test_bot_paper_schedule_stays_a_setting():
    from reidkit.plugins.strategies.baseline import BaselineStrategy

    paper = BaselineStrategy(resolve_config("baseline", {"warmup_factor": 0.1, "schedule_offset": 0}))
    # the paper's wording: from 0.1 of the rate, linearly over 10 epochs, x0.1 at epoch 40 and 70
    assert [round(paper.lr_factor(e), 12) for e in (0, 5, 9, 10, 39, 40, 69, 70)] == [0.1, 0.55, 0.91, 1.0, 1.0, 0.1, 0.1, 0.01]


def test_cal_steps_after_each_epoch():
    from reidkit.plugins.strategies.cal import CalStrategy

    cal = CalStrategy(resolve_config("cal"))  # MultiStepLR stepped at each epoch's end: epoch 20 is the first at 0.1
    assert [cal.lr_factor(e) for e in (0, 19, 20, 39, 40, 59)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_engine_runs_the_bot_factors(tmp_path):
    # the engine's scheduler reads the strategy's factor per epoch: log.csv's lr of epochs 1 and 2 (0-based 0 and 1)
    import csv

    from reidkit.training.engine import train
    from tests.train_helpers import make_store, tiny_config

    store = make_store(tmp_path)
    config = tiny_config("baseline", epochs=2, max_steps_per_epoch=1)
    train(store, config, tmp_path / "run", progress=False)
    lrs = [float(r["lr"]) for r in csv.DictReader((tmp_path / "run" / "log.csv").open())]
    assert lrs == pytest.approx([3.5e-4 * 0.109, 3.5e-4 * 0.208])


# --- 1. CAL's video recipe -------------------------------------------------------------------------------

CAL_VIDEO = {  # configs/default_vid.py + c2dres50_ce_cal.yaml, two processes (script.sh)
    "strategy": "cal", "clip_len": 8, "clip_stride": 4, "clip_chunk": 64, "height": 256, "width": 128,
    "ids_per_batch": 8, "images_per_id": 4, "sampler": "cal", "epochs": 150, "milestones": [40, 80, 120], "gamma": 0.1,
    "warmup_epochs": 0, "label_smoothing": 0.0, "triplet_weight": 0.0, "clothes_scale": 16.0, "cal_epsilon": 0.1,
    "clothes_start_epoch": 50, "adversarial_start_epoch": 50, "amp": "none", "test_flip": False,
    "resize": "pil-bicubic",
}


def test_cal_video_recipe_ships_every_video_value():
    recipe = read_config_file("cal-video")
    config = resolve_config(None, recipe)
    for key, value in CAL_VIDEO.items():
        assert config[key] == value, key
    assert float(config["lr"]) == 3.5e-4 and float(config["weight_decay"]) == 5e-4
    assert config["augment"]["crop_prob"] == 0.0 and config["augment"]["erase"] == 0.0 and config["augment"]["flip"] == 0.5
    assert config["backbone"]["pooling"] == "max"


def test_cal_video_recipe_trains_identity_with_plain_cross_entropy():
    import torch

    from reidkit.plugins.strategies.cal import CalStrategy

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([0])
    # plain CE: log(e^2 + e^0 + e^-1) - 2 = log(8.7571) - 2 = 0.1698460
    video = CalStrategy(resolve_config(None, read_config_file("cal-video")))
    loss = video.identity_losses({"logits": logits, "feat": torch.zeros(1, 4)}, {"label": target})["id"]
    assert float(loss) == pytest.approx(0.1698460, abs=1e-7)
    # the image recipe smooths (eps 0.1 over 3 classes): 0.9 x 0.1698460 + 0.1 x mean(0.1698460, 2.1698460, 3.1698460)
    image = CalStrategy(resolve_config("cal"))
    loss = image.identity_losses({"logits": logits, "feat": torch.zeros(1, 4)}, {"label": target})["id"]
    assert float(loss) == pytest.approx(0.9 * 0.1698460 + 0.1 * (0.1698460 + 2.1698460 + 3.1698460) / 3, abs=1e-6)


def test_clips_default_to_no_flip_and_an_unknown_recipe_is_one_line():
    assert resolve_config("cal")["test_flip"] is True
    assert resolve_config("cal", {}, {"clip_len": 8})["test_flip"] is False  # CAL's video test: no mirror
    assert resolve_config("cal", {"test_flip": True}, {"clip_len": 8})["test_flip"] is True  # said explicitly: kept
    assert resolve_config("baseline")["test_flip"] is False
    with pytest.raises(ReidkitError, match="not a recipe \\(cal-video\\)"):
        read_config_file("cal-vidoe")


def test_cal_video_recipe_through_the_cli(tmp_path):
    # --config takes the recipe's name: the run's config.yaml holds the video values (a 1-step run on a tiny video
    # store is tested in test_video.py; here the recipe's settings reach the run folder through the installed CLI)
    from tests.helpers import run_console
    from tests.train_helpers import make_store

    store = make_store(tmp_path)
    out = tmp_path / "run"
    proc = run_console("train", str(store), "--config", "cal-video", "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1",
                   "--device", "cpu", "--weights", "none", "--backbone", "resnet18", "--height", "64", "--width", "32",
                   "--batch", "2,2", "--clip-len", "0", "--num-workers", "0")
    assert proc.returncode == 0, proc.stderr
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["label_smoothing"] == 0.0 and config["resize"] == "pil-bicubic" and config["milestones"] == [40, 80, 120]
    assert config["test_flip"] is False and config["clothes_start_epoch"] == 50
    bad = run_console("train", str(store), "--config", "cal-vidoe", "--out", str(tmp_path / "r2"))
    assert bad.returncode != 0 and "not a recipe (cal-video)" in bad.stderr and "Traceback" not in bad.stderr
