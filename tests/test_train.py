"""Training: losses against hand computations, sampler and pairing, each strategy's real step, checkpoints and exact resume."""
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tests.train_helpers import make_store, tiny_config, write_run

from reidkit import open_store
from reidkit.errors import ReidkitError
from reidkit.training.data import GENERATED, REAL, build_items, variant_pool_size
from reidkit.training.samplers import IdentityBatchSampler
from tests.train_helpers import train
from reidkit.training.losses import batch_hard_triplet, clothes_adversarial, label_smoothed_ce


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    store = make_store(d)
    write_run(store, "gen", variants=4, reject={(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)})
    return store


# -- losses ---------------------------------------------------------------------
def _log_p(s, j, negatives):
    """CAL's log p_j: class j against the other persons' clothes only."""
    return s[j] - math.log(math.exp(s[j]) + sum(math.exp(s[n]) for n in negatives))


def test_cal_loss_two_outfits_target_is_095_005():
    # one sample of a person owning clothes 0 and 1 (true: 0); clothes 2 is another person's
    cos = [0.5, 0.2, -0.3]
    pos = torch.tensor([[1.0, 1.0, 0.0]])
    # CAL's target: (1 - 0.1) * onehot + 0.1 / |P| * P = [0.95, 0.05, 0]
    expected = -(0.95 * _log_p(cos, 0, [2]) + 0.05 * _log_p(cos, 1, [2]))
    got = clothes_adversarial(torch.tensor([cos]), torch.tensor([0]), pos, scale=1.0, epsilon=0.1)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_cal_loss_one_outfit_puts_all_mass_on_the_true_class():
    cos = [0.1, 0.4, 0.0]
    s = [16.0 * c for c in cos]
    # only clothes 1 is the person's: target (0.9 + 0.1 / 1) = 1 on it, against the two negatives
    expected = -_log_p(s, 1, [0, 2])
    got = clothes_adversarial(torch.tensor([cos]), torch.tensor([1]), torch.tensor([[0.0, 1.0, 0.0]]), scale=16.0, epsilon=0.1)
    assert float(got) == pytest.approx(expected, abs=1e-6)  # float32


def test_cal_loss_three_outfits_and_batch_mean():
    # sample 0: person owns clothes 0, 1, 3 (true 3), clothes 2 and 4 are others'; sample 1: one outfit (clothes 2)
    cos = [[0.3, -0.1, 0.2, 0.6, 0.0], [0.1, 0.2, 0.5, -0.4, 0.3]]
    pos = torch.tensor([[1.0, 1, 0, 1, 0], [0, 0, 1, 0, 0]])
    eps = 0.1
    s0 = [2.0 * c for c in cos[0]]
    s1 = [2.0 * c for c in cos[1]]
    # target of sample 0: 0.9 + 0.1/3 on clothes 3, 0.1/3 on clothes 0 and 1
    l0 = -((1 - eps + eps / 3) * _log_p(s0, 3, [2, 4]) + eps / 3 * _log_p(s0, 0, [2, 4]) + eps / 3 * _log_p(s0, 1, [2, 4]))
    l1 = -_log_p(s1, 2, [0, 1, 3, 4])
    got = clothes_adversarial(torch.tensor(cos), torch.tensor([3, 2]), pos, scale=2.0, epsilon=eps)
    assert float(got) == pytest.approx((l0 + l1) / 2, rel=1e-5)


