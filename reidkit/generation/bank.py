"""The clothing bank: one item list per outfit, built once by a prompt source and kept in the store.

Stored as the sidecar part ``prompts/<name>`` with columns ``key``,
``items`` (JSON list), ``raw`` (the text they were parsed from) and ``ok``
(parsed cleanly). Built from the training split only: test outfits never
become targets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.generation.contracts import BankEntry, resolve_settings
from reidkit.generation.parts import open_part, settings_name
from reidkit.store import chunks

KIND = "prompts"


def outfit_key(store, index: int) -> str:
    """An image's outfit: its clothes key, or one outfit per person where the dataset has none."""
    key = store.clothes_key[int(index)]
    return key if key else f"person-{int(store.pid[int(index)])}"


def outfit_groups(store, split: str = "train") -> dict[str, np.ndarray]:
    """Clothes key -> indices of the split's usable images wearing it (sorted keys)."""
    idx = store.split(split)
    idx = idx[~store.junk[idx] & ~store.distractor[idx]]
    groups: dict[str, list[int]] = {}
    for i in idx.tolist():
        groups.setdefault(outfit_key(store, i), []).append(i)
    return {k: np.asarray(groups[k], dtype=np.int64) for k in sorted(groups)}


def prompt_of(items: list[str]) -> str:
    return ", ".join(items)


@dataclass
class ClothingBank:
    name: str
    entries: dict[str, BankEntry]
    info: dict = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return sorted(self.entries)

    def items(self, key) -> list[str]:
        return self.entries[key].items

    def prompt(self, key) -> str:
        return prompt_of(self.entries[key].items)

    @property
    def parse_failures(self) -> int:
        return sum(not e.ok for e in self.entries.values())

    @classmethod
    def read(cls, d) -> "ClothingBank":
        part = chunks.ChunkedPart(d)
        entries = {}
        if part.files:
            keys, items, raws, oks = (part.column(c) for c in ("key", "items", "raw", "ok"))
            for k, it, raw, ok in zip(keys, items, raws, oks):
                entries.setdefault(str(k), BankEntry(str(k), json.loads(it), str(raw), bool(ok)))  # first copy wins
        return cls(part.name, entries, part.info)


def ensure_bank(store, source: str, overrides: dict | None, *, device: str = "cpu", bank_name: str | None = None,
                split: str = "train", show_progress: bool = True) -> ClothingBank:
    """The store's clothing bank from ``source`` (built and stored on first use)."""
    from reidkit.plugin_manager import get_plugins

    cls = get_plugins().get("prompt_sources", source)
    settings = resolve_settings("prompt source", source, cls, overrides)
    name = bank_name or settings_name(source, settings, dict(getattr(cls, "defaults", {})))
    d = open_part(store, KIND, name, {"source": source, "settings": settings, "split": split},
                           must_match=("source", "settings", "split"))
    bank = ClothingBank.read(d)
    if bank.entries:
        return bank
    groups = outfit_groups(store, split)
    if not groups:
        raise ReidkitError(f"split '{split}' has no usable images to build a clothing bank from")
    from reidkit.progress import progress_bar

    with progress_bar(len(groups) if show_progress else 0, f"prompts {source}", unit="outfit") as update:
        entries = cls(settings, device).build(store, groups, progress=lambda n: update(completed=n))
    if not entries:
        raise ReidkitError(f"prompt source '{source}' produced an empty clothing bank")
    for e in entries:
        if not e.items:
            raise ReidkitError(f"prompt source '{source}' gave outfit '{e.key}' no clothing items")
    try:
        _publish_bank(d, entries)
    except FileExistsError:  # another rank published the same (seeded) bank first
        pass
    return ClothingBank.read(d)


def _publish_bank(d, entries):
    chunks.write_chunk(d, "bank", {
        "key": [e.key for e in entries],
        "items": [json.dumps(e.items) for e in entries],
        "raw": [e.raw for e in entries],
        "ok": [bool(e.ok) for e in entries],
    })
