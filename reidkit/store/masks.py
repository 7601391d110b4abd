"""Clothing masks: label maps per image with a label set and the labels that count as clothing.

Masks shipped by a dataset live inside the store file (``/masks/<name>``);
masks computed by a masker live in the sidecar as a chunked part
(``<store>.parts/masks/<name>/``) with columns ``index`` (store image index)
and ``label_map`` (PNG bytes).
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import StoreError
from reidkit.store.chunks import ChunkedPart, list_parts
from reidkit.store.imagecodec import decode_gray

KIND = "masks"


def list_mask_files(store) -> dict:
    return list_parts(store, KIND)


class MaskSet:
    """Masks of some or all images of a store, addressed by store image index."""

    def __init__(self, name, labels, clothing, index, read_bytes, info=None):
        self.name = name
        self.labels = list(labels)
        self.clothing = list(clothing)
        unknown = set(self.clothing) - set(self.labels)
        if unknown:
            raise StoreError(f"mask set '{name}': clothing labels {sorted(unknown)} are not in its label set")
        self.clothing_ids = np.array([self.labels.index(c) for c in self.clothing], dtype=np.uint8)
        self.index = np.asarray(index, dtype=np.int64)
        self._row = {int(i): r for r, i in enumerate(self.index)}
        self._read_bytes = read_bytes
        self.info = info or {}

    @classmethod
    def from_store(cls, store, name):
        base = store.base_masks[name]
        return cls(
            name,
            base["labels"],
            base["clothing"],
            base["index"],
            lambda row: store.h5[f"masks/{name}/bytes"][row].tobytes(),
            {"masker": base["masker"]},
        )

    @classmethod
    def from_file(cls, directory, store):
        part = ChunkedPart(directory)
        return cls(
            part.name,
            part.info["labels"],
            part.info["clothing"],
            part.column("index") if part.files else [],
            lambda row: part.item_bytes("label_map", row),
            part.info,
        )

    def __contains__(self, image_index) -> bool:
        return int(image_index) in self._row

    def __len__(self):
        return len(self.index)

    def label_map(self, image_index) -> np.ndarray:
        try:
            row = self._row[int(image_index)]
        except KeyError:
            raise StoreError(f"mask set '{self.name}' has no mask for image {image_index}") from None
        try:
            return decode_gray(self._read_bytes(row))
        except (ValueError, OSError) as exc:  # one line naming the mask set and the image
            from reidkit.store.imagecodec import ImageDecodeError

            raise ImageDecodeError(f"cannot decode the mask of image {int(image_index)} in mask set '{self.name}': {exc}; "
                                   "expected PNG label maps (delete the mask set and rerun 'reidkit mask')") from None

    def clothing_mask(self, image_index) -> np.ndarray:
        """HxW bool: True where the pixel is clothing (the region a generator may repaint)."""
        return np.isin(self.label_map(image_index), self.clothing_ids)
