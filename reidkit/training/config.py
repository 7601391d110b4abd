"""Training configuration: strategy defaults (the papers'), then a YAML file, then command-line options."""
from __future__ import annotations

import copy
from pathlib import Path

from reidkit.errors import ReidkitError

# settings every strategy shares; the strategy's own defaults come on top
COMMON = {
    "seed": 0, "device": "auto",
    "amp": "none",  # float32, as CAL (TRAIN.AMP False) and BoT train; --amp bf16 is an opt-in deviation
    "num_workers": None,  # null: min(8, CPUs available / processes on this machine) (default_workers)
    "generated": [], "eval_every": 0,
    "checkpoint_every": 1,  # a checkpoint every N epochs, and always after the last one
    "keep_checkpoints": 2,  # the last K checkpoint folders stay
    "log_every_steps": 20,  # losses stay on the device and are read back (logged, checked for NaN/inf) every N steps
    "check_sync": False,  # true: every rank hashes its parameters after each epoch (ranks/rank-R.json), compared across ranks
    "compile": False,  # true: torch.compile the model
    "eval_protocols": None, "eval_batch_size": 128,
    # with eval_every: the protocol whose rank-1 picks the best epoch kept in RUN/best (null: cc where evaluated, else standard)
    "select_protocol": None,
    "max_steps_per_epoch": None, "init_from": None,
    "scale_schedule": False,  # true: every epoch-valued setting scaled by epochs / the strategy's default epochs
    # video training (docs/training.md "Video (CCVID)"): frames per clip (0: image training), CAL's stride and dense pieces
    "clip_len": 0, "clip_stride": 4, "clip_chunk": 64,
    # how images are resized to height x width (reidkit.training.resizing): PIL's antialiased bilinear as CAL's and BoT's
    # T.Resize; pil-bicubic for CAL's video Scale; cv2-bilinear is what runs made before this setting used
    "resize": "pil-bilinear",
}
# settings that name an epoch (0-based) or a number of epochs; checked against the run's length
EPOCH_SETTINGS = ("warmup_epochs", "milestones", "clothes_start_epoch", "adversarial_start_epoch", "progress_epochs")
# written by the engine into config.yaml (facts about the run, not settings)
DERIVED_KEYS = ("store", "store_fingerprint", "data", "versions", "world_size")
# may change between a run and its --resume (the rest must match)
RESUMABLE_CHANGES = {"epochs", "device", "num_workers", "eval_every", "checkpoint_every", "eval_protocols", "eval_batch_size", "amp",
                     "keep_checkpoints", "log_every_steps", "check_sync", "compile"}


