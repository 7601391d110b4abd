"""Discovers plugins through the ``reidkit`` entry-point group and keeps what they register.

Built-in plugins are entry points of the ``reidkit`` distribution itself and
go through exactly the same path as third-party ones. ``REIDKIT_LOAD_PLUGINS``
(a comma-separated list of entry-point or distribution names) limits which
third-party plugins load; built-ins always load.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from reidkit import hookspecs
from reidkit.contracts import CONTRACTS, describe_settings, refusal
from reidkit.errors import PluginError

ENTRY_POINT_GROUP = "reidkit"
BUILTIN_DISTRIBUTION = "reidkit"
KINDS = (
    "adapters",
    "maskers",
    "prompt_sources",
    "generators",
    "filters",
    "backbones",
    "strategies",
    "commands",
)
KIND_SINGULAR = {
    "adapters": "adapter",
    "maskers": "masker",
    "prompt_sources": "prompt source",
    "generators": "generator",
    "filters": "filter",
    "backbones": "backbone",
    "strategies": "strategy",
    "commands": "command",
}


@dataclass
class PluginRecord:
    """One entry point: what it is, where it comes from, what it registered."""

    name: str
    distribution: str
    version: str
    builtin: bool
    registers: dict = field(default_factory=lambda: {kind: [] for kind in KINDS})
    error: str | None = None
    # registrations refused because they break their kind's contract: one line each, the rest still load
    refused: list = field(default_factory=list)

    def as_json(self, plugins: "PluginSet | None" = None):
        out = {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "registers": {k: sorted(v) for k, v in self.registers.items()},
            "error": self.error,
            "refused": list(self.refused),
        }
        if plugins is not None:
            out["settings"] = plugins.settings_of_record(self)
        return out


class PluginSet:
    """The loaded plugins and, per kind, the registered objects by name."""

    def __init__(self):
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self._registry: dict[str, dict[str, tuple[object, PluginRecord]]] = {k: {} for k in KINDS}
        self._refused: dict[str, dict[str, str]] = {k: {} for k in KINDS}  # kind -> name -> the refusal line

    # -- loading ---------------------------------------------------------------
    def add(self, plugin, record: PluginRecord):
        """Register a plugin object (module) and collect what its hooks register."""
        self.manager.register(plugin, name=f"{record.distribution}:{record.name}")
        self.records.append(record)
        for kind in KINDS[:-1]:
            hook_name = "register_" + kind
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=self._registrar(kind, record))

    def _registrar(self, kind, record):
        def register(name, obj):
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin '{record.name}' registered a {KIND_SINGULAR[kind]} without a name")
            taken = self._registry[kind].get(name)
            if taken is not None and taken[1] is not record:
                raise PluginError(
                    f"two plugins register the {KIND_SINGULAR[kind]} '{name}': "
                    f"'{taken[1].name}' ({taken[1].distribution}) and '{record.name}' ({record.distribution})"
                )
            why = refusal(kind, name, obj)
            if why is not None:  # broken against its contract: reported and skipped, like a plugin that fails to import
                line = f"plugin '{record.name}' ({record.distribution}): {why}"
                record.refused.append(line)
                self._refused[kind][name] = line
                return
            self._registry[kind][name] = (obj, record)
            record.registers[kind].append(name)

        return register

    def add_commands(self, cli):
        """Let every plugin add CLI commands, attributing each new command to its plugin."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            record = self._record_of(impl.plugin)
            before = dict(cli.commands)
            impl.function(cli=cli)
            for name in cli.commands:
                if name in before:
                    if cli.commands[name] is not before[name]:
                        raise PluginError(f"plugin '{record.name}' replaces the existing command '{name}'")
                    continue
                self._registry["commands"][name] = (cli.commands[name], record)
                record.registers["commands"].append(name)

    def _record_of(self, plugin):
        name = self.manager.get_name(plugin)
        for record in self.records:
            if f"{record.distribution}:{record.name}" == name:
                return record
        raise KeyError(name)

    # -- lookup ----------------------------------------------------------------
    def names(self, kind):
        return sorted(self._registry[kind])

    def get(self, kind, name):
        """The object registered as ``name``; a one-line error listing known names otherwise."""
        try:
            return self._registry[kind][name][0]
        except KeyError:
            if name in self._refused[kind]:
                raise PluginError(f"{KIND_SINGULAR[kind]} '{name}' was refused at registration: {self._refused[kind][name]}") from None
            known = ", ".join(self.names(kind)) or "none installed"
            raise PluginError(f"unknown {KIND_SINGULAR[kind]} '{name}' (known: {known})") from None

    def provider(self, kind, name):
        return self._registry[kind][name][1]

    def failures(self):
        return [r for r in self.records if r.error or r.refused]

    def settings_of_record(self, record: PluginRecord) -> dict:
        """{kind: {name: {setting: {default, type, choices, min, max, help, ...}}}} for what ``record`` registered."""
        out = {}
        for kind, names in record.registers.items():
            if not CONTRACTS[kind].has_settings:
                continue
            for name in sorted(names):
                out.setdefault(kind, {})[name] = describe_settings(self._registry[kind][name][0])
        return out


def _selected_third_party():
    raw = os.environ.get("REIDKIT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


# What a plugin's import or registration may raise and still only count as a broken plugin. SystemExit and
# KeyboardInterrupt are included on purpose: a plugin module that calls ``sys.exit()`` or raises
# KeyboardInterrupt at import must not take the whole CLI down. A real Ctrl-C that lands exactly while a plugin
# module is importing cannot be told apart from that, so it too only skips that plugin; the next Ctrl-C (or one
# at any other moment) stops the command as usual. GeneratorExit and other BaseExceptions still propagate.
_PLUGIN_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


def discover() -> PluginSet:
    """Load every ``reidkit`` entry point; a plugin that fails to import is recorded, not fatal."""
    plugins = PluginSet()
    selected = _selected_third_party()
    seen = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)):
        dist_name = ep.dist.name if ep.dist else "unknown"
        key = (dist_name, ep.name)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        builtin = dist_name == BUILTIN_DISTRIBUTION
        if not builtin and selected is not None and ep.name not in selected and dist_name not in selected:
            continue
        record = PluginRecord(
            name=ep.name,
            distribution=dist_name,
            version=ep.dist.version if ep.dist else "",
            builtin=builtin,
        )
        try:
            module = ep.load()
        except _PLUGIN_FAILURES as exc:  # a broken plugin must not stop the others
            record.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            plugins.records.append(record)
            continue
        try:
            plugins.add(module, record)
        except PluginError:
            raise
        except _PLUGIN_FAILURES as exc:
            record.error = f"{type(exc).__name__} while registering: {exc}"
            if record not in plugins.records:
                plugins.records.append(record)
    return plugins


_CACHE: PluginSet | None = None


def get_plugins(refresh: bool = False) -> PluginSet:
    """The process-wide plugin set, discovered once."""
    global _CACHE
    if _CACHE is None or refresh:
        _CACHE = discover()
    return _CACHE
