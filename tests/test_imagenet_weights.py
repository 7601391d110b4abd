"""Issue 10: baseline, cal and progressive start from ImageNet (torchvision's weights for ResNets, as the references).

The hub is never reached: the offline failure runs against an empty Hugging Face cache, and the loading path
against a cache filled here with a random resnet18 saved under the real hub id (timm/resnet18.tv_in1k).
"""
from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from reidkit.errors import ReidkitError
from tests.helpers import run_console
from tests.train_helpers import make_store

QUICK = ("--batch", "2,2", "--height", "64", "--width", "32", "--epochs", "1", "--steps-per-epoch", "1",
         "--num-workers", "0", "--device", "cpu")


def hub_env(home):
    """Environment of a `reidkit` subprocess whose Hugging Face cache is ``home`` and which may not download."""
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("imagenet"), ids=4, outfits=2)


@pytest.mark.parametrize("plugin,extra", [("baseline", {}), ("cal", {}), ("progressive", {"generated": ["gen"]}),
                                          ("progressive", {"generated": ["gen"], "base": "baseline"})])
def test_reference_strategies_default_to_imagenet(plugin, extra):
    from reidkit.training.config import resolve_config

    assert resolve_config(plugin, {}, extra)["backbone"]["weights"] == "imagenet"
    assert resolve_config("pretrain", {}, {})["backbone"]["weights"] is None  # Diffusion-ReID: instead of ImageNet


def test_imagenet_resolves_to_the_references_tag():
    from reidkit.plugins.backbones.timm_backbone import resolve_weights
    from reidkit.training.model import resolved_weights

    assert resolve_weights("resnet50", "imagenet") == "resnet50.tv_in1k"  # torchvision's, not timm's default a1_in1k
    assert resolve_weights("resnet18", "hub") == "resnet18.tv_in1k"
    assert resolve_weights("resnet101", "imagenet") == "resnet101.tv_in1k"
    assert resolve_weights("resnet10t", "imagenet") == "resnet10t.c3_in1k"  # not in the table: timm's default tag
    assert resolve_weights("resnet50.a1_in1k", "imagenet") == "resnet50.a1_in1k"  # a tag the user named
    assert resolve_weights("resnet50", None) is None and resolve_weights("resnet50", "none") is None
    assert resolve_weights("resnet50", "w.safetensors") == "w.safetensors"
    assert resolved_weights({"plugin": "timm", "model": "resnet34", "weights": "imagenet"}) == "resnet34.tv_in1k"
    with pytest.raises(ReidkitError, match="no ImageNet weights.*--weights none"):
        resolve_weights("beit3_giant_patch14_224", "imagenet")  # timm has none


def test_offline_without_the_weights_is_one_line_naming_weights_none(store, tmp_path):
    r = run_console("train", store, "--out", tmp_path / "run", *QUICK, env=hub_env(tmp_path / "hf"), cwd=tmp_path)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stdout + r.stderr
    assert "resnet50.tv_in1k" in lines[0] and "--weights none" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()  # no silent fallback to random weights


def unreachable_hub_env(home):
    """Not told to stay offline, but the endpoint refuses every connection (as on a machine without network)."""
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
            "HF_ENDPOINT": "http://127.0.0.1:9",
            **{v: "" for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")}}


def cache_resnet18(home):
    """A random resnet18 in the cache as huggingface_hub lays it out: models--timm--<tag>/snapshots/<commit>/..."""
    import timm
    from timm.models._hub import save_for_hf

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = home / "hub" / "models--timm--resnet18.tv_in1k"
    torch.manual_seed(123)
    source = timm.create_model("resnet18")  # random: no download, and unlike anything a fresh build draws
    save_for_hf(source, str(repo / "snapshots" / commit), safe_serialization=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return source


def test_unreachable_hub_fails_at_once_in_one_line(store, tmp_path):
    r = run_console("train", store, "--out", tmp_path / "run", "--backbone", "resnet18", *QUICK,
                    env=unreachable_hub_env(tmp_path / "hf"), cwd=tmp_path)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stdout + r.stderr  # none of the hub client's "Retrying in ..." lines
    assert "http://127.0.0.1:9 cannot be reached" in lines[0] and "--weights none" in lines[0]


def test_unreachable_hub_still_loads_cached_weights(store, tmp_path):
    source = cache_resnet18(tmp_path / "hf")
    out = tmp_path / "run"
    r = run_console("train", store, "--backbone", "resnet18", "--lr", "0", "--out", out, *QUICK,
                    env=unreachable_hub_env(tmp_path / "hf"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    trained = load_file(str(out / "model.safetensors"))
    assert torch.equal(trained["backbone.trunk.conv1.weight"], source.state_dict()["conv1.weight"])


def test_default_weights_load_from_the_hub_cache_and_are_recorded(store, tmp_path, monkeypatch):
    import timm

    source = cache_resnet18(tmp_path / "hf")

    out = tmp_path / "run"
    r = run_console("train", store, "--backbone", "resnet18", "--lr", "0", "--out", out, *QUICK,
                    env=hub_env(tmp_path / "hf"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["backbone"]["weights"] == "imagenet" and config["backbone"]["resolved_weights"] == "resnet18.tv_in1k"
    trained = load_file(str(out / "model.safetensors"))  # lr 0: the parameters are still the start weights
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.bn2.weight"):
        assert torch.equal(trained[f"backbone.trunk.{name}"], source.state_dict()[name])

    # loading the trained run needs neither the hub nor the cache: the start weights are not fetched again
    from reidkit.evaluation.inference import load_reid_model

    create = timm.create_model

    def no_hub(*args, pretrained=False, **kwargs):
        assert not pretrained, "loading a trained model fetched start weights"
        return create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_hub)
    runner = load_reid_model(out, "cpu")
    assert torch.equal(runner.model.backbone.trunk.conv1.weight, source.conv1.weight)


def test_weights_none_is_random_init_and_recorded_as_such(store, tmp_path):
    out = tmp_path / "run"
    r = run_console("train", store, "--backbone", "resnet18", "--weights", "none", "--out", out, *QUICK,
                    env=hub_env(tmp_path / "hf"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    backbone = yaml.safe_load((out / "config.yaml").read_text())["backbone"]
    assert backbone["weights"] is None and backbone["resolved_weights"] is None


def test_a_run_from_before_resolved_weights_was_recorded_still_resumes(store, tmp_path):
    from reidkit.training.engine import train
    from tests.train_helpers import tiny_config

    out = tmp_path / "run"
    train(store, tiny_config("baseline"), out, progress=False, max_steps=1)
    path = out / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    assert saved["backbone"]["resolved_weights"] is None
    del saved["backbone"]["resolved_weights"]
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    summary = train(store, tiny_config("baseline", epochs=2), out, resume=True, progress=False, max_steps=1)
    assert summary["epochs_run"] == 1
