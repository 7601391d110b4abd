"""What every plugin kind must provide, what it may provide, and how its settings are declared and checked.

Each kind has a :class:`Contract`: the methods a registered object must have
(checked when a plugin registers it: an object missing one is refused in one
line naming the plugin and the method, and the plugin's other registrations
still load), and the optional methods and attributes the engines may use,
each with the value the engine assumes when a plugin leaves it out. Engines
read optional members through :meth:`Contract.optional` only, so the list
below is the complete set of optional members reidkit ever looks for.

Settings: a plugin class keeps every setting's default in ``defaults`` (a
dict) and may declare any of them in ``settings_spec`` (a dict of
:class:`Setting`: type, choices, range, help). An undeclared setting takes
the type of its default (bool, int, float, str, list, dict; a None default
is not checked). Every user value (``--set``, ``--prompt-set``,
``--mask-set``, ``--filter NAME:k=v``, YAML) is checked against it before
any model loads or anything is written (:func:`check_settings`).
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from reidkit.errors import PluginError

TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
              dict: "a mapping (key: value)"}
# what reidkit.devices.torch_dtype accepts, for plugins' dtype settings
DTYPES = ("auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16")
SHORT_TYPE = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


@dataclass(frozen=True)
class Setting:
    """The declaration of one setting (its default stays in the class's ``defaults``).

    ``type``: bool, int, float, str, list or dict (None: any value). ``item``:
    the type of a list's elements. ``choices``: the allowed values. ``min`` /
    ``max``: inclusive bounds of a number (or of every element of a number
    list); ``min_open`` / ``max_open`` make them exclusive. ``nullable``:
    None (YAML ``null``) is also accepted. ``help``: one line for ``reidkit
    plugins NAME``.
    """

    type: type | None = None
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    item: type | None = None
    nullable: bool = False

    def expected(self) -> str:
        """What a valid value is, in words: 'an integer >= 1', 'one of ddim, model'."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        what = TYPE_NAMES.get(self.type, "any value")
        if self.type is list and self.item is not None:
            what = f"a list of {TYPE_NAMES[self.item].split(' ', 1)[-1]}s"
        bounds = self.bounds()
        if bounds:
            what += (", each " if self.type is list else " ") + bounds
        return what + (" (or null)" if self.nullable else "")

    def bounds(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_open else '>='} {self.min}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_open else '<='} {self.max}")
        return " and ".join(parts)

    def problem(self, value) -> str | None:
        """None when ``value`` is valid, else what it should have been."""
        if value is None:
            return None if self.nullable or self.type is None else self.expected()
        if self.choices is not None:
            return None if value in self.choices else self.expected()
        if self.type is list:
            if not isinstance(value, (list, tuple)):
                return self.expected()
            if self.item is not None and not all(_of_type(v, self.item) and self._in_range(v) for v in value):
                return self.expected()
            return None
        if self.type is not None and not _of_type(value, self.type):
            return self.expected()
        return None if self._in_range(value) else self.expected()

    def _in_range(self, value) -> bool:
        if self.min is None and self.max is None or not isinstance(value, (numbers.Real, str)) or isinstance(value, bool):
            return True
        try:
            number = float(value)
        except ValueError:
            return False
        if number != number:  # NaN is in no range
            return False
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            return False
        return self.max is None or not (number > self.max or (self.max_open and number == self.max))

    def as_json(self) -> dict:
        return {"type": SHORT_TYPE.get(self.type), "item": SHORT_TYPE.get(self.item), "choices": list(self.choices) if self.choices else None,
                "min": self.min, "max": self.max, "min_open": self.min_open, "max_open": self.max_open,
                "nullable": self.nullable, "help": self.help}


def _of_type(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; plugins take float() of it
            try:
                float(value)
            except ValueError:
                return False
            return True
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, (str, os.PathLike))  # library callers pass Path objects for files and folders
    if kind is list:
        return isinstance(value, (list, tuple))
    if kind is dict:
        return isinstance(value, dict)
    return isinstance(value, kind)


