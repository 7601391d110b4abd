"""The ``lower-half`` masker: the lower half of the person's box is clothing; no model, no weights.

The box is found in the image itself: the rows and columns where enough
pixels differ from the crop's border colour. It assumes one person on a
background that differs from them (what a Re-ID crop mostly is); a crop
where nothing stands out gets no box, hence no clothing.
"""
import numpy as np

from reidkit.contracts import Setting

LABELS = ["background", "person", "lower-body"]  # label ids 0, 1, 2 of the maps
CLOTHING = ["lower-body"]  # the labels a generator may repaint


class LowerHalfMasker:
    """The lower part of the person's box (rows and columns that differ from the border colour) is clothing."""

    defaults = {"threshold": 40, "min_share": 0.1, "waist": 0.5}
    settings_spec = {
        "threshold": Setting(int, "a pixel is the person's when a channel differs from the border colour by more",
                             min=0, max=255),
        "min_share": Setting(float, "a row or column is in the box when this share of its pixels is the person's",
                             min=0, max=1, min_open=True),
        "waist": Setting(float, "where clothing starts, as a share of the box's height from its top", min=0, max=1),
    }
    labels = LABELS
    clothing = CLOTHING

    def __init__(self, settings, device):  # nothing to load: any device will do
        self.settings = settings

    def box(self, image):
        """(top, bottom, left, right) of the person (bottom and right exclusive), or None."""
        s = self.settings
        image = np.asarray(image, np.int16)
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        person = (np.abs(image - np.median(border, axis=0)).max(axis=2) > s["threshold"])
        rows = np.flatnonzero(person.mean(axis=1) >= s["min_share"])
        cols = np.flatnonzero(person.mean(axis=0) >= s["min_share"])
        if len(rows) == 0 or len(cols) == 0:
            return None
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

    def label_maps(self, images):  # required by the masker contract: one HxW uint8 map per image
        maps = []
        for image in images:
            label_map = np.zeros(np.shape(image)[:2], np.uint8)
            box = self.box(image)
            if box is not None:
                top, bottom, left, right = box
                waist = top + int(self.settings["waist"] * (bottom - top))
                label_map[top:bottom, left:right] = LABELS.index("person")
                label_map[waist:bottom, left:right] = LABELS.index("lower-body")
            maps.append(label_map)
        return maps