def test_label_smoothed_ce_and_batch_hard_triplet_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    logp = torch.log_softmax(logits, 1)[0]
    eps = 0.3
    expected = -((1 - eps + eps / 3) * logp[0] + eps / 3 * logp[1] + eps / 3 * logp[2])
    assert float(label_smoothed_ce(logits, torch.tensor([0]), eps)) == pytest.approx(float(expected), rel=1e-6)
    # points on a line: a0=0, a1=1 (same person), b0=1.5, b1=4
    f = torch.tensor([[0.0], [1.0], [1.5], [4.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchors: 0: pos 1, neg 1.5 -> 0.3 + 1 - 1.5 < 0 -> 0 ; 1: pos 1, neg .5 -> .8 ; 2: pos 2.5, neg .5 -> 2.3 ; 3: pos 2.5, neg 3 -> 0
    assert float(batch_hard_triplet(f, y, 0.3)) == pytest.approx((0 + 0.8 + 2.3 + 0) / 4, rel=1e-5)


# -- data -------------------------------------------------------------------------
def test_progressive_schedule_follows_methods_thresholds():
    # e is the 0-based epoch index: p = 0.25 for e <= 5, 0.5 for e <= 10, 0.75 for e <= 15, else 1
    epochs = (0, 5, 6, 10, 11, 15, 16, 59)
    assert [variant_pool_size(e, 10) for e in epochs] == [2, 2, 5, 5, 7, 7, 10, 10]
    assert variant_pool_size(0, 2) == 1  # max(1, floor(2 * 0.25))
    assert variant_pool_size(2, 8, thresholds=(2,), fractions=(0.5, 1.0)) == 4
    assert variant_pool_size(3, 8, thresholds=(2,), fractions=(0.5, 1.0)) == 8


def test_items_keep_only_kept_generated_images_with_their_source_labels(world):
    store = open_store(world)
    items = build_items(store, ["gen"])
    run = store.run("gen")
    gen = items.kind == GENERATED
    assert gen.sum() == run.kept().sum() == len(run) - 5
    src_store = run.source_index()[items.ref[gen]]
    assert (items.ref[items.source[gen]] == src_store).all()  # source item is the real image it came from
    assert all(items.label_of_pid[int(p)] == lab for p, lab in zip(store.pid[src_store], items.label[gen]))
    assert (items.label[gen] == items.label[items.source[gen]]).all()
    assert (items.clothes[gen] == -1).all() and (items.clothes[~gen] >= 0).all()
    assert items.num_variants == 4


def test_sampler_is_p_by_k_seeded_per_epoch_and_sharded(world):
    items = build_items(open_store(world), [])
    s = IdentityBatchSampler(items, 2, 3, seed=7)
    batches = s.batches(0)
    assert batches and all(len(b) == 6 for b in batches)
    for b in batches:
        labels = items.label[[i for i, _ in b]]
        assert sorted(np.unique(labels, return_counts=True)[1].tolist()) == [3, 3]
    assert batches == IdentityBatchSampler(items, 2, 3, seed=7).batches(0)
    assert batches != s.batches(1)
    # P x K is the global batch: each of 2 ranks takes one person's group of every batch, the same rows and seeds
    r0 = IdentityBatchSampler(items, 2, 3, seed=7, rank=0, world=2).batches(0)
    r1 = IdentityBatchSampler(items, 2, 3, seed=7, rank=1, world=2).batches(0)
    assert len(r0) == len(r1) == len(batches)
    assert all(a == b[:3] and c == b[3:] for a, c, b in zip(r0, r1, batches))


def test_pairing_gives_each_real_image_one_variant_of_itself_within_the_pool(world):
    items = build_items(open_store(world), ["gen"])
    s = IdentityBatchSampler(items, 2, 2, seed=1, variant_limit=lambda e, v: 2)
    seen = set()
    for batch in s.batches(0) + s.batches(3):
        assert len(batch) == 8  # fixed shape: 2 x P x K, a real image without variants padded (~item), not dropped
        padding = [~i for i, _ in batch if i < 0]
        ids = [i for i, _ in batch if i >= 0]
        real = [i for i in ids if items.kind[i] == REAL]
        gen = [i for i in ids if items.kind[i] == GENERATED]
        assert len(real) == 4 and len(gen) + len(padding) == 4
        assert all(p in real and p == 0 for p in padding)  # only image 0 has no kept variant
        by_source = {int(items.source[g]): g for g in gen}
        assert len(by_source) == len(gen)
        for r in real:
            if r in (0, 1) and r not in by_source:
                continue
            g = by_source[r]  # every real image has its own variant, except image 0 whose variants were all rejected
            seen.add(int(items.variant[g]))
            assert items.variant[g] < 2 or r == 1  # image 1 lost variant 0: it falls back on its first kept one
        assert 0 not in by_source
    assert seen == {0, 1}


# -- strategies: one real optimisation step each ------------------------------------
@pytest.mark.parametrize("plugin,extra,expected", [
    ("baseline", {"eval_every": 1}, {"id", "triplet", "standard_mAP", "cc_mAP"}),
    ("cal", {"adversarial_start_epoch": 0, "clothes_start_epoch": 0}, {"id", "clothes", "cal"}),
    ("progressive", {"generated": ["gen"], "adversarial_start_epoch": 0, "clothes_start_epoch": 0}, {"id", "clothes", "cal"}),
    ("progressive", {"generated": ["gen"], "base": "baseline"}, {"id", "triplet"}),
])
def test_each_strategy_takes_a_real_step(world, tmp_path, plugin, extra, expected):
    from reidkit.training.model import build_model

    config = tiny_config(plugin, **extra)
    items = build_items(open_store(world), config["generated"])
    torch.manual_seed(config["seed"])
    init, _ = build_model(config, items.num_classes, items.num_clothes, items.clothes_of_class)
    summary = train(world, config, tmp_path / "run", progress=False, max_steps=1)
    assert expected <= set(summary) and all(math.isfinite(summary[k]) and summary[k] > 0 for k in expected)
    assert ("standard_rank1" in summary) == ("eval_every" in extra)  # periodic evaluation lands in the log
    trained = load_file(str(tmp_path / "run" / "model.safetensors"))
    changed = [k for k, v in init.state_dict().items() if not torch.equal(v, trained[k])]
    assert any(k.startswith("backbone.trunk") for k in changed) and any(k.startswith("heads") for k in changed)
    if plugin == "progressive":
        assert summary["images"] in (7, 8) and summary["variant_pool"] == 1  # 2x2 real + their variants (image 0 has none), first 25% of 4


def test_generated_images_stay_out_of_the_clothes_losses():
    from reidkit.plugins.strategies.cal import CalStrategy

    strategy = CalStrategy({**CalStrategy.defaults, "adversarial_start_epoch": 0, "clothes_start_epoch": 0})
    torch.manual_seed(0)
    outputs = {"logits": torch.randn(4, 3), "feat": torch.randn(4, 5), "clothes_cos": torch.rand(4, 4) - 0.5,
               "bn": torch.randn(4, 5), "clothes_weight": torch.randn(4, 5),
               "clothes_of_person": torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])}
    batch = {"label": torch.tensor([0, 1, 0, 1]), "clothes": torch.tensor([1, 2, -1, -1]), "generated": torch.tensor([False, False, True, True])}
    _, parts = strategy.loss(outputs, batch, epoch=0)
    aux = strategy.auxiliary_losses(outputs, batch, epoch=0)
    real = {k: v[:2] if k not in ("clothes_of_person", "clothes_weight") else v for k, v in outputs.items()}
    real_batch = {k: v[:2] for k, v in batch.items()}
    _, real_parts = strategy.loss(real, real_batch, epoch=0)
    assert float(aux["clothes"]) == pytest.approx(float(strategy.auxiliary_losses(real, real_batch, epoch=0)["clothes"]))
    assert float(parts["cal"]) == pytest.approx(float(real_parts["cal"]))
    assert float(parts["id"]) != pytest.approx(float(real_parts["id"]))  # generated images do join the identity loss


def test_cal_schedule_switches_on_at_the_start_epochs():
    from reidkit.plugins.strategies.cal import CalStrategy

    strategy = CalStrategy({**CalStrategy.defaults, "adversarial_start_epoch": 3, "clothes_start_epoch": 2})
    assert CalStrategy.defaults["adversarial_start_epoch"] == 25 and CalStrategy.defaults["clothes_start_epoch"] == 25
    outputs = {"logits": torch.randn(2, 3), "feat": torch.randn(2, 5), "clothes_cos": torch.rand(2, 4), "bn": torch.randn(2, 5),
               "clothes_weight": torch.randn(4, 5, requires_grad=True), "clothes_of_person": torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])}
    batch = {"label": torch.tensor([0, 1]), "clothes": torch.tensor([1, 2]), "generated": torch.tensor([False, False])}
    assert [bool(strategy.auxiliary_losses(outputs, batch, e)) for e in (0, 1, 2, 3)] == [False, False, True, True]
    assert ["cal" in strategy.loss(outputs, batch, e)[1] for e in (0, 1, 2, 3)] == [False, False, False, True]
    total, _ = strategy.loss(outputs, batch, 0)
    total.backward()  # before the start epoch the adversarial term is in the graph with weight 0
    assert torch.count_nonzero(outputs["clothes_weight"].grad) == 0