def inferred(default) -> Setting:
    """The declaration of an undeclared setting: the type of its default (None: unchecked)."""
    for kind in (bool, int, float, str, list, dict):
        if _of_type(default, kind) and not (kind is float and isinstance(default, str)):
            return Setting(kind)
    return Setting()


def settings_of(obj) -> dict[str, Setting]:
    """Every setting of a plugin class: declared in ``settings_spec``, else inferred from ``defaults``."""
    defaults = dict(getattr(obj, "defaults", None) or {})
    spec = dict(getattr(obj, "settings_spec", None) or {})
    return {key: spec.get(key) or inferred(default) for key, default in defaults.items()}


def check_value(where: str, key: str, setting: Setting | None, value) -> None:
    """A one-line PluginError ``WHERE: setting 'KEY' must be EXPECTED, got VALUE`` when ``value`` does not fit."""
    problem = setting.problem(value) if setting is not None else None
    if problem:
        shown = repr(value) if not isinstance(value, os.PathLike) else repr(str(value))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise PluginError(f"{where}: setting '{key}' must be {problem}, got {shown}")


def check_setting(label: str, name: str, obj, key: str, value) -> None:
    """A one-line PluginError when ``value`` does not fit setting ``key`` of plugin ``name``."""
    check_value(f"{label} '{name}'", key, settings_of(obj).get(key), value)


def check_settings(label: str, name: str, obj, settings: dict) -> None:
    """Check every value of ``settings`` against the plugin's declarations (the first bad one raises)."""
    for key, value in settings.items():
        check_setting(label, name, obj, key, value)


def coerce_value(value, setting: Setting | None, default):
    """A value typed on the command line (a string) read like YAML, unless the setting takes a string;
    a path object given for a string setting becomes its text."""
    wants_str = setting is not None and (setting.type is str or (setting.choices and all(isinstance(c, str) for c in setting.choices)))
    if isinstance(value, os.PathLike) and wants_str:  # a library caller's Path: recorded in part.json as its text
        return os.fspath(value)
    if isinstance(value, str) and not wants_str and not isinstance(default, str):
        import yaml

        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


@dataclass(frozen=True)
class Contract:
    """One plugin kind: ``required`` methods (checked at registration), ``optional`` members with the value
    assumed when absent, whether the registered object must be a class, and whether it has settings."""

    kind: str
    protocol: str  # where the full contract is documented
    required: tuple[str, ...] = ()
    optional: dict = field(default_factory=dict)
    must_be_class: bool = True
    has_settings: bool = True
    # the required methods may be replaced by this member (a masker with existing masks needs no label_maps)
    alternative: dict = field(default_factory=dict)

    def missing(self, obj) -> list[str]:
        """The required methods ``obj`` lacks (or holds as something not callable)."""
        out = []
        for method in self.required:
            if callable(getattr(obj, method, None)):
                continue
            alt = self.alternative.get(method)
            if alt and callable(getattr(obj, alt, None)):
                continue
            out.append(method)
        return out

    def optional_member(self, obj, name: str):
        """An optional method or attribute of ``obj``, or the contract's stated default when absent."""
        if name not in self.optional:  # engines may only look for what the contract declares
            raise KeyError(f"'{name}' is not an optional member of the {self.kind} contract")
        value = getattr(obj, name, None)
        return self.optional[name] if value is None else value

    def has(self, obj, name: str) -> bool:
        """Whether ``obj`` provides optional member ``name`` (a generator with its own ``plan`` ...)."""
        if name not in self.optional:
            raise KeyError(f"'{name}' is not an optional member of the {self.kind} contract")
        return getattr(obj, name, None) is not None


def _nothing(*args, **kwargs):
    return None


def _empty(*args, **kwargs):
    return {}


def _no_hooks(*args, **kwargs):
    return []


