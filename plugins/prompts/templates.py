"""The ``templates`` prompt source: a seeded garment x colour x pattern grammar, no weights."""
from __future__ import annotations

import hashlib

import numpy as np

from reidkit.contracts import Setting
from reidkit.generation.contracts import BankEntry


def _key_seed(seed: int, key: str) -> list[int]:
    # a stable per-outfit stream (Python's hash() changes between processes)
    return [int(seed), int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")]


class TemplatePrompts:
    """One outfit per clothes key: '<colour> [<pattern>] <upper>', '<colour> <lower>', '<colour> <shoes>'."""

    defaults = {"seed": 0, "pattern_rate": 0.35, "extra_outfits": 0}
    settings_spec = {
        "seed": Setting(int, "seed of every outfit's draw", min=0),
        "pattern_rate": Setting(float, "share of upper garments with a pattern", min=0, max=1),
        "extra_outfits": Setting(int, "template outfits beyond the store's", min=0),
    }

    def __init__(self, settings, device):
        self.settings = settings

    def outfit(self, key: str) -> list[str]:
        from reidkit.plugins.prompts.garments import COLOURS, LOWER, PATTERNS, SHOES, UPPER

        rng = np.random.default_rng(_key_seed(self.settings["seed"], key))
        names = sorted(COLOURS)
        colour = lambda: names[rng.integers(len(names))]  # noqa: E731
        pattern = PATTERNS[1 + rng.integers(len(PATTERNS) - 1)] if rng.random() < self.settings["pattern_rate"] else ""
        upper = " ".join(w for w in (colour(), pattern, UPPER[rng.integers(len(UPPER))]) if w)
        return [upper, f"{colour()} {LOWER[rng.integers(len(LOWER))]}", f"{colour()} {SHOES[rng.integers(len(SHOES))]}"]

    def build(self, store, groups, progress=None):
        keys = list(groups) + [f"template-{j}" for j in range(int(self.settings["extra_outfits"]))]
        entries = []
        for n, key in enumerate(keys, 1):
            items = self.outfit(key)
            entries.append(BankEntry(key, items, raw="template", ok=True))
            if progress:
                progress(n)
        return entries
