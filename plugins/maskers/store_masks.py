"""The ``store`` masker: masks the dataset already ships (e.g. the synthetic world's exact label maps)."""
from __future__ import annotations

from reidkit.contracts import Setting
from reidkit.errors import ReidkitError


class StoreMasker:
    """Uses a mask set already in the store (``set``: its name; ``ground_truth`` by default)."""

    defaults = {"set": "ground_truth"}
    settings_spec = {"set": Setting(str, "name of a mask set the store has ('reidkit info' lists them)")}
    labels: list = []
    clothing: list = []

    def __init__(self, settings, device):
        self.settings = settings

    def existing(self, store):
        sets = store.mask_sets()
        name = self.settings["set"]
        if name not in sets:
            known = ", ".join(sorted(sets)) or "none"
            raise ReidkitError(f"store {store.path} has no mask set '{name}' (mask sets: {known}); "
                               "compute masks with 'reidkit mask STORE --masker heuristic' or 'parser'")
        return sets[name]

    def check(self, store):
        """Before anything is written: the named set must exist."""
        self.existing(store)

    def label_maps(self, images):
        raise ReidkitError("the 'store' masker computes nothing; it uses masks the store already has")
