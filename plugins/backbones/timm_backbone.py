"""The ``timm`` backbone: any timm model by name, with a Re-ID neck (pooling, embedding, BNNeck)."""
from __future__ import annotations

from pathlib import Path

from reidkit.errors import ReidkitError

POOLINGS = ("avg", "max", "maxavg", "gem")
STEM_POOLS = ("max", "max-ceil")  # torchvision/timm's padded max pooling; fast-reid's ceil-mode one
HUB_WEIGHTS = ("imagenet", "hub")  # weights: imagenet (alias hub) = the model's ImageNet tag below, through timm's hub loading
# The Re-ID references (BoT, CAL, DLCR) start ResNets from torchvision's ImageNet weights, published by timm as
# *.tv_in1k; timm's own default tags differ (resnet50 -> resnet50.a1_in1k, another training recipe). Any other
# model: timm's default pretrained tag, or the tag named in the model itself (model: resnet50.a1_in1k).
IMAGENET_TAGS = {name: f"{name}.tv_in1k" for name in (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2")}


def resolve_weights(model="resnet50", weights=None):
    """What ``weights`` loads for ``model``: a timm pretrained tag (``imagenet``/``hub``), a file path, or None (random init)."""
    if weights is None or str(weights).lower() in ("", "none"):
        return None
    if weights not in HUB_WEIGHTS:
        return str(weights)
    if model in IMAGENET_TAGS:
        return IMAGENET_TAGS[model]
    import timm
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model) if timm.is_model(model) else None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ReidkitError(f"timm has no ImageNet weights for '{model}': pass --weights none (random init) or --weights FILE.safetensors")
    return f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture


def build_timm_backbone(model="resnet50", weights=None, last_stride=1, pooling="avg", embedding_dim=0, bnneck=True,
                        bnneck_shift=False, bnneck_weight_std=0.0, stem_relu=True, stem_pool="max",
                        model_args=None):
    """Return a ``TimmReidBackbone`` (see ``reidkit.training.contracts.Backbone``).

    ``model_args`` go to ``timm.create_model`` (e.g. ``img_size: [256, 128]`` for ViTs). ``stem_relu`` /
    ``stem_pool`` hold other projects' ResNet stems (``reidkit import-checkpoint``): BoT's has no ReLU after its
    first BN; fast-reid's pools with ``max-ceil`` (3 x 3, stride 2, no padding, ceil mode).
    """
    import torch
    from torch import nn

    import timm

    if pooling not in POOLINGS:
        raise ReidkitError(f"unknown pooling '{pooling}' (expected one of: {', '.join(POOLINGS)})")
    if stem_pool not in STEM_POOLS:
        raise ReidkitError(f"unknown stem_pool '{stem_pool}' (expected one of: {', '.join(STEM_POOLS)})")
    if not timm.list_models(model) and not timm.is_model(model):
        raise ReidkitError(f"timm has no model '{model}' (see timm.list_models(), e.g. resnet18, resnet50)")
    pretrained = weights in HUB_WEIGHTS
    tag = resolve_weights(model, weights) if pretrained else None
    import contextlib

    from reidkit.hub import cache_only, hub_unreachable

    unreachable = hub_unreachable() if pretrained else None  # then the cache alone, at once, instead of ~50 s of retries
    try:  # pretrained: timm's Hugging Face hub loading (honours HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE)
        with cache_only() if unreachable else contextlib.nullcontext():
            trunk = timm.create_model(tag or model, pretrained=pretrained, num_classes=0, global_pool="", **(model_args or {}))
    except Exception as exc:  # hub errors when offline, bad names
        if pretrained and _is_download_error(exc):
            from huggingface_hub import constants

            from reidkit.hub import load_failure

            hint = "or pass --weights none (random init) or --weights FILE.safetensors"
            if unreachable:
                raise ReidkitError(f"cannot load ImageNet weights '{tag}' from hub id 'timm/{tag}': not in the Hugging Face "
                                   f"cache ({constants.HF_HUB_CACHE}) and {unreachable} ({hint})") from None
            raise ReidkitError(load_failure(f"ImageNet weights '{tag}' from hub id", f"timm/{tag}", exc, hint)) from None
        raise ReidkitError(f"cannot build timm model '{model}' (weights={weights}): {str(exc).splitlines()[0]}") from None
    if weights and not pretrained:
        _load_weights(trunk, Path(weights))
    if int(last_stride) == 1:
        _set_last_stride_one(trunk)
    if not stem_relu or stem_pool != "max":
        _set_stem(trunk, model, bool(stem_relu), stem_pool)

    class TimmReidBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = trunk
            width = trunk.num_features * (2 if pooling == "maxavg" else 1)
            self.gem_p = nn.Parameter(torch.ones(1) * 3.0) if pooling == "gem" else None
            self.embed = nn.Linear(width, int(embedding_dim)) if embedding_dim else None
            self.feature_dim = int(embedding_dim) or width
            self.bn = nn.BatchNorm1d(self.feature_dim) if bnneck else nn.Identity()
            if bnneck:
                self.bn.bias.requires_grad_(bool(bnneck_shift))  # BoT: no shift; CAL: a trained shift
                if bnneck_weight_std:  # CAL: weight ~ N(1, 0.02)
                    nn.init.normal_(self.bn.weight, 1.0, float(bnneck_weight_std))
                else:
                    nn.init.ones_(self.bn.weight)
                nn.init.zeros_(self.bn.bias)
            if self.embed is not None:
                nn.init.kaiming_normal_(self.embed.weight, mode="fan_out")
                nn.init.zeros_(self.embed.bias)

        def pool(self, fmap):
            if fmap.dim() == 3:  # transformer tokens: class token when there is one, else the mean
                return fmap[:, 0] if getattr(self.trunk, "cls_token", None) is not None else fmap.mean(1)
            if pooling == "avg":
                return fmap.mean((2, 3))
            if pooling == "max":
                return fmap.amax((2, 3))
            if pooling == "maxavg":
                return torch.cat([fmap.amax((2, 3)), fmap.mean((2, 3))], 1)
            p = self.gem_p.clamp(min=1e-6)
            return fmap.clamp(min=1e-6).pow(p).mean((2, 3)).pow(1.0 / p)

        def features(self, images):
            """Pooled (and projected) features, before the neck: what video training averages over a clip's frames."""
            feat = self.pool(self.trunk.forward_features(images))
            return self.embed(feat) if self.embed is not None else feat

        def neck(self, feat):
            return self.bn(feat)

        def forward(self, images):
            feat = self.features(images)
            return feat, self.neck(feat)

    return TimmReidBackbone()


def _set_stem(trunk, model: str, relu: bool, pool: str):
    """Another project's ResNet stem: no ReLU after the first BN (BoT), or fast-reid's ceil-mode max pooling."""
    from torch import nn

    if not isinstance(getattr(trunk, "maxpool", None), nn.MaxPool2d) or not hasattr(trunk, "act1"):
        raise ReidkitError(f"stem_relu / stem_pool apply to ResNets with a max-pooled stem, not to '{model}'")
    if not relu:
        trunk.act1 = nn.Identity()
    if pool == "max-ceil":
        trunk.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)


