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
            "--set", "width=32", "--set", "height=64"]
    assert run_cli(*args, "--out", tmp_path / "a", "--epochs", "2").exit_code == 0
    assert run_cli(*args, "--out", tmp_path / "b", "--epochs", "1").exit_code == 0  # "killed" after epoch 1
    r = run_cli(*args, "--out", tmp_path / "b", "--epochs", "2", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["resumed_from_epoch"] == 1
    for f in ("discriminator.safetensors", "log.csv"):
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
