"""The timm backbone plugin: pooling, last stride, embedding, BNNeck, weights from a safetensors file."""
import pytest
import torch
from safetensors.torch import save_file

from reidkit.errors import ReidkitError
from reidkit.plugin_manager import get_plugins


def build(**settings):
    return get_plugins().get("backbones", "timm")(**{"model": "resnet18", **settings})


@pytest.mark.parametrize("pooling,dim", [("avg", 512), ("max", 512), ("maxavg", 1024), ("gem", 512)])
def test_pooling_sets_feature_size(pooling, dim):
    net = build(pooling=pooling).eval()
    feat, bn = net(torch.randn(2, 3, 64, 32))
    assert net.feature_dim == dim and feat.shape == bn.shape == (2, dim)


def test_maxavg_is_max_then_avg_of_the_feature_map():
    net = build(pooling="maxavg", last_stride=2).eval()
    x = torch.randn(1, 3, 64, 32)
    fmap = net.trunk.forward_features(x)
    feat, _ = net(x)
    assert torch.allclose(feat, torch.cat([fmap.amax((2, 3)), fmap.mean((2, 3))], 1))


def test_last_stride_one_doubles_the_final_map_and_bnneck_has_frozen_shift():
    x = torch.randn(1, 3, 64, 32)
    assert build(last_stride=1).trunk.forward_features(x).shape[-2:] == (4, 2)
    assert build(last_stride=2).trunk.forward_features(x).shape[-2:] == (2, 1)
    net = build(embedding_dim=64)
    assert net.feature_dim == 64 and net(x.repeat(2, 1, 1, 1))[0].shape == (2, 64)
    assert not net.bn.bias.requires_grad and net.bn.weight.requires_grad


def test_weights_from_a_safetensors_file(tmp_path):
    source = build()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.trunk.state_dict().items()}, str(path))
    loaded = build(weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(source.trunk.state_dict().values(), loaded.trunk.state_dict().values()))
    assert not torch.equal(build().trunk.conv1.weight, source.trunk.conv1.weight)  # random init differs
    save_file({"unrelated": torch.zeros(2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ReidkitError, match="shares no weights"):
        build(weights=str(tmp_path / "bad.safetensors"))
    with pytest.raises(ReidkitError, match="does not exist"):
        build(weights=str(tmp_path / "missing.safetensors"))


def test_unknown_model_and_pooling_are_one_line_errors():
    with pytest.raises(ReidkitError, match="no model"):
        build(model="not_a_model_xyz")
    with pytest.raises(ReidkitError, match="pooling"):
        build(pooling="median")


def test_a_transformer_model_works_too():
    net = build(model="vit_tiny_patch16_224", model_args={"img_size": [64, 32]}, last_stride=1).eval()
    feat, bn = net(torch.randn(2, 3, 64, 32))
    assert feat.shape == (2, 192) and net.feature_dim == 192