def default_workers() -> int:
    """DataLoader workers when ``num_workers`` is not set: min(8, the CPUs this process may use / the processes
    started on this machine (LOCAL_WORLD_SIZE under torchrun / accelerate))."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    per_machine = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(8, cpus // per_machine))


def strategy_factory(name: str):
    from reidkit.plugin_manager import get_plugins

    return get_plugins().get("strategies", name)


def recipes() -> dict:
    """Recipe name -> YAML file, from every strategy's ``recipes`` (paths relative to the strategy's module)."""
    import inspect

    from reidkit.plugin_manager import get_plugins

    plugins = get_plugins()
    found = {}
    for name in plugins.names("strategies"):
        factory = plugins.get("strategies", name)
        folder = Path(inspect.getfile(factory)).parent
        found.update({recipe: folder / rel for recipe, rel in (getattr(factory, "recipes", None) or {}).items()})
    return found


def read_config_file(path) -> dict:
    """A YAML file of settings, or a recipe a strategy ships, by name (``cal-video``)."""
    import yaml

    path = Path(path)
    if not path.is_file() and path.suffix == "" and len(path.parts) == 1:
        known = recipes()
        if str(path) in known:
            path = known[str(path)]
        else:
            raise ReidkitError(f"config file {path} does not exist (and is not a recipe: {', '.join(sorted(known)) or 'none'})")
    if not path.is_file():
        raise ReidkitError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ReidkitError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ReidkitError(f"{path} must hold a mapping of settings (key: value), not {type(data).__name__}")
    return data


def resolve_config(plugin: str | None, file_settings: dict | None = None, overrides: dict | None = None,
                   file_source: str = "config file") -> dict:
    """Merge: strategy defaults < config file < options given on the command line (None = not given).

    ``file_source`` names where ``file_settings`` came from (a file's path) in error messages. Every
    setting is then checked by :func:`validate_config`: a bad one is a one-line error naming it and its source.
    """
    file_settings = dict(file_settings or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = overrides.pop("plugin", None) or file_settings.pop("plugin", None) or plugin or "baseline"
    file_settings.pop("plugin", None)
    factory = strategy_factory(name)
    base = overrides.get("base") or file_settings.get("base")
    defaults = factory.defaults_for(base) if base and hasattr(factory, "defaults_for") else getattr(factory, "defaults", {})
    config = {**copy.deepcopy(COMMON), **copy.deepcopy(defaults), "plugin": name}
    known = set(config)
    origin = {key: f"strategy '{name}' defaults" for key in config}
    for source, settings in ((file_source, file_settings), ("option", overrides)):
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ReidkitError(f"unknown setting(s) in {source}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for key, value in settings.items():
            if key in ("backbone", "augment") and isinstance(value, dict):  # nested settings: merge, do not replace
                config[key] = {**config.get(key, {}), **value}
            else:
                config[key] = value
            origin[key] = f"option {OPTION_NAMES.get(key, '--' + key.replace('_', '-'))}" if source == "option" else source
    validate_config(config, origin)
    if int(config.get("clip_len") or 0) > 0 and "test_flip" in config and origin["test_flip"].startswith("strategy"):
        config["test_flip"] = False  # CAL's video test averages clips without mirroring (its image test mirrors)
    if isinstance(config["generated"], str):
        config["generated"] = [config["generated"]]
    config["generated"] = list(config["generated"])
    if config.get("scale_schedule"):
        config.update(scaled_schedule(config, int(defaults.get("epochs", config["epochs"]))))
    from reidkit.training.video import check_video_config

    check_video_config(config)  # clips with progressive or generated images: one line, before any run folder
    if getattr(factory, "needs_generated", False) and not config["generated"]:
        raise ReidkitError(f"strategy '{name}' trains with generated images: name a run with --generated RUN (see 'reidkit expand')")
    return config


# command-line option of a setting, where it is not --KEY-WITH-DASHES
OPTION_NAMES = {"max_steps_per_epoch": "--steps-per-epoch"}
# key -> (kind, lowest allowed, lowest excluded?, highest allowed or None, highest excluded?); kinds: int, float,
# int list, float list. None is allowed only for the keys in NULLABLE. Keys a strategy does not have are skipped.
NUMERIC_SETTINGS = {
    "epochs": ("int", 1), "seed": ("int", 0), "num_workers": ("int", 0), "eval_every": ("int", 0),
    "checkpoint_every": ("int", 1), "keep_checkpoints": ("int", 1), "log_every_steps": ("int", 1),
    "eval_batch_size": ("int", 1), "max_steps_per_epoch": ("int", 1),
    "clip_len": ("int", 0), "clip_stride": ("int", 1), "clip_chunk": ("int", 0),
    "ids_per_batch": ("int", 2), "images_per_id": ("int", 1), "height": ("int", 8), "width": ("int", 8),
    "warmup_epochs": ("int", 0), "schedule_offset": ("int", 0), "clothes_start_epoch": ("int", 0), "adversarial_start_epoch": ("int", 0),
    "milestones": ("int list", 0), "progress_epochs": ("int list", 0),
    "lr": ("float", 0), "weight_decay": ("float", 0), "warmup_factor": ("float", 0, True, 1),
    "gamma": ("float", 0, True), "label_smoothing": ("float", 0, False, 1, True), "triplet_margin": ("float", 0),
    "triplet_weight": ("float", 0), "clothes_scale": ("float", 0, True), "cal_epsilon": ("float", 0, False, 1, True),
    "clothes_lr": ("float", 0), "clothes_weight_decay": ("float", 0),
    "progress_fractions": ("float list", 0, True, 1),
}
NULLABLE = {"max_steps_per_epoch", "clothes_lr", "clothes_weight_decay", "num_workers"}
CHOICE_SETTINGS = {"sampler": ("cal", "bot")}
BOOLEAN_SETTINGS = ("scale_schedule", "classifier_bias", "check_sync", "compile", "test_flip")


def _describe(kind, low, low_open=False, high=None, high_open=False):
    what = {"int": "an integer", "float": "a number", "int list": "a list of integers", "float list": "a list of numbers"}[kind]
    bounds = [f"{'>' if low_open else '>='} {low}"]
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    return f"{what}, each {' and '.join(bounds)}" if kind.endswith("list") else f"{what} {' and '.join(bounds)}"


def _number_ok(value, kind, low, low_open=False, high=None, high_open=False):
    if isinstance(value, bool):
        return False
    if kind == "int":
        if not isinstance(value, int):
            return False
        number = value
    else:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; the engine takes float() of it
            try:
                number = float(value)
            except ValueError:
                return False
        elif isinstance(value, (int, float)):
            number = float(value)
        else:
            return False
        if number != number:  # NaN
            return False
    if number < low or (low_open and number == low):
        return False
    if high is not None and (number > high or (high_open and number == high)):
        return False
    return True


def validate_config(config: dict, origin: dict | None = None) -> None:
    """Check every numeric, boolean and list setting's type and range; a bad one raises a one-line
    ReidkitError naming the key, where it came from (``origin[key]``) and what was expected."""
    origin = origin or {}

    def bad(key, expected):
        value = config[key]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ReidkitError(f"setting '{key}' from {origin.get(key, 'the settings')}: expected {expected}, "
                           f"got {shown} ({type(value).__name__})")

    for key, rule in NUMERIC_SETTINGS.items():
        if key not in config or (config[key] is None and key in NULLABLE):
            continue
        kind, *bounds = rule
        value = config[key]
        if kind.endswith("list"):
            if not isinstance(value, list) or not all(_number_ok(v, kind.split()[0], *bounds) for v in value):
                bad(key, _describe(kind, *bounds))
        elif not _number_ok(value, kind, *bounds):
            bad(key, _describe(kind, *bounds) + (" (or null)" if key in NULLABLE else ""))
    for key, choices in CHOICE_SETTINGS.items():
        if key in config and config[key] not in choices:
            bad(key, "one of " + ", ".join(choices))
    for key in BOOLEAN_SETTINGS:
        if key in config and not isinstance(config[key], bool):
            bad(key, "true or false")
    generated = config.get("generated")
    if not (isinstance(generated, str) or (isinstance(generated, list) and all(isinstance(g, str) and g for g in generated))):
        bad("generated", "a run name or a list of run names")
    if "device" in config and not isinstance(config["device"], str):
        bad("device", "a device name: auto, cpu, cuda or cuda:N")
    for key in ("backbone", "augment"):
        if key in config and not isinstance(config[key], dict):
            bad(key, "a mapping of settings (key: value)")
    from reidkit.training.resizing import KERNELS

    if "resize" in config and config["resize"] not in KERNELS:
        bad("resize", "one of " + ", ".join(KERNELS))


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
    offset = int(config.get("schedule_offset") or 0)  # epoch e runs at schedule index e + offset
    late = [m for m in config.get("milestones") or [] if int(m) - offset > last]
    if late:
        out.append(f"setting 'milestones' has {late} beyond the run's last epoch {last}: those learning-rate steps never happen ({hint})")
    if int(config.get("warmup_epochs") or 0) - offset > last + 1:
        out.append(f"setting 'warmup_epochs' is {config['warmup_epochs']} but the run has {last + 1} epochs: the warm-up never ends ({hint})")
    if config.get("generated") and config.get("progress_epochs"):
        late = [t for t in config["progress_epochs"] if int(t) >= last]
        if late:
            out.append(f"setting 'progress_epochs' has {late} at or beyond the run's last epoch {last}: the variant pool never reaches "
                       f"its later fractions ({hint})")
    return out
