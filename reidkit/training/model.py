"""The trained model: a backbone plugin's module plus a strategy's heads, as one nn.Module."""
from __future__ import annotations


def resolved_weights(backbone: dict):
    """What the backbone's ``weights`` setting loads, recorded in config.yaml as ``backbone.resolved_weights``:
    the backbone plugin's optional ``resolve_weights(settings)`` (timm: the hub tag ``imagenet`` resolves to,
    resnet50 -> resnet50.tv_in1k), else the setting itself (a file or None)."""
    from reidkit.contracts import CONTRACTS
    from reidkit.plugin_manager import get_plugins

    plugins = get_plugins()
    plugin = backbone.get("plugin", "timm")
    factory = plugins.get("backbones", plugin) if plugin in plugins.names("backbones") else None
    resolve = CONTRACTS["backbones"].optional_member(factory, "resolve_weights") if factory is not None else None
    settings = {k: v for k, v in backbone.items() if k not in ("plugin", "resolved_weights")}
    return resolve(settings) if resolve is not None else backbone.get("weights")


def build_model(config: dict, num_classes: int, num_clothes: int, clothes_of_class: list, strategy=None,
                start_weights=False):
    """Build backbone + heads from a training config (the same call for training and for loading).

    ``start_weights``: load the backbone's start weights (``weights``: ImageNet from the hub, a file); the
    engine asks for them when a run starts. Loading a trained model (its own weights follow) skips them, so
    evaluating or resuming needs neither the hub nor the file.
    """
    from torch import nn

    from reidkit.plugin_manager import get_plugins
    from reidkit.training.config import strategy_factory

    settings = {k: v for k, v in config["backbone"].items() if k != "resolved_weights"}  # a record, not a setting
    if not start_weights and settings.get("weights") is not None:
        settings["weights"] = None
    plugin = settings.pop("plugin", "timm")
    backbone = get_plugins().get("backbones", plugin)(**settings)
    if int(config.get("clip_len") or 0) > 0:  # video training pools over time before the neck
        from reidkit.training.video import check_backbone

        check_backbone(backbone, plugin)
    strategy = strategy or strategy_factory(config["strategy"])(config)
    heads = strategy.build_heads(backbone.feature_dim, num_classes, num_clothes, clothes_of_class)

    class ReidModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.heads = heads

        def forward(self, images):
            """N x 3 x H x W images, or B x T x 3 x H x W clips (frame features averaged over T before the neck)."""
            if images.dim() == 5:
                from reidkit.training.video import temporal_pool

                feat, bn = temporal_pool(self.backbone, images)
            else:
                feat, bn = self.backbone(images)
            return self.heads(feat, bn)

    return ReidModel(), strategy