def test_cal_step_matches_the_reference_two_optimiser_order():
    """One CAL step written as CAL's reference trains (clothes classifier first, on detached features, with its own
    Adam; then the backbone with CE + adversarial loss using the updated classifier) equals the engine's step."""
    import copy

    import torch.nn.functional as F

    from reidkit.plugins.strategies.cal import CalStrategy
    from reidkit.training.engine import _step_side_optimizers
    from reidkit.training.losses import clothes_adversarial

    class Ctx:
        world = 1

    settings = {**CalStrategy.defaults, "adversarial_start_epoch": 0, "clothes_start_epoch": 0, "lr": 0.01}
    strategy = CalStrategy(settings)
    torch.manual_seed(0)
    backbone = torch.nn.Linear(6, 5)
    heads = strategy.build_heads(5, 2, 4, [[0, 1], [2, 3]])
    ref_backbone, ref_heads = copy.deepcopy(backbone), copy.deepcopy(heads)
    x = torch.randn(4, 6)
    batch = {"label": torch.tensor([0, 0, 1, 1]), "clothes": torch.tensor([0, 1, 2, 3]), "generated": torch.zeros(4, dtype=torch.bool)}
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    for _ in range(2):  # two steps so the second sees Adam state
        # reidkit: the engine's pieces
        separate = strategy.separate_optimizers(heads)
        if not hasattr(strategy, "_opts"):
            main_params = [p for p in list(backbone.parameters()) + list(heads.parameters()) if p is not heads.clothes and p.requires_grad]
            strategy._opts = (torch.optim.Adam(main_params, lr=0.01, weight_decay=5e-4),
                              {"clothes": torch.optim.Adam([heads.clothes], lr=0.01, weight_decay=5e-4)})
        main_opt, side = strategy._opts
        f = backbone(x)
        outputs = heads(f, f)
        _step_side_optimizers(strategy, side, separate, outputs, batch, 0, Ctx())
        loss, _ = strategy.loss(outputs, batch, 0)
        main_opt.zero_grad()
        loss.backward()
        main_opt.step()
        # the reference, written out
        if not hasattr(ref_heads, "_opts"):
            ref_main = [p for p in list(ref_backbone.parameters()) + list(ref_heads.identity.parameters()) if p.requires_grad]
            ref_heads._opts = (torch.optim.Adam(ref_main, lr=0.01, weight_decay=5e-4),
                               torch.optim.Adam([ref_heads.clothes], lr=0.01, weight_decay=5e-4))
        opt, opt_cc = ref_heads._opts
        feats = ref_backbone(x)
        logits = ref_heads.identity(feats, feats)["logits"]
        pred_clothes = 16 * F.normalize(feats.detach(), dim=1) @ F.normalize(ref_heads.clothes, dim=1).t()
        clothes_loss = F.cross_entropy(pred_clothes, batch["clothes"])
        opt_cc.zero_grad()
        clothes_loss.backward()
        opt_cc.step()
        new_pred = F.normalize(feats, dim=1) @ F.normalize(ref_heads.clothes, dim=1).t()
        ce = label_smoothed_ce(logits, batch["label"], 0.1)
        ref_loss = ce + clothes_adversarial(new_pred, batch["clothes"], mask, 16.0, 0.1)
        opt.zero_grad()
        ref_loss.backward()
        opt.step()
    assert torch.allclose(heads.clothes, ref_heads.clothes, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(backbone.parameters(), ref_backbone.parameters()))