def _is_download_error(exc) -> bool:
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("huggingface_hub", "httpx", "requests", "urllib3")


def _load_weights(trunk, path: Path):
    if not path.is_file():
        raise ReidkitError(f"weights file {path} does not exist (expected a .safetensors file, 'imagenet', or none)")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ReidkitError(f"{path} is not a readable safetensors file: {str(exc).splitlines()[0]}") from None
    # weights saved by reidkit carry a prefix: accept both a bare timm state and a reidkit checkpoint
    for prefix in ("backbone.trunk.", "trunk."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    if not set(state) & set(trunk.state_dict()):
        raise ReidkitError(f"{path} shares no weights with this model (first keys: {', '.join(list(state)[:3])})")
    trunk.load_state_dict(state, strict=False)


def _set_last_stride_one(trunk):
    """ResNet-style trunks: the first block of the last stage keeps resolution (BoT's last stride 1)."""
    layer = getattr(trunk, "layer4", None)
    if layer is None:
        return  # not a ResNet: nothing to change
    import torch.nn as nn

    for module in layer[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride in (2, (2, 2)):
            module.stride = (1, 1)
        elif isinstance(module, nn.AvgPool2d) and module.stride in (2, (2, 2)):
            module.kernel_size, module.stride = 1, 1  # avg-down shortcuts (resnet*t, *d): pooling would shrink the map


def resolve_weights_of(settings: dict):
    """The backbone contract's optional ``resolve_weights``: what this backbone's settings load (recorded in
    config.yaml as ``backbone.resolved_weights``)."""
    return resolve_weights(settings.get("model", "resnet50"), settings.get("weights"))


build_timm_backbone.resolve_weights = resolve_weights_of  # the factory carries its contract's optional member
