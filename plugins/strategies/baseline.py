"""``baseline``: the BoT strong baseline (Luo et al. 2019): label-smoothed CE + batch-hard triplet, BNNeck, warm-up, Adam."""
from __future__ import annotations

from reidkit.plugins.strategies.schedule import schedule_warnings, warmup_step_factor
from reidkit.plugins.strategies.settings import spec_for
from reidkit.training.data import BOT_AUGMENT


class BaselineStrategy:
    """BoT strong baseline: label-smoothed CE + batch-hard triplet, BNNeck, warm-up, Adam."""

    # BoT on Market-1501 (ResNet-50, last stride 1, 256x128, P16 x K4, 120 epochs), as configs/softmax_triplet.yml
    # runs it: warm-up from 0.01 over 10 epochs, steps at 40 and 70, the scheduler stepped at each epoch's start
    defaults = {
        "epochs": 120, "lr": 3.5e-4, "weight_decay": 5e-4, "warmup_epochs": 10, "warmup_factor": 0.01,
        "schedule_offset": 1,  # BoT's code steps its scheduler before each epoch: 0-based epoch e runs at index e + 1
        "milestones": [40, 70], "gamma": 0.1, "ids_per_batch": 16, "images_per_id": 4, "height": 256, "width": 128,
        "sampler": "bot",  # BoT's RandomIdentitySampler: P distinct persons per batch
        "label_smoothing": 0.1, "triplet_margin": 0.3, "triplet_weight": 1.0, "augment": dict(BOT_AUGMENT),
        "classifier_bias": False,  # BoT: bias-free identity classifier
        "test_flip": False,  # BoT's test features: the image alone (no mirror average)
        "backbone": {"plugin": "timm", "model": "resnet50", "weights": "imagenet", "last_stride": 1, "pooling": "avg",
                     "embedding_dim": 0, "bnneck": True},
    }
    settings_spec = spec_for(defaults)  # types, ranges and help (plugins/strategies/settings.py)
    # settings naming an epoch: scaled by scale_schedule, checked against the run's length by schedule_warnings
    epoch_settings = ("warmup_epochs", "milestones")
    schedule_warnings = staticmethod(schedule_warnings)

    def __init__(self, settings: dict):
        self.settings = settings

    def build_heads(self, feature_dim, num_classes, num_clothes, clothes_of_class):
        from torch import nn

        classifier_bias = self.settings.get("classifier_bias", False)

        class IdentityHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.classifier = nn.Linear(feature_dim, num_classes, bias=bool(classifier_bias))
                nn.init.normal_(self.classifier.weight, std=0.001)
                if classifier_bias:
                    nn.init.zeros_(self.classifier.bias)

            def forward(self, feat, bn):
                return {"feat": feat, "logits": self.classifier(bn)}

        return IdentityHead()

    def identity_losses(self, outputs, batch):
        from reidkit.training.losses import batch_hard_triplet, label_smoothed_ce

        s = self.settings
        valid = batch.get("valid")  # padding rows of a paired batch (progressive) count in no loss
        losses = {"id": label_smoothed_ce(outputs["logits"], batch["label"], s["label_smoothing"], valid)}
        if s["triplet_weight"]:
            losses["triplet"] = s["triplet_weight"] * batch_hard_triplet(outputs["feat"], batch["label"], s["triplet_margin"], valid)
        return losses

    def loss(self, outputs, batch, epoch):
        losses = self.identity_losses(outputs, batch)
        return sum(losses.values()), {k: v.detach() for k, v in losses.items()}  # tensors: the engine reads them back in bulk

    def lr_factor(self, epoch):
        s = self.settings
        return warmup_step_factor(epoch, s["warmup_epochs"], s["warmup_factor"], s["milestones"], s["gamma"],
                                  s.get("schedule_offset", 0))

    def variant_limit(self, epoch, num_variants):
        return None  # generated images, if any, are plain extra images of their person

    def separate_optimizers(self, heads) -> dict:
        return {}  # everything is trained by the main optimiser

    def auxiliary_losses(self, outputs, batch, epoch) -> dict:
        return {}
