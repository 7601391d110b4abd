"""The trained model: a backbone plugin's module plus a strategy's heads, as one nn.Module."""
from __future__ import annotations


def build_model(config: dict, num_classes: int, num_clothes: int, clothes_of_class: list, strategy=None):
    """Build backbone + heads from a training config (the same call for training and for loading)."""
    from torch import nn

    from reidkit.plugin_manager import get_plugins
    from reidkit.training.config import strategy_factory

    settings = dict(config["backbone"])
    backbone = get_plugins().get("backbones", settings.pop("plugin", "timm"))(**settings)
    strategy = strategy or strategy_factory(config["plugin"])(config)
    heads = strategy.build_heads(backbone.feature_dim, num_classes, num_clothes, clothes_of_class)

    class ReidModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.heads = heads

        def forward(self, images):
            feat, bn = self.backbone(images)
            return self.heads(feat, bn)

    return ReidModel(), strategy
