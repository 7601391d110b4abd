"""``progressive``: DLCR's training with generated data on top of a base strategy (``cal`` or ``baseline``).

Every real image in a batch is paired with one generated variant of itself
(1:1); the variant is drawn from the first max(1, floor(V * p(e))) variants,
p(e) growing at the set epochs (e counted from 0). Generated images carry the source's person
label (identity losses) and no clothes label (out of the clothes losses).
"""
from __future__ import annotations

from reidkit.errors import ReidkitError
from reidkit.plugins.strategies.baseline import BaselineStrategy
from reidkit.plugins.strategies.cal import CalStrategy
from reidkit.plugins.strategies.settings import spec_for

BASES = {"cal": CalStrategy, "baseline": BaselineStrategy}
PROGRESSIVE = {"base": "cal", "progress_epochs": [5, 10, 15], "progress_fractions": [0.25, 0.5, 0.75, 1.0]}
# DLCR trains its CAL on one process: 4 persons x 8 real images, each with one generated partner (64 rows)
DLCR_BATCH = {"ids_per_batch": 4, "images_per_id": 8}


class ProgressiveStrategy:
    """DLCR: each real image paired with a generated variant from a growing pool, on a base strategy."""

    defaults = {**CalStrategy.defaults, **PROGRESSIVE, **DLCR_BATCH}
    settings_spec = spec_for(defaults)
    epoch_settings = CalStrategy.epoch_settings + ("progress_epochs",)  # a baseline base has no CAL keys: skipped
    schedule_warnings = CalStrategy.schedule_warnings
    needs_generated = True

    def __init__(self, settings: dict):
        base = settings.get("base", "cal")
        if base not in BASES:
            raise ReidkitError(f"progressive: unknown base strategy '{base}' (expected one of: {', '.join(BASES)})")
        if len(settings["progress_fractions"]) != len(settings["progress_epochs"]) + 1:
            raise ReidkitError("progressive: progress_fractions needs one more entry than progress_epochs")
        self.settings = settings
        self.base = BASES[base](settings)

    @staticmethod
    def defaults_for(base: str) -> dict:
        """Paper defaults of the chosen base plus the progressive schedule."""
        return {**BASES.get(base, CalStrategy).defaults, **PROGRESSIVE, **(DLCR_BATCH if base == "cal" else {}), "base": base}

    def build_heads(self, *args):
        return self.base.build_heads(*args)

    def loss(self, outputs, batch, epoch):
        return self.base.loss(outputs, batch, epoch)

    def lr_factor(self, epoch):
        return self.base.lr_factor(epoch)

    def separate_optimizers(self, heads):
        return self.base.separate_optimizers(heads)

    def auxiliary_losses(self, outputs, batch, epoch):
        return self.base.auxiliary_losses(outputs, batch, epoch)

    def hooks(self, trainer):
        from reidkit.contracts import CONTRACTS

        return CONTRACTS["strategies"].optional_member(self.base, "hooks")(trainer)  # the base's own hooks, if any

    def variant_limit(self, epoch, num_variants):
        from reidkit.training.data import variant_pool_size

        s = self.settings
        return variant_pool_size(epoch, num_variants, s["progress_epochs"], s["progress_fractions"])
