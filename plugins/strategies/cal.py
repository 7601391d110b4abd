"""``cal``: Clothes-based Adversarial Loss (Gu et al., CVPR 2022), as described in methods.md 1.4.

One documented difference: the step is a single forward/backward. The
clothes classifier learns from detached features (so it never moves the
backbone), and the adversarial term sees the classifier's weights detached
(so it never moves the classifier); CAL does the same with two optimisers.
"""
from __future__ import annotations

from reidkit.errors import ReidkitError
from reidkit.plugins.strategies.baseline import BaselineStrategy


class CalStrategy(BaselineStrategy):
    defaults = {
        **BaselineStrategy.defaults,
        # CAL: Adam 3.5e-4, wd 5e-4, 60 epochs, x0.1 at 20 and 40, 384x192, 32 images of 4 ids (x8), no warm-up
        "epochs": 60, "warmup_epochs": 0, "milestones": [20, 40], "ids_per_batch": 4, "images_per_id": 8,
        "height": 384, "width": 192, "triplet_weight": 0.0,
        "clothes_scale": 16.0, "cal_epsilon": 0.1, "adversarial_start_epoch": 25,
        "backbone": {**BaselineStrategy.defaults["backbone"], "pooling": "maxavg"},
    }

    def build_heads(self, feature_dim, num_classes, num_clothes, clothes_of_class):
        import torch
        import torch.nn.functional as F
        from torch import nn

        if num_clothes < 2:
            raise ReidkitError("strategy 'cal' needs clothes labels (at least 2 outfits in the train split); this store has none: use --plugin baseline")
        identity = super().build_heads(feature_dim, num_classes, num_clothes, clothes_of_class)
        mask = torch.zeros(num_classes, num_clothes)
        for c, outfits in enumerate(clothes_of_class):
            mask[c, outfits] = 1.0

        class CalHeads(nn.Module):
            def __init__(self):
                super().__init__()
                self.identity = identity
                self.clothes = nn.Parameter(torch.randn(num_clothes, feature_dim) * 0.001)
                self.register_buffer("clothes_of_person", mask, persistent=False)

            def forward(self, feat, bn):
                out = self.identity(feat, bn)
                unit = F.normalize(bn, dim=1)
                weight = F.normalize(self.clothes, dim=1)
                out["clothes_cos"] = unit.detach() @ weight.t()  # trains the clothes classifier only
                out["adversarial_cos"] = unit @ weight.detach().t()  # trains the backbone only
                out["clothes_of_person"] = self.clothes_of_person
                return out

        return CalHeads()

    def loss(self, outputs, batch, epoch):
        from reidkit.training.losses import clothes_adversarial, label_smoothed_ce

        s = self.settings
        losses = self.identity_losses(outputs, batch)
        real = batch["clothes"] >= 0  # generated images have no clothes label
        if real.any():
            clothes = batch["clothes"][real]
            losses["clothes"] = label_smoothed_ce(s["clothes_scale"] * outputs["clothes_cos"][real], clothes, 0.0)
            if epoch >= s["adversarial_start_epoch"]:
                positive = outputs["clothes_of_person"][batch["label"][real]]
                losses["cal"] = clothes_adversarial(outputs["adversarial_cos"][real], clothes, positive,
                                                    s["clothes_scale"], s["cal_epsilon"])
        return sum(losses.values()), {k: float(v.detach()) for k, v in losses.items()}
