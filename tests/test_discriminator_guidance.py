"""DLCR's discriminator guidance: the correction by hand, the threshold, and both passes on the tiny inpainting pipeline."""
import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

import reidkit
from reidkit.errors import ReidkitError
from reidkit.generation import run_expand
from click.testing import CliRunner

from reidkit.cli import cli
from tests.helpers import make_world, run_cli, run_console
from tests.tiny_models import build_tiny_inpaint_pipeline

TINY = {"width": 32, "height": 64, "steps": 2}  # DDIM with 2 steps on the tiny pipeline: t = 501, then t = 1
SMALL = ["--set", "channels=[16,32]", "--set", "time_dim=16", "--batch-size", "4"]


class LinearLogit(torch.nn.Module):
    """logit = sum(a * x) + b, so grad_x log(d / (1 - d)) = a wherever d is not clipped; remembers the time it saw."""

    def __init__(self, a, b=0.0):
        super().__init__()
        self.a, self.b, self.seen_t = a, b, None

    def forward(self, x, t):
        self.seen_t = t
        return (x * self.a).flatten(1).sum(1) + self.b


def test_correction_equals_hand_computation():
    from reidkit.plugins.guidance.sampling import correction

    a = torch.tensor([[[[1.0, -2.0], [0.5, 4.0]]]])  # (1, 1, 2, 2)
    alphas = torch.full((1000,), 0.36)  # sqrt(1 - 0.36) = 0.8
    x = torch.zeros(1, 1, 2, 2)
    disc = LinearLogit(a)
    delta = correction(disc, x, torch.tensor(500), alphas, weight=2.5, threshold=200, clip=1e-5, num_train_timesteps=1000)
    # 0.8 * 2.5 * a = 2 a
    assert torch.allclose(delta, torch.tensor([[[[2.0, -4.0], [1.0, 8.0]]]]), atol=1e-6)
    assert torch.allclose(disc.seen_t, torch.tensor([500 / 999]))  # time enters as t / (T - 1), as in DLCR's code
    eps = torch.ones(1, 1, 2, 2)
    assert torch.allclose(eps - delta, torch.tensor([[[[-1.0, 5.0], [0.0, -7.0]]]]), atol=1e-6)
    # d clipped to [1e-5, 1 - 1e-5]: a logit of 20 lies beyond log((1 - 1e-5) / 1e-5) = 11.51, so no gradient
    clipped = correction(LinearLogit(a, b=20.0), x, 500, alphas, weight=2.5, threshold=200, clip=1e-5, num_train_timesteps=1000)
    assert torch.count_nonzero(clipped) == 0
    # ... and inside a wider clip (d up to 1 - 1e-9: bound 20.7) the gradient is back
    assert torch.allclose(correction(LinearLogit(a, b=20.0), x, 500, alphas, weight=2.5, threshold=200, clip=1e-9,
                                     num_train_timesteps=1000), 2 * a, atol=1e-6)


def test_threshold_honoured_in_the_unet_hook_on_both_cfg_branches(sd):
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from reidkit.plugins.guidance.sampling import DiscriminatorGuidance

    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet").eval()
    scheduler = DDIMScheduler.from_pretrained(sd, subfolder="scheduler")
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 9, 16, 8, generator=g).repeat(2, 1, 1, 1)  # both CFG branches see the same latents
    text = torch.randn(2, 77, 16, generator=g)
    a = torch.randn(1, 4, 16, 8, generator=g)
    guidance = DiscriminatorGuidance(LinearLogit(a), {"latent_channels": 4}, "sha", weight=3.0, threshold=200, clip=1e-5)
    for t in (200, 201, 700):
        with torch.no_grad():
            plain = unet(sample, t, encoder_hidden_states=text, return_dict=False)[0]
            with guidance.attached(unet, scheduler):
                guided = unet(sample, t, encoder_hidden_states=text, return_dict=False)[0]
        if t <= 200:
            assert torch.equal(guided, plain)  # no correction at t <= threshold
        else:  # eps - sqrt(1 - alpha_bar_t) * w * a, on each branch
            expected = plain - float((1 - scheduler.alphas_cumprod[t]).sqrt()) * 3.0 * a
            assert torch.allclose(guided, expected, atol=1e-5)
            assert not torch.allclose(guided, plain, atol=1e-3)
    with torch.no_grad():  # the hook is gone after the block
        assert torch.equal(unet(sample, 700, encoder_hidden_states=text, return_dict=False)[0], plain)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return build_tiny_inpaint_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd-inpaint")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("dgw") / "w.h5", ids=6, outfits=2, cameras=2, shots=1)


