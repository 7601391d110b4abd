"""The ``recolor`` generator: repaint garments with the target outfit's colours and patterns, no weights.

The weight-free baseline DLCR's figure 1 compares against: garment shape,
folds and shading stay (the source's luminance modulates the new colour),
only colour and pattern change, and only inside the clothing mask.
"""
from __future__ import annotations

import hashlib

import numpy as np

from reidkit.contracts import Setting

REGIONS = ("upper", "lower", "shoes")
LABEL_REGION_WORDS = {  # mask label names (LIP, ATR, synthetic) -> body region
    "shoes": ("shoe", "sock", "boot", "feet", "foot"),
    "lower": ("lower", "pants", "skirt", "trouser", "short", "leg"),
    "upper": ("upper", "coat", "dress", "jumpsuit", "scarf", "glove", "top", "shirt", "jacket", "belt", "bag", "clothing"),
}


def label_region(label: str) -> str | None:
    t = label.lower()
    for region in ("shoes", "lower", "upper"):
        if any(w in t for w in LABEL_REGION_WORDS[region]):
            return region
    return None


def text_colour(text: str) -> np.ndarray:
    """Colour named in ``text``, else one derived from its words (same text, same colour)."""
    from reidkit.plugins.prompts.garments import colour_in

    found = colour_in(text)
    if found:
        return np.array(found[1], float)
    h = hashlib.sha256(text.encode()).digest()
    return np.array([60 + h[0] % 170, 60 + h[1] % 170, 60 + h[2] % 170], float)


def second_colour(text: str, first: np.ndarray) -> np.ndarray:
    from reidkit.plugins.prompts.garments import COLOURS, colour_in

    found = colour_in(text)
    if found:
        rest = text.lower().replace(found[0], " ", 1)
        again = colour_in(rest)
        if again:
            return np.array(COLOURS[again[0]], float)
    lum = first.mean()
    return np.clip(first * 0.45, 0, 255) if lum > 90 else np.clip(first + 120, 0, 255)


class RecolorGenerator:
    """Recolour each garment region to the colour and pattern its target item names."""

    defaults = {"shade_strength": 1.0, "shade_blur": 0.02, "jitter": 6.0, "stripe_period": 0.0}
    settings_spec = {
        "shade_strength": Setting(float, "how much of the source's shading the new colour keeps (0: flat colour)", min=0),
        "shade_blur": Setting(float, "blur of the shading, as a fraction of the image height", min=0),
        "jitter": Setting(float, "random change of each colour channel, in 0-255 units", min=0),
        "stripe_period": Setting(float, "stripe period in pixels for striped garments (0: height / 20, at least 4)", min=0),
    }
    needs_masks = True
    model_id = None

    def __init__(self, settings, device):
        self.settings = settings

    def regions(self, item) -> dict[str, np.ndarray]:
        """Region -> bool mask; by label names when they say, else by height within the clothing mask."""
        out = {}
        if item.label_map is not None:
            for name in item.clothing:
                region = label_region(name)
                if region is None:
                    continue
                m = item.label_map == item.labels.index(name)
                out[region] = out[region] | m if region in out else m
        covered = np.zeros_like(item.mask) if not out else np.any(np.stack(list(out.values())), axis=0)
        rest = item.mask & ~covered
        if rest.any():
            ys = np.flatnonzero(rest.any(axis=1))
            top, height = ys[0], ys[-1] - ys[0] + 1
            yy = np.arange(item.mask.shape[0])[:, None]
            for region, lo, hi in (("upper", 0.0, 0.5), ("lower", 0.5, 0.92), ("shoes", 0.92, 1.01)):
                band = rest & (yy >= top + lo * height) & (yy < top + hi * height)
                out[region] = out[region] | band if region in out else band
        return out

    def garment_for(self, items: list[str]) -> dict[str, str]:
        from reidkit.plugins.prompts.garments import region_of

        chosen, spare = {}, []
        for it in items:
            r = region_of(it)
            (spare.append(it) if r is None or r in chosen else chosen.__setitem__(r, it))
        for r in REGIONS:
            if r not in chosen and spare:
                chosen[r] = spare.pop(0)
        for r in REGIONS:  # an outfit naming fewer garments reuses the last one
            chosen.setdefault(r, items[-1] if items else "gray")
        return chosen

    def paint(self, image, region_mask, text, rng) -> np.ndarray:
        from reidkit.plugins.prompts.garments import pattern_in

        import cv2

        lum = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        # blurred so that folds and light survive but the old garment's print does not
        sigma = float(self.settings["shade_blur"]) * region_mask.shape[0]
        lum = cv2.GaussianBlur(lum, (0, 0), sigma) if sigma > 0 else lum
        ref = np.median(lum[region_mask]) + 1e-3
        shade = np.clip(lum / ref, 0.5, 1.5).astype(float) ** float(self.settings["shade_strength"])
        c1 = np.clip(text_colour(text) + rng.uniform(-1, 1, 3) * float(self.settings["jitter"]), 0, 255)
        c2 = second_colour(text, c1)
        h, w = region_mask.shape
        yy, xx = np.mgrid[0:h, 0:w]
        period = float(self.settings["stripe_period"]) or max(4.0, h / 20)
        phase = rng.uniform(0, period)
        pattern = pattern_in(text)
        if pattern == "striped":
            second = ((yy + phase) // (period / 2)) % 2 == 1
        elif pattern in ("checked", "plaid"):
            second = (((yy + phase) // (period / 2)) + ((xx + phase) // (period / 2))) % 2 == 1
        elif pattern == "dotted":
            second = (((yy + phase) % period - period / 2) ** 2 + ((xx + phase) % period - period / 2) ** 2) < (period / 5) ** 2
        elif pattern == "two-tone":
            ys = np.flatnonzero(region_mask.any(axis=1))
            second = yy >= (ys[0] + ys[-1]) / 2
        else:
            second = np.zeros((h, w), bool)
        colour = np.where(second[..., None], c2, c1)
        return np.clip(colour * shade[..., None], 0, 255)

    def generate(self, items):
        outputs = []
        for item in items:
            out = item.image.copy()
            rng = np.random.default_rng(item.seed)
            garments = self.garment_for(item.items)
            for region, m in self.regions(item).items():
                m = m & item.mask
                if m.any():
                    out[m] = self.paint(item.image, m, garments[region], rng)[m].round().astype(np.uint8)
            outputs.append(out)
        return outputs
