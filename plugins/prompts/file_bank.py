"""The ``file`` prompt source: a user's clothing bank from JSON or YAML."""
from __future__ import annotations

from pathlib import Path

from reidkit.contracts import Setting
from reidkit.errors import ReidkitError
from reidkit.generation.contracts import BankEntry


class FilePrompts:
    """``path``: a mapping outfit name -> list of items (or one comma-separated string), or a list of such lists.
    The names become target clothes keys; outfits named like a store outfit are excluded for that outfit's images."""

    defaults = {"path": ""}
    settings_spec = {"path": Setting(str, "the bank file: JSON or YAML, outfit name -> items (or a list of item lists)")}

    def __init__(self, settings, device):
        self.settings = settings

    def read(self):
        import yaml

        path = Path(self.settings["path"]) if self.settings["path"] else None
        if path is None or not path.is_file():
            raise ReidkitError(f"prompt source 'file' needs --prompt-set path=FILE.yaml|json (got '{self.settings['path']}')")
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except (OSError, yaml.YAMLError) as exc:
            raise ReidkitError(f"{path}: not valid JSON/YAML ({str(exc).splitlines()[0]})") from None
        if isinstance(data, list):
            data = {f"file-{j}": v for j, v in enumerate(data)}
        if not isinstance(data, dict) or not data:
            raise ReidkitError(f"{path}: expected a mapping name -> items or a list of item lists")
        return data

    def check(self, store):
        """Before anything is written: the file must read and every outfit parse."""
        self.entries()

    def build(self, store, groups, progress=None):
        entries = self.entries()
        if progress:
            progress(len(groups))
        return entries

    def entries(self) -> list[BankEntry]:
        from reidkit.plugins.prompts.parsing import parse_items

        entries = []
        for key, value in self.read().items():
            if isinstance(value, str):
                items = parse_items(value)
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                items = [" ".join(v.lower().replace(",", " ").split()) for v in value if len(v.strip()) > 2]
            else:
                raise ReidkitError(f"{self.settings['path']}: outfit '{key}' must be a list of strings or one string")
            if not items:
                raise ReidkitError(f"{self.settings['path']}: outfit '{key}' has no clothing item longer than 2 characters")
            entries.append(BankEntry(str(key), items, raw="file", ok=True))
        return entries
