"""The ``not-flat`` filter: rejects generated images that are (nearly) one flat colour."""
import numpy as np

from reidkit.contracts import Setting
from reidkit.generation.contracts import Verdict


class NotFlatFilter:
    """Keeps an image whose pixels vary: the standard deviation over its pixels of some channel is at least
    ``min_std`` grey levels (a flat red image varies across channels, not across pixels: it is flat)."""

    defaults = {"min_std": 3.0}
    settings_spec = {"min_std": Setting(float, "an image whose every channel's pixel std is below this is flat", min=0)}

    def __init__(self, settings, device, store):  # filters also get the store (to compare with sources, say)
        self.settings = settings

    def judge(self, items, outputs, nonfinite):  # required by the filter contract: one Verdict per output
        verdicts = []
        for output, bad in zip(outputs, nonfinite):
            pixels = np.asarray(output, np.float64).reshape(-1, 3)  # H x W x 3 -> one row per pixel
            std = float(pixels.std(axis=0).max())
            scores = {"std": round(std, 3)}  # stored with every item, kept or not
            if bad:  # the generator produced NaN or inf (the engine cleaned them for us)
                verdicts.append(Verdict(False, "non-finite", scores))
            elif std < self.settings["min_std"]:
                verdicts.append(Verdict(False, "flat", scores))
            else:
                verdicts.append(Verdict(True, "", scores))
        return verdicts
