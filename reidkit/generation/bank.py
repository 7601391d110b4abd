"""The clothing bank: one item list per outfit, built once by a prompt source and kept in the store.

Stored as the sidecar part ``prompts/<name>`` with columns ``key``,
``items`` (JSON list), ``raw`` (the text they were parsed from) and ``ok``
(parsed cleanly). Built from the training split only: test outfits never
become targets.

The prompt of an outfit is its items joined with the source's ``separator``
setting when it has one (llava-llama: " ", DLCR; the names ``space`` and
``comma`` stand for " " and ", "), else ", ". A source may report counts
about the whole bank in a ``counts`` dict attribute after ``build`` (e.g.
llava-llama: truncated_answers, truncated_replies); they are kept as
attributes of the bank chunk and read back into ``ClothingBank.counts``.
An entry that failed to parse (``ok`` False) may have no items (an empty
prompt, as DLCR gives such an outfit).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from reidkit.contracts import CONTRACTS
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


SEPARATOR_NAMES = {"space": " ", "comma": ", "}


def prompt_of(items: list[str], separator: str = ", ") -> str:
    return SEPARATOR_NAMES.get(separator, separator).join(items)


@dataclass
class ClothingBank:
    name: str
    entries: dict[str, BankEntry]
    info: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)  # what the source reported about the whole bank

    @property
    def keys(self) -> list[str]:
        return sorted(self.entries)

    def items(self, key) -> list[str]:
        return self.entries[key].items

    def prompt(self, key) -> str:
        return prompt_of(self.entries[key].items, self.separator)

    @property
    def separator(self) -> str:
        return str((self.info.get("settings") or {}).get("separator", ", "))

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
        return cls(part.name, entries, part.info, _chunk_counts(part.files[:1]))


def bank_exists(store, source: str, settings: dict, bank_name: str | None = None) -> bool:
    """Whether the bank ``source`` with these (resolved) settings is already stored (then nothing is built)."""
    from reidkit.plugin_manager import get_plugins

    cls = get_plugins().get("prompt_sources", source)
    name = bank_name or settings_name(source, settings, dict(getattr(cls, "defaults", {})))
    d = chunks.part_dir(store, KIND, name)
    return (d / "part.json").is_file() and bool(chunks.chunk_files(d))


def ensure_bank(store, source: str, overrides: dict | None, *, device: str = "cpu", bank_name: str | None = None,
                split: str = "train", show_progress: bool = True) -> ClothingBank:
    """The store's clothing bank from ``source`` (built and stored on first use)."""
    from reidkit.plugin_manager import get_plugins

    cls = get_plugins().get("prompt_sources", source)
    settings = resolve_settings("prompt source", source, cls, overrides)
    name = bank_name or settings_name(source, settings, dict(getattr(cls, "defaults", {})))
    d = chunks.part_dir(store, KIND, name)

    def create():  # an existing bank's settings must agree; a new one is created when it is published
        return open_part(store, KIND, name, {"source": source, "settings": settings, "split": split},
                         must_match=("source", "settings", "split"))

    if (d / "part.json").is_file():
        bank = ClothingBank.read(create())
        if bank.entries:
            return bank
    groups = outfit_groups(store, split)
    if not groups:
        raise ReidkitError(f"split '{split}' has no usable images to build a clothing bank from")
    from reidkit.progress import progress_bar

    with progress_bar(len(groups) if show_progress else 0, f"prompts {source}", unit="outfit") as update:
        source_obj = cls(settings, device)
        entries = source_obj.build(store, groups, progress=lambda n: update(completed=n))
    if not entries:
        raise ReidkitError(f"prompt source '{source}' produced an empty clothing bank")
    for e in entries:
        if not e.items and e.ok:  # a failed parse may leave an outfit without items (DLCR: an empty prompt)
            raise ReidkitError(f"prompt source '{source}' gave outfit '{e.key}' no clothing items")
    try:
        _publish_bank(create(), entries, CONTRACTS["prompt_sources"].optional_member(source_obj, "counts"))
    except FileExistsError:  # another rank published the same (seeded) bank first
        pass
    return ClothingBank.read(d)


def _chunk_counts(files) -> dict:
    """The counts a source reported, kept as integer attributes of the bank chunk."""
    if not files:
        return {}
    import h5py

    with h5py.File(files[0], "r") as h5:
        return {str(k): int(v) for k, v in h5.attrs.items() if isinstance(v, (int, np.integer))}


def _publish_bank(d, entries, counts=None):
    chunks.write_chunk(d, "bank", {
        "key": [e.key for e in entries],
        "items": [json.dumps(e.items) for e in entries],
        "raw": [e.raw for e in entries],
        "ok": [bool(e.ok) for e in entries],
    }, attrs={str(k): int(v) for k, v in (counts or {}).items()})
