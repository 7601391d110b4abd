"""The ``heuristic`` masker: no weights; GrabCut seeded by a body-layout prior, minus head, hands and feet.

Limits (also in docs/expand.md): it assumes one upright, centred,
full-body person per crop (what Re-ID detectors produce); bare arms and
legs are not told apart from clothing except by position, so they may be
repainted; bags, occluders and a background close in colour to the clothes
leak in; the waist is a fixed fraction of body height. Use ``parser`` when
a human parser is available.
"""
from __future__ import annotations

import numpy as np

from reidkit.contracts import Setting

LABELS = ["background", "head", "hands", "feet", "upper-clothes", "lower-clothes"]
CLOTHING = ["upper-clothes", "lower-clothes"]


class HeuristicMasker:
    """Fractions are of the person's height (foreground rows) or the crop's width."""

    defaults = {
        "iterations": 4,
        "border": 0.1,  # crop width at each side taken as sure background
        "core": 0.12,  # half-width of the central column taken as sure person
        "head": 0.16,
        "feet": 0.05,
        "waist": 0.47,
        "hand_rows": [0.4, 0.58],
        "hand_margin": 1.15,  # x beyond this many torso half-widths from the centre is a hand
    }
    settings_spec = {
        "iterations": Setting(int, "GrabCut iterations", min=1),
        "border": Setting(float, "crop width at each side taken as sure background", min=0, max=0.5),
        "core": Setting(float, "half-width of the central column taken as sure person", min=0, max=0.5),
        "head": Setting(float, "top share of the person's height labelled head", min=0, max=1),
        "feet": Setting(float, "bottom share of the person's height labelled feet", min=0, max=1),
        "waist": Setting(float, "height share where upper clothes end and lower clothes start", min=0, max=1),
        "hand_rows": Setting(list, "[first, last] height shares of the band where hands may be", item=float, min=0, max=1),
        "hand_margin": Setting(float, "x beyond this many torso half-widths from the centre is a hand", min=0),
    }
    labels = LABELS
    clothing = CLOTHING

    def __init__(self, settings, device):
        self.s = settings

    def foreground(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        s = self.s
        m = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        m[:, int(0.2 * w): int(0.8 * w) + 1] = cv2.GC_PR_FGD
        m[int(0.15 * h): int(0.85 * h), int((0.5 - s["core"]) * w): int((0.5 + s["core"]) * w) + 1] = cv2.GC_FGD
        b = max(1, int(s["border"] * w))
        m[:, :b] = cv2.GC_BGD
        m[:, w - b:] = cv2.GC_BGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's global RNG: reset, so a mask never depends on call order
        try:
            cv2.grabCut(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), m, None, bgd, fgd, int(s["iterations"]), cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # flat images: GrabCut cannot fit colour models; fall back to the prior
            pass
        fg = (m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
        if n > 1:  # the person is the largest blob
            fg = comp == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        return fg

    def label_map(self, image: np.ndarray) -> np.ndarray:
        s = self.s
        fg = self.foreground(image)
        out = np.zeros(fg.shape, np.uint8)
        rows = np.flatnonzero(fg.any(axis=1))
        if len(rows) == 0:
            return out
        top, height = rows[0], rows[-1] - rows[0] + 1
        yy, xx = np.mgrid[0: fg.shape[0], 0: fg.shape[1]]
        rel = (yy - top) / height
        cols = np.flatnonzero(fg.any(axis=0))
        centre = (cols[0] + cols[-1]) / 2
        torso_rows = fg[int(top + 0.25 * height): int(top + 0.35 * height) + 1]
        half = max(1.0, np.median(torso_rows.sum(axis=1)) / 2) if len(torso_rows) else fg.shape[1] / 4
        out[fg & (rel < s["waist"])] = LABELS.index("upper-clothes")
        out[fg & (rel >= s["waist"])] = LABELS.index("lower-clothes")
        lo, hi = s["hand_rows"]
        out[fg & (rel >= lo) & (rel < hi) & (np.abs(xx - centre) > s["hand_margin"] * half)] = LABELS.index("hands")
        out[fg & (rel < s["head"])] = LABELS.index("head")
        out[fg & (rel >= 1 - s["feet"])] = LABELS.index("feet")
        return out

    def label_maps(self, images):
        return [self.label_map(np.asarray(im)) for im in images]
