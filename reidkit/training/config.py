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
    from reidkit.user_config import read_settings_file

    path = Path(path)
    if not path.is_file() and path.suffix == "" and len(path.parts) == 1:
        known = recipes()
        if str(path) in known:
            path = known[str(path)]
        else:
            raise ReidkitError(f"--config {path}: no such file, and not a recipe ({', '.join(sorted(known)) or 'none'})")
    return read_settings_file(path, f"--config {path}")


def resolve_config(plugin: str | None, file_settings: dict | None = None, overrides: dict | None = None,
                   file_source: str = "config file", option_names: dict | None = None) -> dict:
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
            names = {**OPTION_NAMES, **(option_names or {})}  # --set keys are named as the user typed them
            origin[key] = f"option {names.get(key, '--' + key.replace('_', '-'))}" if source == "option" else source
    validate_config(config, origin, run_spec(factory))
    if isinstance(config.get("backbone"), dict):
        check_backbone_keys(config["backbone"], origin.get("backbone", "the settings"))
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
def _common_spec() -> dict:
    """The declarations of the settings every strategy shares (COMMON); a strategy's own come from its class."""
    from reidkit.contracts import Setting
    from reidkit.training.resizing import KERNELS

    count = lambda low, what, **kw: Setting(int, what, min=low, **kw)  # noqa: E731
    return {
        "seed": count(0, "seed of initialisation, sampling and augmentation"),
        "device": Setting(str, "auto, cpu, cuda or cuda:N"),
        "amp": Setting(str, "mixed precision on GPU (none: float32)", choices=("auto", "none", "no", "bf16", "fp16")),
        "num_workers": count(0, "DataLoader workers (null: per CPU)", nullable=True),
        "eval_every": count(0, "evaluate every N epochs (0: never)"),
        "checkpoint_every": count(1, "a checkpoint every N epochs"),
        "keep_checkpoints": count(1, "checkpoint folders kept"),
        "log_every_steps": count(1, "read the losses back every N steps"),
        "check_sync": Setting(bool, "compare the ranks' parameters after each epoch"),
        "compile": Setting(bool, "torch.compile the model"),
        "eval_protocols": Setting(None, "protocols evaluated during training (null: all)"),
        "eval_batch_size": count(1, "images per evaluation batch"),
        "select_protocol": Setting(str, "protocol whose rank-1 picks the best epoch (null: cc, else standard)", nullable=True),
        "max_steps_per_epoch": count(1, "cap on batches per epoch", nullable=True),
        "init_from": Setting(str, "a pre-trained backbone export", nullable=True),
        "scale_schedule": Setting(bool, "scale the epoch-valued settings to epochs"),
        "clip_len": count(0, "frames per training clip (0: images)"),
        "clip_stride": count(1, "a clip takes every Nth frame"),
        "clip_chunk": count(0, "tracklets cut into pieces of N frames (0: whole)"),
        "resize": Setting(str, "resizing kernel", choices=KERNELS),
    }


def run_spec(factory) -> dict:
    """Every setting a run of this strategy takes, declared: the common ones, then the strategy's
    (``settings_spec``, else the type of its default: reidkit.contracts.settings_of)."""
    from reidkit.contracts import settings_of

    return {**_common_spec(), **settings_of(factory)}


def validate_config(config: dict, origin: dict | None = None, spec: dict | None = None) -> None:
    """Check every setting against its declaration (reidkit.contracts.Setting: the one schema of every plugin
    kind); a bad one raises a one-line ReidkitError naming the key, where it came from (``origin[key]``) and
    what was expected. ``spec``: the run's declarations (default: the strategy named in ``config``)."""
    origin = origin or {}
    spec = spec if spec is not None else run_spec(strategy_factory(config.get("plugin", "baseline")))

    def bad(key, expected):
        value = config[key]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ReidkitError(f"setting '{key}' from {origin.get(key, 'the settings')}: expected {expected}, "
                           f"got {shown} ({type(value).__name__})")

    for key, setting in spec.items():
        if key in config:
            problem = setting.problem(config[key])
            if problem:
                bad(key, problem)
    generated = config.get("generated")
    if not (isinstance(generated, str) or (isinstance(generated, list) and all(isinstance(g, str) and g for g in generated))):
        bad("generated", "a run name or a list of run names")


def check_backbone_keys(backbone: dict, source: str = "the settings") -> None:
    """A backbone setting its plugin does not take is one line naming it (a typo is never silently dropped).
    The plugin's settings are its factory's named parameters; a factory taking ``**kwargs`` accepts any."""
    import inspect

    from reidkit.plugin_manager import get_plugins

    plugin = backbone.get("plugin", "timm")
    plugins = get_plugins()
    if plugin not in plugins.names("backbones"):
        return  # an unknown plugin is reported where it is built, with the registered names
    params = inspect.signature(plugins.get("backbones", plugin)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    known = {p.name for p in params} | {"plugin", "resolved_weights"}  # resolved_weights: a record the engine writes
    unknown = sorted(set(backbone) - known)
    if unknown:
        raise ReidkitError(f"unknown backbone setting(s) in {source}: {', '.join(unknown)} "
                           f"(backbone '{plugin}' takes: {', '.join(sorted(known - {'resolved_weights'}))})")


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