def test_clothes_classifier_waits_for_its_start_epoch_and_keeps_a_constant_rate(world, tmp_path):
    settings = dict(adversarial_start_epoch=1, clothes_start_epoch=1, milestones=[1], lr=1e-3)
    torch.manual_seed(0)
    train(world, tiny_config("cal", epochs=1, **settings), tmp_path / "one", progress=False, max_steps=2)
    train(world, tiny_config("cal", epochs=2, **settings), tmp_path / "two", progress=False, max_steps=2)
    from reidkit.training.model import build_model

    config = tiny_config("cal", **settings)
    items = build_items(open_store(world), [])
    torch.manual_seed(config["seed"])
    init, _ = build_model(config, items.num_classes, items.num_clothes, items.clothes_of_class)
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert torch.equal(one["heads.clothes"], init.state_dict()["heads.clothes"])  # epoch 0: untouched
    assert not torch.equal(two["heads.clothes"], one["heads.clothes"])  # epoch 1: trained
    state = torch.load(tmp_path / "two" / "checkpoints" / "epoch-0002" / "state.pt", weights_only=True)
    assert state["side_optimizers"]["clothes"]["param_groups"][0]["lr"] == pytest.approx(1e-3)  # no schedule
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)  # the main one stepped at epoch 1


# -- checkpoints ----------------------------------------------------------------------
def test_resume_continues_exactly(world, tmp_path):
    settings = dict(generated=["gen"], adversarial_start_epoch=1, clothes_start_epoch=0, progress_epochs=[0], progress_fractions=[0.5, 1.0],
                    milestones=[1], epochs=2)
    straight = train(world, tiny_config("progressive", **settings), tmp_path / "a", progress=False)
    train(world, tiny_config("progressive", **{**settings, "epochs": 1}), tmp_path / "b", progress=False)
    with pytest.raises(ReidkitError, match="already holds"):
        train(world, tiny_config("progressive", **settings), tmp_path / "b", progress=False)
    resumed = train(world, tiny_config("progressive", **settings), tmp_path / "b", resume=True, progress=False)
    assert resumed["epochs_run"] == 1 and "cal" in resumed and resumed["variant_pool"] == 4
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["checksum"] == resumed["checksum"]
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and log[0].startswith("epoch,lr")
    with pytest.raises(ReidkitError, match="setting 'lr'"):
        train(world, tiny_config("progressive", **{**settings, "lr": 1e-3}), tmp_path / "b", resume=True, progress=False)