def dlcr(store, sd, **kw):
    settings = {**TINY, "model": str(sd), **kw.pop("settings", {})}
    return run_expand(store, generator="dlcr", generator_settings=settings, variants=1, device="cpu", show_progress=False,
                      prompts="templates", masker="store", batch_size=4, chunk_size=4, **kw)


@pytest.fixture(scope="module")
def trained(world, sd, tmp_path_factory):
    """The store with a plain first pass and a discriminator trained on it for 2 epochs (through the CLI)."""
    d = tmp_path_factory.mktemp("dg")
    store = d / "w.h5"
    shutil.copy(world, store)
    plain = dlcr(store, sd, name="plain")
    out = d / "disc"
    r = run_cli("discriminator", "train", store, "--run", "plain", "--out", out, "--model", sd, "--epochs", "2",
                "--device", "cpu", *SMALL, "--set", "width=32", "--set", "height=64")
    assert r.exit_code == 0, r.output
    return store, out, plain


def items(store, name):
    run = reidkit.open_store(store).run(name)
    return {(int(s), int(v)): run.image_bytes(j) for j, (s, v) in enumerate(zip(run.source_index(), run.variant()))}


def test_train_writes_weights_settings_log_and_latent_cache(trained, sd):
    store, out, plain = trained
    settings = json.loads((out / "settings.json").read_text())
    s = reidkit.open_store(store)
    assert settings["store_fingerprint"] == s.fingerprint and settings["run"] == "plain" and settings["model"] == str(sd)
    assert (settings["width"], settings["height"], settings["latent_size"], settings["latent_channels"]) == (32, 64, [16, 8], 4)
    assert settings["architecture"]["channels"] == [16, 32] and settings["epochs_done"] == 2
    # persons are held out whole: 3 training persons -> 1 held out; every real training image and every kept generated one
    n_real = len(s.split("train"))
    c = settings["items"]
    assert c["real_train"] + c["real_heldout"] == n_real and c["generated_train"] + c["generated_heldout"] == plain["kept"]
    assert c["real_heldout"] == n_real // 3
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["heldout_acc"]) <= 1.0 for r in rows)
    mean = np.load(out / "latents" / "mean.npy")
    assert mean.shape == (n_real + plain["kept"], 4, 16, 8) and np.isfinite(mean).all() and np.abs(mean).max() > 0


