"""The ``softmax`` strategy: an identity classifier trained by label-smoothed cross-entropy alone (no triplet loss),
with a linear warm-up and a cosine decay of the learning rate."""
import math

from reidkit.contracts import Setting


class SoftmaxStrategy:
    """Identity cross-entropy (label smoothing) on the BNNeck features, no triplet; warm-up, then cosine decay."""

    # Every setting a run needs has reidkit's default (reidkit.training.config.COMMON: BoT's run, i.e. lr 3.5e-4,
    # 16 x 4 images of 256 x 128, ...); a strategy declares only what it changes and its own settings.
    defaults = {
        "epochs": 40, "backbone": {"plugin": "tiny-cnn"},  # the backbone it trains (backbone.py)
        "warmup_epochs": 5, "min_lr_factor": 0.01, "label_smoothing": 0.1,
    }
    epoch_settings = ("warmup_epochs",)  # scaled by scale_schedule; a value past the run's end is warned about
    settings_spec = {  # the shared settings (epochs, backbone, ...) are declared by reidkit
        "warmup_epochs": Setting(int, "epochs of linear warm-up", min=0),
        "min_lr_factor": Setting(float, "learning-rate factor the cosine decays to", min=0, max=1),
        "label_smoothing": Setting(float, "label smoothing of the cross-entropy", min=0, max=1, max_open=True),
    }

    def __init__(self, settings):  # the run's whole configuration: these defaults, reidkit's, the user's
        self.settings = settings

    def build_heads(self, feature_dim, num_classes, num_clothes, clothes_of_class):
        from torch import nn

        class IdentityHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.classifier = nn.Linear(feature_dim, num_classes, bias=False)
                nn.init.normal_(self.classifier.weight, std=0.001)

            def forward(self, features, bn_features):
                return {"logits": self.classifier(bn_features)}

        return IdentityHead()

    def loss(self, outputs, batch, epoch):
        import torch.nn.functional as F

        per_image = F.cross_entropy(outputs["logits"], batch["label"], reduction="none",
                                    label_smoothing=self.settings["label_smoothing"])
        valid = batch["valid"].float()  # padding rows count in no loss
        ce = (per_image * valid).sum() / valid.sum().clamp(min=1)
        return ce, {"softmax_ce": ce.detach()}  # detached: the engine reads the values back in bulk

    def lr_factor(self, epoch):  # 0-based epoch -> multiplier of lr
        s = self.settings
        warmup, epochs = s["warmup_epochs"], s["epochs"]
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(1, epochs - warmup)
        return s["min_lr_factor"] + (1 - s["min_lr_factor"]) * 0.5 * (1 + math.cos(math.pi * progress))

    def variant_limit(self, epoch, num_variants):
        return None  # generated images (--generated RUN), if any, are plain extra images of their person
