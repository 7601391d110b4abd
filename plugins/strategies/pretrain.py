"""``pretrain``: supervised pre-training on synthetic identities (Diffusion-ReID), exporting the backbone.

Losses as BoT (label-smoothed CE + batch-hard triplet, BNNeck); after every
checkpoint the backbone (trunk + neck, no classifier) is exported as
``backbone.safetensors`` + ``backbone.yaml`` in the run folder, ready for
``reidkit train STORE --init-from RUN``. The schedule is reidkit's choice
(the paper gives none): BoT's, shortened to 60 epochs.
"""
from __future__ import annotations

import copy

from reidkit.plugins.strategies.baseline import BaselineStrategy


class PretrainStrategy(BaselineStrategy):
    """Diffusion-ReID pre-training on synthetic identities; exports the backbone after every checkpoint."""

    # Diffusion-ReID pre-trains on synthetic identities instead of ImageNet: random start weights
    defaults = {**copy.deepcopy(BaselineStrategy.defaults), "epochs": 60, "milestones": [30, 50],
                "backbone": {**BaselineStrategy.defaults["backbone"], "weights": None}}

    def on_checkpoint(self, out, model, config, epoch):
        from reidkit.pretrained_backbone import export_backbone

        export_backbone(out, model, config, epoch)