def test_train_resumed_equals_uninterrupted(trained, sd, tmp_path):
    store, _, _ = trained
    args = ["discriminator", "train", store, "--run", "plain", "--model", sd, "--device", "cpu", *SMALL,
            "--set", "width=32", "--set", "height=64", "--set", "keep_epochs=[1,2]"]
    assert run_cli(*args, "--out", tmp_path / "a", "--epochs", "2").exit_code == 0
    assert run_cli(*args, "--out", tmp_path / "b", "--epochs", "1").exit_code == 0  # "killed" after epoch 1
    r = run_cli(*args, "--out", tmp_path / "b", "--epochs", "2", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["resumed_from_epoch"] == 1
    for f in ("discriminator.safetensors", "log.csv", "epochs/epoch-0001.safetensors", "epochs/epoch-0002.safetensors"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    # other settings into the same folder: refused in one line, nothing trained
    proc = run_console(*args, "--out", tmp_path / "b", "--epochs", "3", "--seed", "5")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "seed" in proc.stderr and "other settings" in proc.stderr


def _constant_copy(out, dest):
    """The trained discriminator with its head's weights zeroed: its output is the head's bias, its gradient exactly 0."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(out, dest, ignore=shutil.ignore_patterns("checkpoints", "latents"))
    weights = load_file(str(dest / "discriminator.safetensors"))
    weights["head.weight"] = torch.zeros_like(weights["head.weight"])
    save_file(weights, str(dest / "discriminator.safetensors"))
    return dest


def test_constant_discriminator_gives_the_plain_run_bytes(trained, sd, tmp_path):
    store, out, _ = trained
    const = _constant_copy(out, tmp_path / "const")
    summary = dlcr(store, sd, name="const", settings={"discriminator": str(const), "discriminator_weight": 50.0})
    assert summary["generated"] > 0
    assert items(store, "const") == items(store, "plain")


def test_guided_pass_provenance_threshold_shards_and_resume(trained, sd):
    store, out, _ = trained
    guided = {"discriminator": str(out), "discriminator_weight": 200.0}
    summary = dlcr(store, sd, settings=guided)  # default name: the plain one's plus a hash of the discriminator
    name = summary["run"]
    assert name.startswith("dlcr-train-k1-s0-") and name != "dlcr-train-k1-s0"
    info = reidkit.open_store(store).run(name).info
    prov = info["settings"]["generator_provenance"]
    assert prov["discriminator_sha256"] == hashlib.sha256((out / "discriminator.safetensors").read_bytes()).hexdigest()
    assert (prov["discriminator"], prov["discriminator_threshold"], prov["discriminator_weight"]) == (str(out), 200, 200.0)
    assert prov["discriminator_run"] == "plain"
    assert prov["discriminator_epoch"] == 2  # trained 2 < 50 epochs: the default takes the last
    full = items(store, name)
    plain = items(store, "plain")
    assert full.keys() == plain.keys() and sum(full[k] != plain[k] for k in full) == len(full)  # the correction acts
    # threshold above every step of the schedule (501, 1): no correction, the plain bytes
    late = dlcr(store, sd, name="late", limit=2, settings={**guided, "discriminator_threshold": 600})
    assert items(store, "late") == {k: v for k, v in plain.items() if k in items(store, "late")} and late["generated"] == 2
    # shard 0 of 2 first, then the whole run under the same name (a resume): the single run's bytes
    first = dlcr(store, sd, name="resumed", shard="0/2", settings=guided)
    rest = dlcr(store, sd, name="resumed", settings=guided)
    assert 0 < first["generated"] < len(full) and rest["skipped"] == first["generated"]
    assert items(store, "resumed") == full
    # the same name with another discriminator weight: refused like any other setting
    with pytest.raises(ReidkitError, match="other settings"):
        dlcr(store, sd, name="resumed", settings={**guided, "discriminator_weight": 1.0})


def test_bad_input_is_one_line(trained, sd, tmp_path):
    store, out, _ = trained
    expand = ["expand", store, "--generator", "dlcr", "--prompts", "templates", "--masker", "store", "--model", sd, "--device", "cpu"]
    run_expand(store, split="query", variants=1, name="query-variants", show_progress=False)  # recolor: no model
    for args, needle in (  # in-process: the message
        (["discriminator", "train", store, "--run", "nope", "--out", tmp_path / "x"], "no generated run 'nope'"),
        (["discriminator", "train", store, "--run", "plain", "--out", tmp_path / "x", "--set", "colour=1"], "no setting 'colour'"),
        (["discriminator", "train", store, "--run", "query-variants", "--out", tmp_path / "x"], "training split only"),
        ([*expand, "--set", f"discriminator={tmp_path / 'none'}"], "is not a trained discriminator"),
    ):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        assert r.exit_code == 1 and needle in r.output, (args, r.output)
    for args, needle in (  # the installed command: one line, no traceback
        (["discriminator", "train", store, "--run", "plain", "--out", tmp_path / "x", "--model", tmp_path / "no-model",
          "--device", "cpu"], "cannot load inpainting model"),
        ([*expand, "--set", f"discriminator={out}"], "was trained on"),  # 256x768 here, 32x64 there
    ):
        proc = run_console(*args, env={"HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 1, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("Error:")
    assert not (tmp_path / "x").exists()


# --- which epoch's weights guide (DLCR loads epoch 50 of its 120) ---------------------------------------------------


@pytest.fixture(scope="module")
def three(trained, sd, tmp_path_factory):
    """A discriminator trained 3 epochs keeping epochs 1 and 2 (its checkpoints keep only the last 2: epochs 2, 3)."""
    store, _, _ = trained
    out = tmp_path_factory.mktemp("dg3") / "disc3"
    r = run_cli("discriminator", "train", store, "--run", "plain", "--out", out, "--model", sd, "--epochs", "3",
                "--device", "cpu", *SMALL, "--set", "width=32", "--set", "height=64", "--set", "keep_epochs=[1,2]")
    assert r.exit_code == 0, r.output
    return store, out


def tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def guided_settings(sd, folder, **kw):
    """dlcr's full settings for a guided pass with ``folder`` (what the generator hands the guidance plugin)."""
    from reidkit.plugins.generators.dlcr import DlcrGenerator

    return {**DlcrGenerator.defaults, **TINY, "model": str(sd), "discriminator": str(folder), **kw}


def loaded(settings):
    from reidkit.plugins.guidance.sampling import load_guidance

    g = load_guidance(settings, "cpu")
    return g.epoch, g.discriminator.state_dict()


def test_training_keeps_the_chosen_epochs_past_checkpoint_pruning(trained, three):
    _, out = three
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0002", "epoch-0003"]
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch-0001.safetensors", "epoch-0002.safetensors"]
    e1, e2, top = (tensors(out / f) for f in ("epochs/epoch-0001.safetensors", "epochs/epoch-0002.safetensors",
                                              "discriminator.safetensors"))
    assert same(e2, tensors(out / "checkpoints" / "epoch-0002" / "discriminator.safetensors"))
    assert same(top, tensors(out / "checkpoints" / "epoch-0003" / "discriminator.safetensors"))
    assert not same(e1, e2) and not same(e2, top)  # three different epochs: a wrong pick cannot pass below
    assert json.loads((out / "settings.json").read_text())["keep_epochs"] == [1, 2]
    # the default keeps DLCR's epoch 50 only: a 2-epoch training has no epochs/ folder
    assert json.loads((trained[1] / "settings.json").read_text())["keep_epochs"] == [50]
    assert not (trained[1] / "epochs").exists()


def test_guided_pass_loads_the_chosen_epoch(three, sd):
    _, out = three
    e1, e2, top = (tensors(out / f) for f in ("epochs/epoch-0001.safetensors", "epochs/epoch-0002.safetensors",
                                              "discriminator.safetensors"))
    for requested, epoch, weights in ((2, 2, e2), ("2", 2, e2), (1, 1, e1), ("last", 3, top), ("auto", 3, top)):
        got, state = loaded(guided_settings(sd, out, discriminator_epoch=requested))
        assert got == epoch and same(state, weights), requested
    # an epoch the folder does not hold (never kept, or never trained): one line naming what it holds
    for requested in (4, "4"):
        with pytest.raises(ReidkitError) as err:
            loaded(guided_settings(sd, out, discriminator_epoch=requested))
        assert "holds the weights of epochs 1, 2, 3, not of epoch 4" in str(err.value) and "\n" not in str(err.value)
    for bad in (0, "zero", True, 2.5):
        with pytest.raises(ReidkitError, match="discriminator_epoch must be auto, last or an epoch number"):
            loaded(guided_settings(sd, out, discriminator_epoch=bad))


def test_default_is_epoch_50_once_trained_50_epochs(three, sd, tmp_path):
    """Training 50+ epochs is too slow here: the 3-epoch folder relabelled as a longer training (top weights marked
    epoch N, settings.json's epochs_done N, epoch 2's weights kept as epoch 50)."""
    from reidkit.plugins.guidance.discriminator import FORMAT
    from reidkit.plugins.guidance.sampling import provenance
    from reidkit.training.checkpoint import write_safetensors

    _, out = three
    top, e2 = tensors(out / "discriminator.safetensors"), tensors(out / "epochs" / "epoch-0002.safetensors")

    def relabelled(name, last, keep50):
        fake = tmp_path / name
        shutil.copytree(out, fake, ignore=shutil.ignore_patterns("checkpoints", "latents", "epochs"))
        write_safetensors(fake / "discriminator.safetensors", top, {"format": FORMAT, "epoch": str(last)})
        settings = json.loads((fake / "settings.json").read_text())
        (fake / "settings.json").write_text(json.dumps({**settings, "epochs": 120, "epochs_done": last}))
        if keep50:
            (fake / "epochs").mkdir()
            shutil.copy(out / "epochs" / "epoch-0002.safetensors", fake / "epochs" / "epoch-0050.safetensors")
        return fake

    full = relabelled("full", 120, True)
    epoch, state = loaded(guided_settings(sd, full))
    assert epoch == 50 and same(state, e2)
    assert loaded(guided_settings(sd, full, discriminator_epoch="last"))[0] == 120
    prov = provenance(guided_settings(sd, full))
    assert prov["discriminator_epoch"] == 50
    assert prov["discriminator_sha256"] == hashlib.sha256((full / "epochs" / "epoch-0050.safetensors").read_bytes()).hexdigest()
    # stopped at 49: fewer than 50, so the last; at exactly 50 the top weights are epoch 50's
    assert loaded(guided_settings(sd, relabelled("short", 49, False)))[0] == 49
    epoch, state = loaded(guided_settings(sd, relabelled("exact", 50, False)))
    assert epoch == 50 and same(state, top)
    # 120 epochs without epoch 50 kept (e.g. keep_epochs=[]): the default is refused in one line, not silently the last
    with pytest.raises(ReidkitError) as err:
        provenance(guided_settings(sd, relabelled("unkept", 120, False)))
    assert "holds the weights of epochs 120, not of epoch 50" in str(err.value) and "\n" not in str(err.value)


def test_guided_run_records_the_epoch_it_used(three, sd):
    store, out = three
    runs = {}
    for requested in (2, "auto"):
        summary = dlcr(store, sd, limit=2, settings={"discriminator": str(out), "discriminator_weight": 200.0,
                                                     "discriminator_epoch": requested})
        runs[requested] = summary["run"]
        prov = reidkit.open_store(store).run(summary["run"]).info["settings"]["generator_provenance"]
        weights = out / ("epochs/epoch-0002.safetensors" if requested == 2 else "discriminator.safetensors")
        assert prov["discriminator_epoch"] == (2 if requested == 2 else 3)
        assert prov["discriminator_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert runs[2] != runs["auto"]  # the epoch is part of the default name's hash
    two, last = items(store, runs[2]), items(store, runs["auto"])
    assert two.keys() == last.keys() and all(two[k] != last[k] for k in two)  # other weights guided these images
    # from the command line: the epoch's digits, and a missing epoch as one error line
    expand = ["expand", store, "--generator", "dlcr", "--prompts", "templates", "--masker", "store", "--model", sd,
              "--device", "cpu", "--limit", "2", "--set", "width=32", "--set", "height=64", "--set", "steps=2",
              "--set", f"discriminator={out}", "--set", "discriminator_weight=200"]
    r = CliRunner().invoke(cli, [str(a) for a in [*expand, "--set", "discriminator_epoch=7"]])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0, r.output
    assert "holds the weights of epochs 1, 2, 3, not of epoch 7" in r.output
