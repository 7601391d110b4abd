"""Several stores trained on as one (``reidkit train A.h5 B.h5``), as fast-reid mixes datasets.

Items keep their order, store after store: item ``offset[s] + i`` is image ``i`` of store ``s``. Person, outfit
and camera ids are namespaced by the store's position (``s * NAMESPACE + id``), so persons of two datasets never
share a label even when their numbers collide; -1 (no outfit) stays -1. Generated runs stay with their own store
and are not read through a union.
"""
from __future__ import annotations

import hashlib

import numpy as np

from reidkit.errors import ReidkitError

NAMESPACE = 1_000_000  # ids of store s become s * NAMESPACE + id (no benchmark has a million persons)


class StoreUnion:
    """The stores ``stores`` (opened reidkit stores) read as one for training."""

    def __init__(self, stores: list):
        if len(stores) < 2:
            raise ReidkitError("a store union needs at least two stores")
        self.stores = list(stores)
        sizes = [len(s) for s in self.stores]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.path = " + ".join(str(s.path) for s in self.stores)  # how errors and logs name it
        digest = hashlib.sha256("\n".join(s.fingerprint for s in self.stores).encode()).hexdigest()[:16]
        self.fingerprint = f"union-{digest}"
        self.pid = self._namespaced("pid")
        self.clothes_id = self._namespaced("clothes_id")
        self.camera = self._namespaced("camera")

    def _namespaced(self, column: str) -> np.ndarray:
        parts = []
        for s, store in enumerate(self.stores):
            values = np.asarray(getattr(store, column), dtype=np.int64)
            if (values >= NAMESPACE).any():
                raise ReidkitError(f"store {store.path}: {column} values reach {int(values.max())}; a union namespaces "
                                   f"ids below {NAMESPACE}")
            parts.append(np.where(values >= 0, values + s * NAMESPACE, values))
        return np.concatenate(parts)

    def __len__(self):
        return int(self.offsets[-1])

    def split(self, name) -> np.ndarray:
        return np.concatenate([store.split(name) + self.offsets[s] for s, store in enumerate(self.stores)]).astype(np.int64)

    def locate(self, index: int) -> tuple[int, int]:
        """(store position, its own index) of union item ``index``."""
        s = int(np.searchsorted(self.offsets, int(index), side="right")) - 1
        return s, int(index) - int(self.offsets[s])

    def image(self, index: int) -> np.ndarray:
        s, i = self.locate(index)
        return self.stores[s].image(i)

    def image_bytes(self, index: int) -> bytes:
        s, i = self.locate(index)
        return self.stores[s].image_bytes(i)

    def describe_image(self, index: int) -> str:
        s, i = self.locate(index)
        return self.stores[s].describe_image(i)

    def run(self, name):
        raise ReidkitError(f"generated run '{name}': --generated names a run of one store; with several stores it is not built")

    def close(self):
        for store in self.stores:
            store.close()
