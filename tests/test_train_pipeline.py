"""The training pipeline built for GPU speed, checked on the CPU: uint8 batches normalised and erased on the device,
persistent workers, device-side loss sums read back every N steps, checkpoint policy, padded progressive batches,
opt-in torch.compile."""
import math

import numpy as np
import pytest
import torch
from tests.train_helpers import make_store, tiny_config, write_run

from reidkit import open_store
from reidkit.errors import ReidkitError
from reidkit.training import checkpoint as ckpt
from reidkit.training.data import (BOT_AUGMENT, TrainDataset, augment, build_items, device_normalise_and_erase, erase_boxes,
                                   erase_generator, normalise, resize)
from reidkit.training.engine import EpochLog, LossMeter, train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    store = make_store(d)
    write_run(store, "gen", variants=2, reject={(0, 0), (0, 1)})  # image 0: no kept variant -> a padding row
    return store


def _bytes(run):
    return (run / "model.safetensors").read_bytes()


def _log(run):
    """log.csv without its timing columns (seconds, images/s, data wait): the rest is deterministic."""
    import csv

    with (run / "log.csv").open() as f:
        return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s", "data_wait_share")} for row in csv.DictReader(f)]


def _dirs(run):
    return [d.name for d in ckpt.checkpoint_dirs(run)]


# -- uint8 batches, normalisation and erasing on the device ----------------------------------------------------
def test_workers_hand_over_uint8_images_and_the_device_step_normalises_like_test_time(world):
    store = open_store(world)
    items = build_items(store, [])
    ds = TrainDataset(store, items, 64, 32, augment_images=False)
    sample = ds[(3, 0)]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 64, 32) and sample["valid"]
    x = device_normalise_and_erase(sample["image"][None])[0]
    assert torch.equal(x, torch.from_numpy(normalise(resize(store.image(int(items.ref[3])), 64, 32))))  # eval's values, bit for bit
    padding = ds[(~3, 0)]  # a padding row: the same image, out of every loss, no clothes label
    assert not padding["valid"] and padding["clothes"] == -1 and torch.equal(padding["image"], sample["image"])


def test_erasing_follows_the_reference_rule_and_its_seed():
    boxes = erase_boxes(4000, 64, 32, 0.5, erase_generator(0, 1, 2))
    assert torch.equal(boxes, erase_boxes(4000, 64, 32, 0.5, erase_generator(0, 1, 2)))  # (seed, epoch, step): same draw
    assert not torch.equal(boxes, erase_boxes(4000, 64, 32, 0.5, erase_generator(0, 1, 3)))
    erased = boxes[:, 2] > 0
    assert 0.45 < float(erased.float().mean()) < 0.55  # probability 0.5
    y, x, h, w = boxes[erased].T
    assert (h < 64).all() and (w < 32).all() and (y >= 0).all() and (x >= 0).all() and (y + h <= 64).all() and (x + w <= 32).all()
    area = (h * w).double() / (64 * 32)
    assert float(area.min()) >= 0.015 and float(area.max()) <= 0.45  # 2-40% of the image, up to rounding
    assert (boxes[~erased] == 0).all() and not erase_boxes(50, 64, 32, 0.0, erase_generator(0, 0, 0)).any()
    # the rectangles are filled with the reference's value, in normalised units; everything else is untouched
    images = torch.randint(0, 256, (3, 3, 16, 8), dtype=torch.uint8)
    fill = [0.25, -0.5, 0.75]
    boxes = torch.tensor([[2, 1, 4, 3], [0, 0, 0, 0], [15, 7, 1, 1]])
    out = device_normalise_and_erase(images, boxes, fill)
    plain = device_normalise_and_erase(images)
    inside = torch.zeros(3, 16, 8, dtype=torch.bool)
    inside[0, 2:6, 1:4] = True
    inside[2, 15, 7] = True
    for c in range(3):
        assert torch.all(out[:, c][inside] == fill[c])
    assert torch.equal(out.permute(1, 0, 2, 3)[:, ~inside], plain.permute(1, 0, 2, 3)[:, ~inside])


def test_the_one_image_transform_keeps_the_references_crop_and_erase():
    image = (np.arange(16 * 8 * 3) % 251).astype(np.uint8).reshape(16, 8, 3)
    fill = [0.25, -0.5, 0.75]
    erased = augment(image, 16, 8, np.random.default_rng(2), {"crop": "pad", "pad": 0, "flip": 0.0, "erase": 1.0, "erase_fill": fill})
    changed = (erased != normalise(image)).any(0)
    assert changed.any() and all(np.allclose(erased[c][changed], fill[c]) for c in range(3))
    assert BOT_AUGMENT["erase"] == 0.5 and BOT_AUGMENT["erase_fill"] == [0.485, 0.456, 0.406]  # BoT's defaults, unchanged