CONTRACTS = {
    "adapters": Contract("adapter", "reidkit.adapter.Adapter", required=("scan",), has_settings=False),
    "maskers": Contract("masker", "reidkit.generation.contracts.Masker", required=("label_maps",),
                        optional={"existing": None, "check": _nothing},
                        alternative={"label_maps": "existing"}),
    "prompt_sources": Contract("prompt source", "reidkit.generation.contracts.PromptSource", required=("build",),
                               optional={"check": _nothing, "counts": None}),
    "generators": Contract("generator", "reidkit.generation.contracts.Generator", required=("generate",),
                           optional={"load": _nothing, "plan": None, "needs_masks": True, "default_masker": None,
                                     "default_prompts": None, "check": _nothing,
                                     "provenance": _empty, "weights": None}),
    "filters": Contract("filter", "reidkit.generation.contracts.Filter", required=("judge",),
                        optional={"load": _nothing, "pass_rates": None, "check": _nothing}),
    "backbones": Contract("backbone", "reidkit.training.contracts.Backbone", must_be_class=False, has_settings=False,
                          optional={"resolve_weights": None, "settings_spec": None}),
    "strategies": Contract("strategy", "reidkit.training.contracts.Strategy",
                           required=("build_heads", "loss", "lr_factor", "variant_limit"),
                           optional={"separate_optimizers": _empty, "auxiliary_losses": _empty, "on_checkpoint": _nothing,
                                     "defaults_for": None, "needs_generated": False, "hooks": _no_hooks,
                                     "epoch_settings": (), "schedule_warnings": None, "resumable_settings": ()},
                           must_be_class=False),
    "commands": Contract("command", "click.Command", has_settings=False, must_be_class=False),
}


def refusal(kind: str, name: str, obj) -> str | None:
    """Why ``obj`` cannot be registered as a ``kind`` named ``name`` (None: it fulfils the contract)."""
    contract = CONTRACTS[kind]
    if not callable(obj):
        return f"{contract.kind} '{name}' is not a class or factory (got {type(obj).__name__})"
    if contract.must_be_class and not isinstance(obj, type):
        return f"{contract.kind} '{name}' must be a class (got {type(obj).__name__}; see {contract.protocol})"
    if isinstance(obj, type):  # a plain factory function's product is only known when it is called
        missing = contract.missing(obj)
        if kind == "adapters" and not missing:
            from reidkit.adapter import Adapter

            if getattr(obj, "scan", None) is Adapter.scan:
                missing = ["scan"]
        if missing:
            return (f"{contract.kind} '{name}' lacks required method{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(m) for m in missing)} (contract: {contract.protocol})")
    if contract.has_settings:
        return _settings_refusal(contract, name, obj)
    return None


def _settings_refusal(contract: Contract, name: str, obj) -> str | None:
    defaults = getattr(obj, "defaults", None)
    if defaults is not None and not isinstance(defaults, dict):
        return f"{contract.kind} '{name}': defaults must be a dict of settings, got {type(defaults).__name__}"
    spec = getattr(obj, "settings_spec", None)
    if spec is None:
        return None
    if not isinstance(spec, dict):
        return f"{contract.kind} '{name}': settings_spec must be a dict of Setting, got {type(spec).__name__}"
    for key, setting in spec.items():
        if not isinstance(setting, Setting):
            return f"{contract.kind} '{name}': settings_spec['{key}'] must be a reidkit.contracts.Setting, got {type(setting).__name__}"
        if key not in (defaults or {}):
            return f"{contract.kind} '{name}': settings_spec declares '{key}', which has no default in defaults"
        problem = setting.problem(defaults[key])
        if problem:
            return f"{contract.kind} '{name}': the default of setting '{key}' ({defaults[key]!r}) is not {problem}"
    return None


def describe_settings(obj) -> dict:
    """{key: {"default": ..., "type": ..., "choices": ..., "min": ..., "max": ..., "help": ...}} for display and JSON."""
    defaults = dict(getattr(obj, "defaults", None) or {})
    return {key: {"default": defaults[key], **setting.as_json()} for key, setting in settings_of(obj).items()}
