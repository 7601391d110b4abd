"""Clothing masks for a store: use the ones a masker says exist, or compute the missing ones once.

Computed masks are the sidecar part ``masks/<name>`` (columns ``index`` and
``label_map``, PNG bytes), published chunk by chunk, so ``reidkit mask``
and the first ``reidkit expand`` that needs masks are resumable.
"""
from __future__ import annotations

import numpy as np

from reidkit.contracts import CONTRACTS
from reidkit.errors import ReidkitError
from reidkit.generation.contracts import resolve_settings
from reidkit.generation.parts import open_part, settings_name
from reidkit.store import chunks
from reidkit.store.imagecodec import encode_png
from reidkit.store.lock import one_writer_per_mask_set
from reidkit.store.masks import KIND, MaskSet


def masker_plugin(name: str, overrides: dict | None):
    from reidkit.plugin_manager import get_plugins

    cls = get_plugins().get("maskers", name)
    return cls, resolve_settings("masker", name, cls, overrides)


def mask_set_name(masker: str, overrides: dict | None) -> str:
    """Name of the mask set a masker with these settings computes (``--masker store --mask-set set=NAME`` reads any)."""
    cls, settings = masker_plugin(masker, overrides)
    if CONTRACTS["maskers"].has(cls, "existing"):
        return settings.get("set", masker)
    return settings_name(masker, settings, dict(getattr(cls, "defaults", {})))


def ensure_masks(store, masker: str, overrides: dict | None, indices, *, device: str = "cpu", batch_size: int = 16,
                 chunk_size: int = 256, mask_name: str | None = None, tag: str = "all", show_progress: bool = True) -> MaskSet:
    """A MaskSet covering ``indices``: computed (and stored) where missing."""
    cls, settings = masker_plugin(masker, overrides)
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    if CONTRACTS["maskers"].has(cls, "existing"):
        mask_set = cls(settings, device).existing(store)
        missing = [i for i in indices.tolist() if i not in mask_set]
        if missing:
            raise ReidkitError(f"masks '{mask_set.name}' cover no image {missing[0]} ({len(missing)} images missing); choose another --masker")
        return mask_set
    name = mask_name or mask_set_name(masker, overrides)
    if name in store.base_masks:
        raise ReidkitError(f"the store already ships masks named '{name}'; pass another mask name")
    instance = cls(settings, device)
    info = {"masker": masker, "settings": settings, "labels": list(instance.labels), "clothing": list(instance.clothing)}
    d = chunks.part_dir(store, KIND, name)  # a name that cannot be a mask set fails here, in its own words
    if (d / "part.json").is_file():
        open_part(store, KIND, name, info, must_match=("masker", "settings", "labels", "clothing"))  # settings agree
        if np.isin(indices, MaskSet.from_file(d, store).index).all():
            return MaskSet.from_file(d, store)  # nothing to write: readers take no lock
    with one_writer_per_mask_set(store.path, name):  # one writer per mask set, 'mask' and 'expand' alike
        return _ensure_computed(store, instance, info, d, name, indices, batch_size, chunk_size, tag, show_progress, masker)


def _ensure_computed(store, instance, info, d, name, indices, batch_size, chunk_size, tag, show_progress, masker) -> MaskSet:
    """The mask set in ``d`` made to cover ``indices`` (its writer lock held)."""

    def create():  # an existing mask set's settings must agree; a new one is created with its first chunk
        return open_part(store, KIND, name, info, must_match=("masker", "settings", "labels", "clothing"))

    existing = (d / "part.json").is_file()
    if existing:
        create()
    done = set(MaskSet.from_file(d, store).index.tolist()) if existing else set()
    todo = [i for i in indices.tolist() if i not in done]
    if todo:  # a masker that fails before its first chunk (e.g. its model is missing) leaves no empty mask set
        _compute(store, instance, todo, d, batch_size, chunk_size, tag, show_progress, masker, None if existing else create)
    elif not existing:
        create()
    return MaskSet.from_file(d, store)


def _compute(store, instance, todo, d, batch_size, chunk_size, tag, show_progress, masker, create=None):
    from reidkit.progress import progress_bar

    rows = {"index": [], "label_map": []}
    pending = [create]  # makes the part.json before the first chunk (None: it exists)

    def flush():
        if rows["index"]:
            if pending[0] is not None:
                pending[0]()
                pending[0] = None
            chunks.write_chunk(d, tag, rows)
            rows["index"], rows["label_map"] = [], []

    with progress_bar(len(todo) if show_progress else 0, f"mask {masker}") as update:
        try:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                images = [store.image(i) for i in batch]
                maps = instance.label_maps(images)
                for i, img, lm in zip(batch, images, maps):
                    lm = np.asarray(lm)
                    if lm.shape != img.shape[:2]:
                        raise ReidkitError(f"masker '{masker}' returned a {lm.shape} label map for a {img.shape[:2]} image")
                    rows["index"].append(i)
                    rows["label_map"].append(encode_png(lm.astype(np.uint8), rgb=False))
                if len(rows["index"]) >= chunk_size:
                    flush()
                update(advance=len(batch))
        finally:
            flush()  # finished masks are kept even when interrupted
