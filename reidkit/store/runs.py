"""Generated runs: images made by ``reidkit expand``, kept in the store's sidecar.

A run is a chunked part (``<store>.parts/runs/<name>/``); part.json holds the
generator, its settings, the run seed and everything needed to reproduce the
run. Every item (one generated image) has the columns in ``ITEM_COLUMNS``;
an item is identified by (source_index, variant).
"""
from __future__ import annotations

import json

import numpy as np

from reidkit.store.chunks import ChunkedPart, list_parts
from reidkit.store.imagecodec import decode_rgb

KIND = "runs"
ITEM_COLUMNS = {
    "image": "encoded image bytes (PNG)",
    "source_index": "store index of the source image",
    "variant": "variant number k of that source (0-based)",
    "pid": "person id (the source's)",
    "camera": "camera (the source's)",
    "target_clothes_key": "clothes key of the target outfit ('' if none)",
    "prompt": "prompt the generator used",
    "seed": "seed of this item, derived from the run seed",
    "kept": "False when a filter rejected the item (never used in training)",
    "reject_reason": "why it was rejected ('' when kept)",
    "scores": "JSON object of filter scores",
}


def list_runs(store) -> dict:
    return list_parts(store, KIND)


class GeneratedRun(ChunkedPart):
    """All published items of one run (rejected ones included, flagged by ``kept``)."""

    def __init__(self, directory, store=None):
        super().__init__(directory)
        self.store = store

    @property
    def settings(self) -> dict:
        return self.info.get("settings", {})

    def source_index(self) -> np.ndarray:
        return self.column("source_index").astype(np.int64)

    def variant(self) -> np.ndarray:
        return self.column("variant").astype(np.int64)

    def kept(self) -> np.ndarray:
        return self.column("kept").astype(bool)

    def done_keys(self) -> set[tuple[int, int]]:
        if not self.files:
            return set()
        return set(zip(self.source_index().tolist(), self.variant().tolist()))

    def image_bytes(self, i) -> bytes:
        return self.item_bytes("image", int(i))

    def image(self, i) -> np.ndarray:
        try:
            return decode_rgb(self.image_bytes(i))
        except (ValueError, OSError) as exc:  # named by item, source index and source path: one line
            from reidkit.store.imagecodec import ImageDecodeError

            source = int(self.source_index()[int(i)])
            where = self.store.describe_image(source) if self.store is not None else f"store image {source}"
            raise ImageDecodeError(f"cannot decode item {int(i)} of generated run '{self.name}' (made from {where}): "
                                   f"{exc}; expected PNG bytes written by 'reidkit expand' (delete the run and rerun)") from None

    def scores(self, i) -> dict:
        return json.loads(self.column("scores")[int(i)] or "{}")
