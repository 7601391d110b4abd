"""Registrations that break their kind's contract are refused one by one; the plugin's valid ones still load."""
from reidkit import hookimpl
from reidkit.contracts import Setting


class HalfGenerator:
    """Forgot ``generate``."""

    defaults = {"steps": 10}

    def __init__(self, settings, device):
        self.settings = settings


class MistypedFilter:
    """Its declared type does not fit its own default."""

    defaults = {"tau": "high"}
    settings_spec = {"tau": Setting(float, "threshold")}

    def __init__(self, settings, device, store):
        self.settings = settings

    def judge(self, items, outputs, nonfinite):
        return []


class KeepAllFilter:
    """Keeps everything (fulfils the contract)."""

    defaults = {}

    def __init__(self, settings, device, store):
        pass

    def judge(self, items, outputs, nonfinite):
        from reidkit.generation.contracts import Verdict

        return [Verdict(True) for _ in items]


@hookimpl
def register_generators(register):
    register("half", HalfGenerator)


@hookimpl
def register_filters(register):
    register("mistyped", MistypedFilter)
    register("keep-all", KeepAllFilter)