def test_load_reid_model_round_trip(world, tmp_path):
    from reidkit.evaluation.inference import load_reid_model

    train(world, tiny_config("cal"), tmp_path / "run", progress=False, max_steps=2)
    model = load_reid_model(tmp_path / "run", "cpu")
    store = open_store(world)
    images = [store.image(i) for i in store.split("query")[:3]]
    feats = model.features(images)
    assert feats.shape == (3, 1024)  # resnet18 max+avg pooling (CAL)
    probs = model.identity_probs(images)
    assert probs.shape == (3, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert sorted(model.label_of_pid.values()) == [0, 1, 2, 3]
    train_pids = np.unique(store.pid[store.split("train")])
    assert sorted(model.label_of_pid) == train_pids.tolist()
    # flip averaging: the features of a mirrored image equal the original's
    assert np.allclose(model.features([im[:, ::-1] for im in images]), feats, atol=1e-4)


def test_cli_errors_are_one_line(world, tmp_path):
    from reidkit.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        return exc.value.code

    assert run("train", str(world), "--plugin", "progressive", "--out", str(tmp_path / "x")) == 1
    assert run("train", str(world), "--plugin", "nope") == 1
    assert run("train", str(world), "--batch", "3") == 2
    assert run("train", str(tmp_path / "missing.h5")) == 1


def test_config_precedence_defaults_then_file_then_options(tmp_path):
    from reidkit.training.config import read_config_file, resolve_config

    path = tmp_path / "c.yaml"
    path.write_text("plugin: progressive\nbase: baseline\ngenerated: gen\nepochs: 7\nlr: 0.001\nbackbone: {model: resnet18}\n")
    config = resolve_config(None, read_config_file(path), {"epochs": 3, "lr": None})
    assert config["strategy"] == "progressive" and config["generated"] == ["gen"]
    assert config["epochs"] == 3 and config["lr"] == 0.001  # option beats file; an option not given leaves the file's
    assert config["triplet_weight"] == 1.0 and config["milestones"] == [40, 70]  # BoT defaults under base: baseline
    assert config["backbone"]["model"] == "resnet18" and config["backbone"]["last_stride"] == 1  # merged key by key
    assert resolve_config("cal", {}, {})["backbone"]["pooling"] == "maxavg"  # CAL's defaults
    path.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ReidkitError, match="unknown setting.*learning_rate"):
        resolve_config("baseline", read_config_file(path), {})


