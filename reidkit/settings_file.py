"""The one reader of YAML settings files: ``--config`` (expand, train) and ``$REIDKIT_CONFIG``."""
from __future__ import annotations

from pathlib import Path

from reidkit.errors import ReidkitError


def read_settings_file(path, where: str, expected: str = "a mapping of settings (key: value)") -> dict:
    """The mapping a YAML settings file holds: the one reader of ``--config`` (expand, train) and ``$REIDKIT_CONFIG``.
    A missing file, bad YAML or another type is one line starting with ``where`` (the option and file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ReidkitError(f"{where}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ReidkitError(f"{where}: cannot read it as YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ReidkitError(f"{where}: expected {expected}, got {type(data).__name__}")
    return data
