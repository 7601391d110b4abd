"""The ``sanity`` filter: rejects blank, non-finite, or unchanged-from-source outputs."""
from __future__ import annotations

import numpy as np

from reidkit.contracts import Setting
from reidkit.generation.contracts import Verdict


class SanityFilter:
    """blank: pixel std below ``min_std``; nan: the generator produced NaN/inf;
    unchanged: mean absolute change inside the clothing mask (whole image
    without one) below ``min_change`` grey levels."""

    defaults = {"min_std": 2.0, "min_change": 1.0}
    settings_spec = {
        "min_std": Setting(float, "an image whose pixel std is below this is blank", min=0),
        "min_change": Setting(float, "mean absolute change (grey levels) in the mask below which an image is unchanged", min=0),
    }

    def __init__(self, settings, device, store):
        self.settings = settings

    def judge(self, items, outputs, nonfinite):
        verdicts = []
        for item, out, bad in zip(items, outputs, nonfinite):
            region = item.mask if item.mask is not None and item.mask.any() else np.ones(out.shape[:2], bool)
            std = float(out.std())
            change = float(np.abs(out[region].astype(np.int16) - item.image[region].astype(np.int16)).mean())
            scores = {"std": round(std, 3), "change": round(change, 3)}
            if bad:
                verdicts.append(Verdict(False, "nan", scores))
            elif std < self.settings["min_std"]:
                verdicts.append(Verdict(False, "blank", scores))
            elif change < self.settings["min_change"]:
                verdicts.append(Verdict(False, "unchanged", scores))
            else:
                verdicts.append(Verdict(True, "", scores))
        return verdicts