def test_cli_resume_needs_only_the_run_folder(world, tmp_path):
    from reidkit.cli import main

    out = tmp_path / "run"
    args = ["train", str(world), "--plugin", "cal", "--backbone", "resnet18", "--weights", "none", "--batch", "2,2", "--height", "64", "--width", "32",
            "--num-workers", "0", "--device", "cpu", "--steps-per-epoch", "1", "--epochs", "1", "--out", str(out)]
    for argv in (args, ["train", str(world), "--out", str(out), "--resume", "--epochs", "2"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert len((out / "log.csv").read_text().splitlines()) == 3
    with pytest.raises(SystemExit) as exc:
        main(["train", str(world), "--out", str(out), "--resume", "--epochs", "3", "--lr", "0.1"])
    assert exc.value.code == 1  # a changed setting is refused, not silently applied


# -- augmentation -------------------------------------------------------------------------
def test_cal_and_bot_training_transforms():
    from PIL import Image

    from reidkit.plugins.strategies.baseline import BaselineStrategy
    from reidkit.plugins.strategies.cal import CalStrategy
    from reidkit.training.data import augment, normalise

    assert CalStrategy.defaults["augment"]["crop"] == "upscale" and BaselineStrategy.defaults["augment"]["crop"] == "pad"
    assert CalStrategy.defaults["augment"]["erase_fill"] == [0.4914, 0.4822, 0.4465]  # CAL's RandomErasing mean
    image = (np.arange(16 * 8 * 3) % 251).astype(np.uint8).reshape(16, 8, 3)
    # CAL's RandomCroping: a window of the image enlarged to round(1.125 x size)
    out = augment(image, 16, 8, np.random.default_rng(1), {"crop": "upscale", "crop_prob": 1.0, "flip": 0.0, "erase": 0.0})
    big = normalise(np.asarray(Image.fromarray(image).resize((9, 18), Image.Resampling.BILINEAR)))  # CAL: PIL bilinear
    windows = [big[:, y:y + 16, x:x + 8] for y in range(3) for x in range(2)]
    assert any(np.array_equal(out, w) for w in windows) and not np.array_equal(out, normalise(image))
    # erasing fills a rectangle with the reference's values, in normalised units
    fill = [0.25, -0.5, 0.75]
    erased = augment(image, 16, 8, np.random.default_rng(2), {"crop": "pad", "pad": 0, "flip": 0.0, "erase": 1.0, "erase_fill": fill})
    changed = (erased != normalise(image)).any(0)
    assert changed.any() and all(np.allclose(erased[c][changed], fill[c]) for c in range(3))
    # BoT: zero padding of 10 pixels then a crop back to the size
    padded = augment(image, 16, 8, np.random.default_rng(3), {"crop": "pad", "pad": 10, "flip": 0.0, "erase": 0.0})
    assert padded.shape == (3, 16, 8)


def test_cal_and_bot_necks_and_classifiers_follow_their_references():
    from reidkit.training.model import build_model

    cal, _ = build_model(tiny_config("cal"), 3, 6, [[0, 1], [2, 3], [4, 5]])
    bot, _ = build_model(tiny_config("baseline"), 3, 0, [[], [], []])
    # CAL: BN shift trained, weight ~ N(1, 0.02); classifier with a zero bias; clothes rows of unit length
    assert cal.backbone.bn.bias.requires_grad and 0.9 < float(cal.backbone.bn.weight.detach().mean()) < 1.1
    assert float(cal.backbone.bn.weight.detach().std()) > 0.005
    assert cal.heads.identity.classifier.bias is not None and not cal.heads.identity.classifier.bias.any()
    assert torch.allclose(cal.heads.clothes.norm(dim=1), torch.ones(6))
    # BoT: BNNeck without shift, weight 1; bias-free classifier
    assert not bot.backbone.bn.bias.requires_grad and torch.equal(bot.backbone.bn.weight, torch.ones_like(bot.backbone.bn.weight))
    assert bot.heads.classifier.bias is None


def test_schedule_points_beyond_the_run_warn_or_scale():
    from reidkit.training.config import resolve_config, schedule_warnings

    short = resolve_config("progressive", {}, {"epochs": 24, "generated": ["gen"]})
    lines = schedule_warnings(short)
    named = {line.split("'")[1] for line in lines}
    assert named == {"clothes_start_epoch", "adversarial_start_epoch", "milestones"}  # 25, 25 and 40 of 60
    assert all("scale_schedule" in line for line in lines)
    assert "[40]" in next(line for line in lines if "'milestones'" in line)  # 20 is reached, 40 is not
    scaled = resolve_config("progressive", {}, {"epochs": 24, "generated": ["gen"], "scale_schedule": True})
    # CAL's 60-epoch schedule times 24/60: starts 25 -> 10, steps 20, 40 -> 8, 16, progressive 5, 10, 15 -> 2, 4, 6
    assert (scaled["clothes_start_epoch"], scaled["adversarial_start_epoch"]) == (10, 10)
    assert scaled["milestones"] == [8, 16] and scaled["progress_epochs"] == [2, 4, 6]
    assert schedule_warnings(scaled) == []
    assert schedule_warnings(resolve_config("cal", {}, {})) == []  # the paper schedule fits its own 60 epochs
    tiny = resolve_config("progressive", {}, {"epochs": 3, "generated": ["gen"], "progress_epochs": [1, 2]})
    assert any("'progress_epochs' has [2]" in line for line in schedule_warnings(tiny))


def test_train_prints_the_schedule_warning_once(world, tmp_path):
    from tests.helpers import run_console

    proc = run_console("train", world, "--plugin", "cal", "--backbone", "resnet18", "--weights", "none", "--epochs", "1",
                       "--steps-per-epoch", "1", "--batch", "2,2", "--height", "64", "--width", "32", "--num-workers", "0",
                       "--device", "cpu", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-800:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning: setting")]
    assert len(warnings) == 3 and "adversarial_start_epoch" in proc.stderr


# -- checkpoints as one unit ---------------------------------------------------------------
@pytest.mark.parametrize("kill_at", ["state", "rename"])
def test_a_checkpoint_cut_short_leaves_the_previous_one_and_resume_matches(world, tmp_path, monkeypatch, kill_at):
    """A kill while epoch 2's checkpoint is written (after its weights, or before its folder is renamed into place)
    leaves epoch 1's whole; --resume then ends exactly where the uninterrupted run does, log included."""
    import reidkit.training.checkpoint as ckpt

    settings = dict(adversarial_start_epoch=1, clothes_start_epoch=0, epochs=3, eval_every=1)
    straight = train(world, tiny_config("cal", **settings), tmp_path / "a", progress=False, max_steps=2)
    calls = {"n": 0}
    target = {"state": (torch, "save"), "rename": (ckpt.Path, "rename")}[kill_at]
    real = getattr(*target)

    def killed(*args, **kwargs):
        if kill_at == "rename" and ".partial" not in str(args[0]):
            return real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (epoch 2)
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(*target, killed)
    with pytest.raises(KeyboardInterrupt):
        train(world, tiny_config("cal", **settings), tmp_path / "b", progress=False, max_steps=2)
    monkeypatch.undo()
    run = tmp_path / "b"
    assert [d.name for d in ckpt.checkpoint_dirs(run)] == ["epoch-0001"]
    assert load_file(str(run / "model.safetensors")).keys()  # eval still finds the epoch-1 weights
    with pytest.raises(ReidkitError, match="already holds"):  # a plain rerun is refused, not silently restarted
        train(world, tiny_config("cal", **settings), run, progress=False, max_steps=2)
    resumed = train(world, tiny_config("cal", **settings), run, resume=True, progress=False, max_steps=2)
    assert resumed["epochs_run"] == 2 and resumed["checksum"] == straight["checksum"]
    assert (run / "log.csv").read_text() .splitlines()[0] == (tmp_path / "a" / "log.csv").read_text().splitlines()[0]
    rows = [r.split(",")[0] for r in (run / "log.csv").read_text().splitlines()[1:]]
    assert rows == ["1", "2", "3"]
    assert (run / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()


def test_a_kill_before_the_first_checkpoint_resumes_from_the_start(world, tmp_path, monkeypatch):
    import reidkit.training.checkpoint as ckpt

    real = torch.save
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        train(world, tiny_config("baseline", epochs=1), tmp_path / "b", progress=False, max_steps=1)
    monkeypatch.setattr(torch, "save", real)
    assert ckpt.latest_checkpoint(tmp_path / "b") is None and (tmp_path / "b" / "config.yaml").is_file()
    resumed = train(world, tiny_config("baseline", epochs=1), tmp_path / "b", resume=True, progress=False, max_steps=1)
    straight = train(world, tiny_config("baseline", epochs=1), tmp_path / "a", progress=False, max_steps=1)
    assert resumed["checksum"] == straight["checksum"]


def test_identical_runs_write_identical_weight_files():
    from reidkit.training.checkpoint import safetensors_bytes

    state = {"b": torch.ones(3), "a": torch.zeros(2)}
    first = safetensors_bytes(state, {"format": "reidkit", "epoch": "1"})
    assert all(safetensors_bytes(state, {"epoch": "1", "format": "reidkit"}) == first for _ in range(8))
    assert b'"__metadata__":{"epoch":"1","format":"reidkit"}' in first
    from safetensors.torch import load

    assert torch.equal(load(first)["b"], torch.ones(3))


def test_a_run_made_when_the_strategy_key_was_plugin_still_resumes(world, tmp_path):
    """config.yaml's `strategy` was called `plugin` before: such a run is read, resumed and evaluated as ever."""
    from reidkit.cli import main

    out = tmp_path / "run"
    args = ["train", str(world), "--strategy", "baseline", "--backbone", "resnet18", "--weights", "none", "--batch", "2,2",
            "--height", "64", "--width", "32", "--num-workers", "0", "--device", "cpu", "--steps-per-epoch", "1",
            "--epochs", "1", "--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    text = (out / "config.yaml").read_text()
    assert "\nstrategy: baseline\n" in "\n" + text
    (out / "config.yaml").write_text(("\n" + text).replace("\nstrategy: baseline\n", "\nplugin: baseline\n")[1:])
    with pytest.raises(SystemExit) as exc:
        main(["train", str(world), "--out", str(out), "--resume", "--epochs", "2"])
    assert exc.value.code == 0
    assert len((out / "log.csv").read_text().splitlines()) == 3
