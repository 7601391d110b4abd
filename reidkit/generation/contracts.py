"""Contracts of the four expansion plugin kinds: Masker, PromptSource, Generator, Filter.

Every plugin is a class registered through its hook (``register_maskers`` ...).
A class declares ``defaults`` (every setting it accepts, with its default
value) and may declare their types, choices, ranges and help in
``settings_spec`` (a dict of :class:`Setting`; an undeclared setting takes
its default's type). reidkit resolves a user's overrides against them
(:func:`resolve_settings`, which refuses a bad value in one line before
anything loads) and constructs the plugin with ``cls(settings, device)``
(filters also receive the store). Constructors load nothing; heavy
libraries are imported inside methods, never at module import.

The protocols below document each kind; what is checked when a plugin
registers (required methods) and which optional members the engine uses
(with the behaviour when absent) is listed in ``reidkit.contracts.CONTRACTS``.
A registered class missing a required method is refused in one line naming
the plugin and the method.

Optional for every kind here: ``check(store)`` on an instance, called before
anything is written or any model loads, raising a one-line
``reidkit.errors.PluginError`` for input the plugin can already see is bad
(a missing file, a mask set the store lacks, a checkpoint that is no run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from reidkit.contracts import Setting  # noqa: F401  (plugins import it from here or from reidkit.contracts)
from reidkit.errors import PluginError


@dataclass
class GenerationItem:
    """One (source image, variant) to generate: everything a generator or filter may look at."""

    source_index: int
    variant: int
    image: np.ndarray  # HxWx3 uint8 RGB, the untouched source
    mask: np.ndarray | None  # HxW bool, True where clothing may be repainted
    label_map: np.ndarray | None  # HxW uint8 label ids into ``labels``
    labels: list[str]
    clothing: list[str]
    target_key: str  # clothes key of the target outfit in the clothing bank
    items: list[str]  # the target outfit's clothing items
    prompt: str
    seed: int
    pid: int = -1
    camera: int = -1


@dataclass
class Verdict:
    """A filter's decision on one generated image."""

    kept: bool
    reason: str = ""
    scores: dict = field(default_factory=dict)


@dataclass
class BankEntry:
    """One outfit of the clothing bank: its key, its clothing items, and how they were obtained."""

    key: str
    items: list[str]
    raw: str = ""  # the model's text (or the template) the items were parsed from
    ok: bool = True  # False when parsing failed and the entry fell back to something else


class PluginBase:
    """A start for a masker, prompt source, generator or filter: the constructor every kind is built with
    (``cls(settings, device)``; a filter gets the store too) keeps them; declare ``defaults`` (and ``settings_spec``)
    and write the kind's required method (``label_maps``, ``build``, ``generate``, ``judge``): a class without it
    is still refused at registration, base or not."""

    defaults: ClassVar[dict] = {}
    settings_spec: ClassVar[dict] = {}

    def __init__(self, settings: dict, device: str = "cpu", store=None):
        self.settings, self.device, self.store = dict(settings), device, store


@runtime_checkable
class Masker(Protocol):
    """Labels every pixel; ``clothing`` names the labels a generator may repaint.

    ``label_maps`` turns a batch of HxWx3 uint8 RGB images into HxW uint8
    label maps (ids index ``labels``). A masker whose masks already exist
    (e.g. shipped with the dataset) instead implements
    ``existing(store) -> reidkit.store.masks.MaskSet``.
    """

    defaults: ClassVar[dict]
    labels: list[str]
    clothing: list[str]

    def __init__(self, settings: dict, device: str): ...

    def label_maps(self, images: list[np.ndarray]) -> list[np.ndarray]: ...


@runtime_checkable
class PromptSource(Protocol):
    """Builds the clothing bank: one item list per outfit (clothes key).

    ``build(store, groups, progress)`` receives ``groups`` (clothes key ->
    store indices of the images wearing it, from the training split) and
    returns a list of :class:`BankEntry`; it may return entries for keys not
    in ``groups`` (a user file), which are then also targets.
    """

    defaults: ClassVar[dict]

    def __init__(self, settings: dict, device: str): ...

    def build(self, store, groups: dict[str, np.ndarray], progress=None) -> list[BankEntry]: ...


