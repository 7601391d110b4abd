"""Training configuration: strategy defaults (the papers'), then a YAML file, then command-line options."""
from __future__ import annotations

import copy
from pathlib import Path

from reidkit.errors import ReidkitError

# settings every strategy shares; the strategy's own defaults come on top
COMMON = {
    "seed": 0, "device": "auto", "amp": "auto", "num_workers": 2, "generated": [], "eval_every": 0,
    "checkpoint_every": 1, "eval_protocols": None, "eval_batch_size": 128,
    "max_steps_per_epoch": None, "init_from": None,
    "scale_schedule": False,  # true: every epoch-valued setting scaled by epochs / the strategy's default epochs
}
# settings that name an epoch (0-based) or a number of epochs; checked against the run's length
EPOCH_SETTINGS = ("warmup_epochs", "milestones", "clothes_start_epoch", "adversarial_start_epoch", "progress_epochs")
# written by the engine into config.yaml (facts about the run, not settings)
DERIVED_KEYS = ("store", "store_fingerprint", "data", "versions", "world_size")
# may change between a run and its --resume (the rest must match)
RESUMABLE_CHANGES = {"epochs", "device", "num_workers", "eval_every", "checkpoint_every", "eval_protocols", "eval_batch_size", "amp"}


def strategy_factory(name: str):
    from reidkit.plugin_manager import get_plugins

    return get_plugins().get("strategies", name)


def read_config_file(path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ReidkitError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ReidkitError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ReidkitError(f"{path} must hold a mapping of settings (key: value), not {type(data).__name__}")
    return data


def resolve_config(plugin: str | None, file_settings: dict | None = None, overrides: dict | None = None) -> dict:
    """Merge: strategy defaults < config file < options given on the command line (None = not given)."""
    file_settings = dict(file_settings or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = overrides.pop("plugin", None) or file_settings.pop("plugin", None) or plugin or "baseline"
    file_settings.pop("plugin", None)
    factory = strategy_factory(name)
    base = overrides.get("base") or file_settings.get("base")
    defaults = factory.defaults_for(base) if base and hasattr(factory, "defaults_for") else getattr(factory, "defaults", {})
    config = {**copy.deepcopy(COMMON), **copy.deepcopy(defaults), "plugin": name}
    known = set(config)
    for source, settings in (("config file", file_settings), ("option", overrides)):
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ReidkitError(f"unknown setting(s) in {source}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for key, value in settings.items():
            if key in ("backbone", "augment") and isinstance(value, dict):  # nested settings: merge, do not replace
                config[key] = {**config.get(key, {}), **value}
            else:
                config[key] = value
    if isinstance(config["generated"], str):
        config["generated"] = [config["generated"]]
    config["generated"] = list(config["generated"])
    if config.get("scale_schedule"):
        config.update(scaled_schedule(config, int(defaults.get("epochs", config["epochs"]))))
    if getattr(factory, "needs_generated", False) and not config["generated"]:
        raise ReidkitError(f"strategy '{name}' trains with generated images: name a run with --generated RUN (see 'reidkit expand')")
    return config


def backbone_settings(config: dict, name: str | None) -> dict:
    """``--backbone NAME``: a registered backbone plugin, or else a model name for the default plugin (timm)."""
    from reidkit.plugin_manager import get_plugins

    backbone = dict(config.get("backbone", {}))
    if name:
        if name in get_plugins().names("backbones"):
            backbone["plugin"] = name
        else:
            backbone["model"] = name
    return backbone


def scaled_schedule(config: dict, reference_epochs: int) -> dict:
    """The epoch-valued settings scaled from a ``reference_epochs`` schedule to the run's ``epochs`` (rounded)."""
    factor = int(config["epochs"]) / max(1, reference_epochs)

    def scale(v):
        return [scale(x) for x in v] if isinstance(v, list) else int(round(v * factor))

    return {key: scale(config[key]) for key in EPOCH_SETTINGS if key in config}


def schedule_warnings(config: dict) -> list[str]:
    """One line per schedule point the run never reaches (epochs count from 0 to epochs - 1)."""
    last = int(config["epochs"]) - 1
    hint = "lower it, or set scale_schedule: true to scale the paper schedule to --epochs"
    out = []
    for key, what in (("clothes_start_epoch", "the clothes classifier never trains"),
                      ("adversarial_start_epoch", "the adversarial (CAL) loss never switches on")):
        if key in config and int(config[key]) > last:
            out.append(f"setting '{key}' is {config[key]} but the run's last epoch is {last}: {what} ({hint})")
    late = [m for m in config.get("milestones") or [] if int(m) > last]
    if late:
        out.append(f"setting 'milestones' has {late} beyond the run's last epoch {last}: those learning-rate steps never happen ({hint})")
    if int(config.get("warmup_epochs") or 0) > last + 1:
        out.append(f"setting 'warmup_epochs' is {config['warmup_epochs']} but the run has {last + 1} epochs: the warm-up never ends ({hint})")
    if config.get("generated") and config.get("progress_epochs"):
        late = [t for t in config["progress_epochs"] if int(t) >= last]
        if late:
            out.append(f"setting 'progress_epochs' has {late} at or beyond the run's last epoch {last}: the variant pool never reaches "
                       f"its later fractions ({hint})")
    return out
