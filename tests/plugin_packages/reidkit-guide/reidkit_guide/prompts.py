"""The ``outfit-list`` prompt source: every outfit of the store gets one of a few built-in outfits, drawn from a seed."""
import zlib

import numpy as np

from reidkit.contracts import Setting
from reidkit.generation.contracts import BankEntry

OUTFITS = (
    ("red t-shirt", "blue jeans", "white sneakers"),
    ("yellow hoodie", "black trousers", "brown boots"),
    ("green jacket", "khaki shorts", "gray sneakers"),
    ("white shirt", "navy skirt", "black loafers"),
    ("striped purple sweater", "beige trousers", "white running shoes"),
    ("orange polo shirt", "gray sweatpants", "black sandals"),
)


class OutfitListPrompts:
    """One outfit of OUTFITS per clothes key: the same seed and key give the same outfit in any process."""

    defaults = {"seed": 0}
    settings_spec = {"seed": Setting(int, "seed of the draw (same seed, same clothing bank)", min=0)}

    def __init__(self, settings, device):
        self.settings = settings

    def outfit(self, key):
        # crc32, not hash(): Python's string hash changes from one process to the next
        rng = np.random.default_rng([self.settings["seed"], zlib.crc32(key.encode())])
        return list(OUTFITS[rng.integers(len(OUTFITS))])

    def build(self, store, groups, progress=None):  # required by the prompt source contract
        entries = []
        for n, key in enumerate(groups, 1):  # groups: clothes key -> the training images wearing it
            entries.append(BankEntry(key, self.outfit(key), raw="outfit-list"))
            if progress:
                progress(n)
        return entries