# -- same seed, same bytes; exact resume with persistent workers ----------------------------------------------
def test_same_seed_gives_the_same_weight_bytes_with_0_and_2_workers(world, tmp_path):
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        train(world, tiny_config("baseline", epochs=2, num_workers=workers, warmup_epochs=0), out, progress=False, max_steps=2)
        runs[workers] = _bytes(out)
    assert runs[0] == runs[2]
    train(world, tiny_config("baseline", epochs=2, num_workers=0, warmup_epochs=0, seed=1), tmp_path / "s1", progress=False, max_steps=2)
    assert _bytes(tmp_path / "s1") != runs[0]  # the seed does matter


def test_checkpoint_policy_and_exact_resume_with_persistent_workers(world, tmp_path, monkeypatch):
    """Checkpoints at epochs 2 and 4 (every 2, the last always); a kill after epoch 3 resumes from epoch 2's
    checkpoint and ends with the bytes of the uninterrupted run (2 persistent workers, paired batches)."""
    settings = dict(generated=["gen"], epochs=4, checkpoint_every=2, keep_checkpoints=2, num_workers=2, clothes_start_epoch=0,
                    adversarial_start_epoch=1, progress_epochs=[1], progress_fractions=[0.5, 1.0], milestones=[2])
    straight = train(world, tiny_config("progressive", **settings), tmp_path / "a", progress=False, max_steps=2)
    assert _dirs(tmp_path / "a") == ["epoch-0002", "epoch-0004"]
    assert not (tmp_path / "a" / "ranks").exists()  # parameter checksums only when asked for (check_sync)

    real_add = EpochLog.add

    def killed(self, row):
        real_add(self, row)
        if row["epoch"] == 3:
            raise KeyboardInterrupt("killed after epoch 3")

    monkeypatch.setattr(EpochLog, "add", killed)
    with pytest.raises(KeyboardInterrupt):
        train(world, tiny_config("progressive", **settings), tmp_path / "b", progress=False, max_steps=2)
    monkeypatch.undo()
    assert _dirs(tmp_path / "b") == ["epoch-0002"]
    resumed = train(world, tiny_config("progressive", **settings), tmp_path / "b", resume=True, progress=False, max_steps=2)
    assert resumed["epochs_run"] == 2 and resumed["checksum"] == straight["checksum"]
    assert _bytes(tmp_path / "b") == _bytes(tmp_path / "a")
    assert _log(tmp_path / "b") == _log(tmp_path / "a") and len(_log(tmp_path / "a")) == 4
    # keep_checkpoints 1 with a checkpoint every epoch: only the newest folder stays
    train(world, tiny_config("baseline", epochs=3, keep_checkpoints=1), tmp_path / "c", progress=False, max_steps=1)
    assert _dirs(tmp_path / "c") == ["epoch-0003"]


def test_check_sync_writes_the_parameter_hash_of_every_epoch(world, tmp_path):
    import json

    summary = train(world, tiny_config("baseline", epochs=2, check_sync=True), tmp_path / "run", progress=False, max_steps=1)
    hashes = json.loads((tmp_path / "run" / "ranks" / "rank-0.json").read_text())
    assert set(hashes) == {"1", "2"} and hashes["1"] != hashes["2"] and hashes["2"] == summary["checksum"]


# -- losses read back every N steps ------------------------------------------------------------------------------
def test_loss_meter_sums_on_the_device_and_names_the_first_non_finite_step():
    meter = LossMeter("cpu", every=3)
    values = [(1.5, 0.25), (2.0, 0.5), (0.125, 1.0)]
    for step, (a, b) in enumerate(values):
        meter.add(step, torch.tensor(a + b), {"id": torch.tensor(a), "triplet": torch.tensor(b)})
    assert meter.read(0) == {"id": 3.625, "triplet": 1.75}
    meter.add(3, torch.tensor(float("nan")), {"id": torch.tensor(float("nan")), "triplet": torch.tensor(0.0)})
    meter.add(4, torch.tensor(float("inf")), {"id": torch.tensor(1.0), "triplet": torch.tensor(0.0)})
    with pytest.raises(ReidkitError, match=r"^loss became nan at epoch 2 step 4; lower --lr"):
        meter.read(1)
    side = LossMeter("cpu")
    side.add(0, torch.tensor(1.0), {"id": torch.tensor(1.0)}, {"clothes": torch.tensor(float("-inf"))})
    with pytest.raises(ReidkitError, match=r"^clothes loss became -inf at epoch 1 step 1"):
        side.read(0)


def test_reading_losses_every_n_steps_logs_the_per_step_mean(world, tmp_path, monkeypatch):
    from reidkit.plugins.strategies.baseline import BaselineStrategy

    seen = []
    real_loss = BaselineStrategy.loss

    def spy(self, outputs, batch, epoch):
        total, parts = real_loss(self, outputs, batch, epoch)
        seen.append({k: float(v) for k, v in parts.items()})
        return total, parts

    monkeypatch.setattr(BaselineStrategy, "loss", spy)
    logs = {}
    for every in (1, 3):
        seen.clear()
        out = tmp_path / f"every{every}"
        train(world, tiny_config("baseline", log_every_steps=every), out, progress=False, max_steps=4)
        logs[every] = _log(out)
        assert len(seen) == 4
        for name in ("id", "triplet"):  # the logged epoch mean is the per-step values' mean, read back in bulk
            assert float(logs[every][0][name]) == pytest.approx(round(math.fsum(s[name] for s in seen) / 4, 6), abs=1e-6)
    assert logs[1] == logs[3]


