"""``cal``: Clothes-based Adversarial Loss (Gu et al., CVPR 2022), as CAL's reference code trains it (methods.md 1.4).

Each step, as CAL: the clothes classifier first learns from detached features
with its own Adam (constant rate, from ``clothes_start_epoch``); then the
backbone and identity classifier take their step with the identity loss plus,
from ``adversarial_start_epoch``, the adversarial loss computed with the
clothes classifier as just updated.
"""
from __future__ import annotations

from reidkit.errors import ReidkitError
from reidkit.plugins.strategies.baseline import BaselineStrategy
from reidkit.plugins.strategies.settings import spec_for
from reidkit.training.data import CAL_AUGMENT


class CalStrategy(BaselineStrategy):
    """CAL: identity CE + a clothes classifier with its own Adam + the clothes-adversarial loss."""

    defaults = {
        **BaselineStrategy.defaults,
        # CAL: Adam 3.5e-4, wd 5e-4, 60 epochs, x0.1 at 20 and 40 (stepped after each epoch), 384x192, no warm-up;
        # its published runs: 2 processes x 32 images of 4 ids (x8), i.e. a global batch of 8 persons x 8 images
        "epochs": 60, "warmup_epochs": 0, "schedule_offset": 0, "milestones": [20, 40], "ids_per_batch": 8, "images_per_id": 8,
        "sampler": "cal",  # CAL's data/samplers.py: all persons' groups of K shuffled together, P consecutive groups a batch
        "height": 384, "width": 192, "triplet_weight": 0.0,
        "clothes_scale": 16.0, "cal_epsilon": 0.1,
        # START_EPOCH_CC = START_EPOCH_ADV = 25 (0-based); the clothes classifier's own Adam: same lr and wd, constant
        "adversarial_start_epoch": 25, "clothes_start_epoch": 25, "clothes_lr": None, "clothes_weight_decay": None,
        # CAL's neck: BN with weight ~ N(1, 0.02) and a trained shift; its identity classifier has a bias
        "backbone": {**BaselineStrategy.defaults["backbone"], "pooling": "maxavg", "bnneck_shift": True, "bnneck_weight_std": 0.02},
        "classifier_bias": True,
        "test_flip": True,  # CAL's image test averages each image's features with its mirror's (video: none)
        "augment": dict(CAL_AUGMENT),  # resize, 1/8 upscale + crop (p 0.5), flip, erasing (p 0.5)
    }
    settings_spec = spec_for(defaults)
    epoch_settings = BaselineStrategy.epoch_settings + ("clothes_start_epoch", "adversarial_start_epoch")
    # recipes shipped with the strategy, by name for `reidkit train --config NAME`: CAL's video values (CCVID)
    recipes = {"cal-video": "recipes/cal-video.yaml"}

    def build_heads(self, feature_dim, num_classes, num_clothes, clothes_of_class):
        import torch
        import torch.nn.functional as F
        from torch import nn

        if num_clothes < 2:
            raise ReidkitError("strategy 'cal' needs clothes labels (at least 2 outfits in the train split); this store has none: use --strategy baseline")
        identity = super().build_heads(feature_dim, num_classes, num_clothes, clothes_of_class)
        mask = torch.zeros(num_classes, num_clothes)
        for c, outfits in enumerate(clothes_of_class):
            mask[c, outfits] = 1.0

        class CalHeads(nn.Module):
            def __init__(self):
                super().__init__()
                self.identity = identity
                # CAL's NormalizedClassifier init: uniform(-1, 1) rows renormed to unit length (the scale sets Adam's pace)
                self.clothes = nn.Parameter(F.normalize(torch.empty(num_clothes, feature_dim).uniform_(-1, 1), dim=1))
                self.register_buffer("clothes_of_person", mask, persistent=False)

            def forward(self, feat, bn):
                out = self.identity(feat, bn)
                out["clothes_cos"] = F.normalize(bn.detach().float(), dim=1) @ F.normalize(self.clothes, dim=1).t()
                out["bn"] = bn  # the adversarial term is computed after the clothes classifier's step (see loss)
                out["clothes_weight"] = self.clothes
                out["clothes_of_person"] = self.clothes_of_person
                return out

        return CalHeads()

    def separate_optimizers(self, heads) -> dict:
        """The clothes classifier's own Adam (constant rate), as CAL's optimizer_cc."""
        s = self.settings
        lr = s["lr"] if s.get("clothes_lr") is None else s["clothes_lr"]
        wd = s["weight_decay"] if s.get("clothes_weight_decay") is None else s["clothes_weight_decay"]
        return {"clothes": {"params": [heads.clothes], "lr": float(lr), "weight_decay": float(wd)}}

    def auxiliary_losses(self, outputs, batch, epoch) -> dict:
        """Losses stepped on their own optimiser before ``loss``: the clothes classifier's, from its start epoch."""
        from reidkit.training.losses import label_smoothed_ce

        real = batch["clothes"] >= 0  # generated images (and padding rows) have no clothes label
        if epoch < self.settings["clothes_start_epoch"] or not real.any():
            return {}
        logits = self.settings["clothes_scale"] * outputs["clothes_cos"][real]
        return {"clothes": label_smoothed_ce(logits, batch["clothes"][real], 0.0)}  # CosFace with margin 0 = CE on s * cos

    def loss(self, outputs, batch, epoch):
        import torch.nn.functional as F

        from reidkit.training.losses import clothes_adversarial

        s = self.settings
        losses = self.identity_losses(outputs, batch)
        real = batch["clothes"] >= 0
        if real.any():
            # the clothes classifier's weights as updated this step; they are not trained by this loss
            # (the main optimiser does not hold them), but stay in the graph so DDP sees every parameter used
            adversarial_cos = F.normalize(outputs["bn"][real].float(), dim=1) @ F.normalize(outputs["clothes_weight"], dim=1).t()
            positive = outputs["clothes_of_person"][batch["label"][real]]
            cal = clothes_adversarial(adversarial_cos, batch["clothes"][real], positive, s["clothes_scale"], s["cal_epsilon"])
            if epoch >= s["adversarial_start_epoch"]:
                losses["cal"] = cal
            else:
                losses["cal_inactive"] = 0.0 * cal  # zero gradient before the start epoch, as CAL (which leaves it out)
        total = sum(losses.values())
        return total, {k: v.detach() for k, v in losses.items() if k != "cal_inactive"}
