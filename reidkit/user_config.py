"""User / site defaults for commands: the YAML file named by ``$REIDKIT_CONFIG``.

One section per command, with the keys that command's ``--config`` file
takes::

    expand:
      device: cuda
      batch_size: 16
      masker_settings: {parser: {model: /models/segformer_b2_clothes}}   # per plugin, or flat as in --config
    train:
      num_workers: 8
      backbone: {model: resnet50}

Priority, lowest first: built-in defaults, this file, ``--config``, the
command-line flags. A missing file, an unknown section or an unknown key is
a one-line error naming the file. ``expand``'s ``generator_settings``,
``prompt_settings`` and ``masker_settings`` may also be keyed by plugin name
(``{dlcr: {steps: 20}}``): then they apply only when that plugin is used,
which is what a site file shared by every run wants.
"""
from __future__ import annotations

import os
from pathlib import Path

from reidkit.errors import ReidkitError
from reidkit.settings_file import read_settings_file

ENV = "REIDKIT_CONFIG"
SECTIONS = ("expand", "train")
# expand's per-plugin setting keys -> plugin kind
PLUGIN_SETTING_KINDS = {"generator_settings": "generators", "prompt_settings": "prompt_sources",
                        "masker_settings": "maskers"}


def config_path() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else None


def load() -> dict:
    """All sections of ``$REIDKIT_CONFIG`` ({} when it is not set)."""
    path = config_path()
    if path is None:
        return {}
    if not path.is_file():
        raise ReidkitError(f"${ENV} names {path}, which does not exist (unset it, or point it at a YAML file)")
    data = read_settings_file(path, f"${ENV} {path}", f"sections ({', '.join(SECTIONS)}) mapping to settings")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ReidkitError(f"${ENV} {path}: unknown sections {unknown} (known: {', '.join(SECTIONS)})")
    for name, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ReidkitError(f"${ENV} {path}: section '{name}' must map settings to values, got {type(section).__name__}")
    return data


def user_settings(command: str, known_keys=None) -> dict:
    """The ``command`` section of ``$REIDKIT_CONFIG`` (keys with '-' read as '_'); unknown keys are an error."""
    section = load().get(command) or {}
    section = {str(k).replace("-", "_"): v for k, v in section.items()}
    if known_keys is not None:
        unknown = sorted(set(section) - set(known_keys))
        if unknown:
            raise ReidkitError(f"${ENV} {config_path()}: section '{command}' has unknown keys {unknown} "
                               f"(known: {', '.join(sorted(known_keys))})")
    return section


def train_keys() -> set:
    """Every setting some training strategy knows (the chosen strategy still checks its own)."""
    from reidkit.plugin_manager import get_plugins
    from reidkit.training.config import COMMON

    plugins = get_plugins()
    keys = set(COMMON) | {"strategy", "plugin", "base"}  # plugin: the strategy's old name
    for name in plugins.names("strategies"):
        keys |= set(getattr(plugins.get("strategies", name), "defaults", {}) or {})
    return keys


def merge_under(base: dict, top: dict) -> dict:
    """``top`` over ``base``; a mapping in both (e.g. ``backbone``) is merged key by key."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def split_per_plugin(section: dict) -> tuple[dict, dict]:
    """(flat settings, per-plugin settings): a ``*_settings`` mapping whose keys are all plugin names of its
    kind and whose values are mappings is per plugin ({key: {plugin: settings}}); anything else is flat."""
    from reidkit.plugin_manager import get_plugins

    flat, per_plugin = dict(section), {}
    for key, kind in PLUGIN_SETTING_KINDS.items():
        value = flat.get(key)
        if not isinstance(value, dict) or not value:
            continue
        names = set(get_plugins().names(kind))
        if set(value) <= names and all(isinstance(v, dict) or v is None for v in value.values()):
            per_plugin[key] = {name: dict(v or {}) for name, v in flat.pop(key).items()}
    return flat, per_plugin