@runtime_checkable
class Generator(Protocol):
    """Makes one image per :class:`GenerationItem`, the same size as its source.

    Output: HxWx3 arrays, uint8 (or float in [0, 255]; non-finite values are
    caught by the engine and reported to the filters). ``needs_masks`` says
    whether items carry clothing masks; ``model_id`` (or None) is recorded
    in the run's provenance. The same item (same seed) must give the same
    image whatever else is in the batch, so that shards and resumed runs
    equal one uninterrupted run.

    Optional: a generator whose work unit is not "source image x variant"
    (e.g. Diffusion-ReID: identity x N images) implements
    ``plan(store, source_indices, run_seed, item_seed)`` returning the run's
    items in a fixed order, each with ``source_index``, ``variant``, ``pid``,
    ``camera``, ``seed`` (from ``item_seed(run_seed, source_index, variant)``)
    and ``prompt``; the engine then uses those items instead of its own plan
    (no clothing bank, no masks) and shards, resumes and records them as usual.

    Optional: ``default_masker`` and ``default_prompts`` (plugin names, class
    attributes) are the masker and prompt source the generator belongs with
    (``dlcr``: ``parser`` and ``llava-llama``); the engine uses them when the
    user names none (flag or config), else ``store`` and ``templates``, and
    the expand summary says so.

    Optional: ``provenance(settings) -> dict`` (a static method) returns facts
    beyond the settings that decide what the run looks like (``dlcr``: its
    discriminator's sha256); a non-empty dict is recorded in the run's
    settings (so a resume must agree with it) and its hash ends the run's
    default name.

    Optional: ``weights`` (an attribute set by ``load``) is a dict of facts
    about the weights actually loaded (``dlcr``/``diffusion-reid``: the hub
    revision asked for and the commit it resolved to); every chunk made
    after the load records it beside the shard, device and batch size.
    """

    defaults: ClassVar[dict]
    needs_masks: ClassVar[bool]
    model_id: str | None
    # optional: default_masker: ClassVar[str]; default_prompts: ClassVar[str]

    def __init__(self, settings: dict, device: str): ...

    def generate(self, items: list[GenerationItem]) -> list[np.ndarray]: ...


@runtime_checkable
class Filter(Protocol):
    """Scores generated images and keeps or rejects each (rejected ones stay recorded)."""

    defaults: ClassVar[dict]

    def __init__(self, settings: dict, device: str, store): ...

    def judge(self, items: list[GenerationItem], outputs: list[np.ndarray], nonfinite: list[bool]) -> list[Verdict]: ...


def coerce_setting(value: Any, default: Any, setting=None):
    """A setting typed on the command line (a string) parsed like YAML, unless the setting takes a string."""
    from reidkit.contracts import coerce_value

    return coerce_value(value, setting, default)


def resolve_settings(kind: str, name: str, cls, overrides: dict | None) -> dict:
    """The plugin's defaults updated by ``overrides``, each checked against the plugin's declared (or inferred)
    settings: an unknown key or a value of the wrong type, range or choice is a one-line error."""
    from reidkit.contracts import check_setting, settings_of

    defaults = dict(getattr(cls, "defaults", {}) or {})
    declared = settings_of(cls)
    settings = dict(defaults)
    for key, value in (overrides or {}).items():
        key = key.replace("-", "_")
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise PluginError(f"{kind} '{name}' has no setting '{key}' (settings: {known})")
        settings[key] = coerce_setting(value, defaults[key], declared.get(key))
        check_setting(kind, name, cls, key, settings[key])
    return settings


def parse_key_values(text: str, what: str) -> dict:
    """``"a=1,b=x"`` -> {"a": "1", "b": "x"} (values typed later against the plugin's defaults)."""
    out = {}
    for part in [p for p in _split_top_level(text) if p.strip()]:
        if "=" not in part:
            raise PluginError(f"{what}: expected key=value, got '{part}'")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def key_values(pairs, what: str) -> dict:
    """Repeated ``--set a=1,b=x`` options -> one dict (later pairs win), for every command and command plugin."""
    out = {}
    for pair in pairs:
        out.update(parse_key_values(pair, what))
    return out


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, so ``taus=[0.3,0.5],tau=0.5`` keeps its list whole."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def parse_plugin_spec(spec, what: str) -> tuple[str, dict]:
    """``"NAME"``, ``"NAME:k=v,..."`` or ``{"name": NAME, k: v}`` -> (NAME, settings)."""
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if not name:
            raise PluginError(f"{what}: a mapping needs a 'name' key, got {spec}")
        return str(name), spec
    name, _, rest = str(spec).partition(":")
    if not name:
        raise PluginError(f"{what}: empty plugin name in '{spec}'")
    return name, parse_key_values(rest, f"{what} '{name}'")