# -- progressive: fixed batch shape, padding masked out of the losses ---------------------------------------------
@pytest.mark.parametrize("plugin", ["baseline", "cal"])
def test_padded_rows_change_no_loss(plugin):
    """Six rows, the last two padding (copies of rows 0 and 2, clothes -1): every loss equals the loss of the four
    real rows alone; without the mask they would change it (hand-made example)."""
    from reidkit.plugins.strategies.baseline import BaselineStrategy
    from reidkit.plugins.strategies.cal import CalStrategy

    cls = {"baseline": BaselineStrategy, "cal": CalStrategy}[plugin]
    strategy = cls({**cls.defaults, "adversarial_start_epoch": 0, "clothes_start_epoch": 0, "triplet_weight": 1.0})
    torch.manual_seed(0)
    feat = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.5, 0.0], [4.0, 0.0]])
    pad_feat = torch.tensor([[2.0, 0.0], [0.9, 0.0]])  # would be a nearer negative / a farther positive
    logits = torch.randn(6, 3)
    outputs = {"feat": torch.cat([feat, pad_feat]), "logits": logits, "bn": torch.randn(6, 2), "clothes_cos": torch.rand(6, 4) - 0.5,
               "clothes_weight": torch.randn(4, 2), "clothes_of_person": torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])}
    batch = {"label": torch.tensor([0, 0, 1, 1, 0, 1]), "clothes": torch.tensor([0, 1, 2, 3, -1, -1]),
             "valid": torch.tensor([True, True, True, True, False, False])}
    real_out = {k: v[:4] if k not in ("clothes_weight", "clothes_of_person") else v for k, v in outputs.items()}
    real_batch = {k: v[:4] for k, v in batch.items() if k != "valid"}
    _, padded = strategy.loss(outputs, batch, 0)
    _, plain = strategy.loss(real_out, real_batch, 0)
    assert padded.keys() == plain.keys()
    assert all(float(padded[k]) == pytest.approx(float(plain[k]), rel=1e-6) for k in plain)
    # the triplet term by hand: points 0, 1 (person 0), 1.5, 4 (person 1): hinges 0, .8, 2.3, 0
    assert float(padded["triplet"]) == pytest.approx((0 + 0.8 + 2.3 + 0) / 4, rel=1e-5)
    _, unmasked = strategy.loss(outputs, {k: v for k, v in batch.items() if k != "valid"}, 0)
    assert float(unmasked["triplet"]) != pytest.approx(float(plain["triplet"]))  # the mask is what keeps them out
    if plugin == "cal":
        aux = strategy.auxiliary_losses(outputs, batch, 0)
        assert float(aux["clothes"]) == pytest.approx(float(strategy.auxiliary_losses(real_out, real_batch, 0)["clothes"]), rel=1e-6)


def test_progressive_batches_keep_their_shape_and_count_only_real_rows(world, tmp_path):
    timings = []
    summary = train(world, tiny_config("progressive", generated=["gen"], base="baseline", epochs=1), tmp_path / "run",
                    progress=False, max_steps=3, timings=timings)
    # 3 batches of 2 x 2 x 2 rows; image 0 (no kept variant) leaves a padding row whenever it is drawn
    assert summary["images"] == timings[0]["images"]
    assert 3 * 7 <= summary["images"] <= 3 * 8 and timings[0]["steps"] == 3
    assert set(timings[0]) >= {"loop_s", "first_batch_s", "checkpoint_s", "eval_s", "epoch_s"}


# -- opt-in torch.compile ----------------------------------------------------------------------------------------
def test_compile_trains_a_tiny_epoch(world, tmp_path):
    import shutil

    if not hasattr(torch, "compile"):
        pytest.skip("this torch has no torch.compile")
    if shutil.which("g++") is None and shutil.which("cc") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler, and this machine has none")
    config = tiny_config("baseline", epochs=1, compile=True)
    config["backbone"]["model"] = "resnet10t"  # the smallest ResNet: compiling stays short on a CPU
    try:
        summary = train(world, config, tmp_path / "run", progress=False, max_steps=2)
    except Exception as exc:  # the compiler stack itself missing on this machine, not a reidkit failure
        if "inductor" in repr(exc).lower() or "compile" in type(exc).__name__.lower():
            pytest.skip(f"torch.compile unavailable here: {str(exc).splitlines()[0][:200]}")
        raise
    assert summary["epochs_run"] == 1 and math.isfinite(summary["id"]) and summary["id"] > 0
    assert ckpt.read_config(tmp_path / "run")["compile"] is True


def test_default_worker_count_follows_the_machine(monkeypatch):
    import os

    from reidkit.training.config import COMMON, default_workers

    assert COMMON["num_workers"] is None and COMMON["checkpoint_every"] == 1 and COMMON["keep_checkpoints"] == 2
    assert COMMON["check_sync"] is False and COMMON["compile"] is False
    cpus = len(os.sched_getaffinity(0))
    assert default_workers() == min(8, cpus)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cpus))
    assert default_workers() == 1
