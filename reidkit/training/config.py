"""Training configuration: strategy defaults (the papers'), then a YAML file, then command-line options."""
from __future__ import annotations

import copy
from pathlib import Path

from reidkit.contracts import CONTRACTS
from reidkit.errors import ReidkitError
from reidkit.training.data import BOT_AUGMENT

STRATEGY = CONTRACTS["strategies"]

# settings every strategy shares; the strategy's own defaults come on top
COMMON = {
    # the run a strategy trains unless its defaults say otherwise: BoT's on Market-1501 (the field's strong baseline),
    # so a third-party strategy needs to declare only what it changes
    "epochs": 120, "lr": 3.5e-4, "weight_decay": 5e-4, "ids_per_batch": 16, "images_per_id": 4, "height": 256, "width": 128,
    "sampler": "bot", "augment": dict(BOT_AUGMENT), "test_flip": False,
    "backbone": {"plugin": "timm", "model": "resnet50", "weights": "imagenet", "last_stride": 1, "pooling": "avg",
                 "embedding_dim": 0, "bnneck": True},
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
    "subset": None,  # ids=R or images=R: LUPerson's small-scale / few-shot training split (reidkit.training.subsets)
    "scale_schedule": False,  # true: every epoch-valued setting scaled by epochs / the strategy's default epochs
    # video training (docs/training.md "Video (CCVID)"): frames per clip (0: image training), CAL's stride and dense pieces
    "clip_len": 0, "clip_stride": 4, "clip_chunk": 64,
    # how images are resized to height x width (reidkit.training.resizing): PIL's antialiased bilinear as CAL's and BoT's
    # T.Resize; pil-bicubic for CAL's video Scale; cv2-bilinear is what runs made before this setting used
    "resize": "pil-bilinear",
}
# written by the engine into config.yaml (facts about the run, not settings)
DERIVED_KEYS = ("store", "store_fingerprint", "data", "versions", "world_size")
# may change between a run and its --resume (the rest must match)
RESUMABLE_CHANGES = {"epochs", "device", "num_workers", "eval_every", "checkpoint_every", "eval_protocols", "eval_batch_size", "amp",
                     "keep_checkpoints", "log_every_steps", "check_sync", "compile"}


def resumable_changes(config: dict) -> set:
    """Settings that may change between a run and its --resume: the common ones and its strategy's
    ``resumable_settings`` (a clustering strategy's eps after its clusters collapsed)."""
    factory = strategy_factory(config.get("strategy", "baseline"))
    return RESUMABLE_CHANGES | set(STRATEGY.optional_member(factory, "resumable_settings"))


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
    from reidkit.settings_file import read_settings_file

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
    # the strategy's name: key `strategy` (`plugin` is its old name, in config files and runs made before)
    named = [d.pop(k, None) for d in (overrides, file_settings) for k in ("strategy", "plugin")]
    name = next((n for n in named if n), None) or plugin or "baseline"
    factory = strategy_factory(name)
    base = overrides.get("base") or file_settings.get("base")
    defaults = factory.defaults_for(base) if base and hasattr(factory, "defaults_for") else getattr(factory, "defaults", {})
    config = {**copy.deepcopy(COMMON), **copy.deepcopy(defaults), "strategy": name}
    known = set(config)
    origin = {key: f"strategy '{name}' defaults" for key in config}
    for source, settings in ((file_source, file_settings), ("option", overrides)):
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ReidkitError(f"unknown setting(s) in {source}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for key, value in settings.items():
            if key == "backbone" and isinstance(value, dict) and value.get("plugin", config[key].get("plugin")) != config[key].get("plugin"):
                config[key] = dict(value)  # another backbone plugin: the defaults were the previous plugin's settings
            elif key in ("backbone", "augment") and isinstance(value, dict):  # nested settings: merge, do not replace
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
        reference = int(defaults.get("epochs", COMMON["epochs"]))
        config.update(scaled_schedule(config, reference, STRATEGY.optional_member(factory, "epoch_settings")))
    from reidkit.training.video import check_video_config

    check_video_config(config)  # clips with progressive or generated images: one line, before any run folder
    from reidkit.training.subsets import parse_subset

    parse_subset(config.get("subset"))  # ids=R / images=R, before any run folder
    if getattr(factory, "needs_generated", False) and not config["generated"]:
        raise ReidkitError(f"strategy '{name}' trains with generated images: name a run with --generated RUN (see 'reidkit expand')")
    return config


# command-line option of a setting, where it is not --KEY-WITH-DASHES
OPTION_NAMES = {"max_steps_per_epoch": "--steps-per-epoch"}
def common_spec() -> dict:
    """The declarations of the settings every strategy shares (COMMON); a strategy's own come from its class."""
    from reidkit.contracts import Setting
    from reidkit.training.resizing import KERNELS
    from reidkit.training.samplers import KINDS

    count = lambda low, what, **kw: Setting(int, what, min=low, **kw)  # noqa: E731
    return {
        "epochs": Setting(int, "training epochs", min=1),
        "lr": Setting(float, "base learning rate (Adam)", min=0),
        "weight_decay": Setting(float, "Adam weight decay", min=0),
        "ids_per_batch": Setting(int, "P: persons per batch", min=2),
        "images_per_id": Setting(int, "K: images per person in a batch", min=1),
        "height": Setting(int, "input image height in pixels", min=8),
        "width": Setting(int, "input image width in pixels", min=8),
        "sampler": Setting(str, "identity sampler (docs/training.md)", choices=KINDS),
        "augment": Setting(dict, "training augmentation (docs/training.md)"),
        "test_flip": Setting(bool, "test features averaged with the mirrored image's (reidkit eval --flip/--no-flip overrides)"),
        "backbone": Setting(dict, "backbone plugin and its settings (docs/training.md)"),
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
        "subset": Setting(str, "ids=R: a seeded share R of the training persons; images=R: of each person's images", nullable=True),
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

    return {**common_spec(), **settings_of(factory)}


def validate_config(config: dict, origin: dict | None = None, spec: dict | None = None) -> None:
    """Check every setting against its declaration (reidkit.contracts.Setting: the one schema of every plugin
    kind); a bad one raises a one-line ReidkitError naming the key, where it came from (``origin[key]``) and
    what was expected. ``spec``: the run's declarations (default: the strategy named in ``config``)."""
    origin = origin or {}
    spec = spec if spec is not None else run_spec(strategy_factory(config.get("strategy", "baseline")))

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
    """A backbone setting its plugin does not take, or a value that does not fit it, is one line naming it (a typo
    is never silently dropped). The plugin's settings are its factory's named parameters (a factory taking
    ``**kwargs`` accepts any), declared in the factory's optional ``settings_spec`` or else typed by their defaults."""
    import inspect

    from reidkit.contracts import inferred
    from reidkit.plugin_manager import get_plugins

    plugin = backbone.get("plugin", "timm")
    plugins = get_plugins()
    if plugin not in plugins.names("backbones"):
        return  # an unknown plugin is reported where it is built, with the registered names
    factory = plugins.get("backbones", plugin)
    params = inspect.signature(factory).parameters.values()
    named = {p.name: p for p in params if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    if len(named) == len(params):
        known = set(named) | {"plugin", "resolved_weights"}  # resolved_weights: a record the engine writes
        unknown = sorted(set(backbone) - known)
        if unknown:
            raise ReidkitError(f"unknown backbone setting(s) in {source}: {', '.join(unknown)} "
                               f"(backbone '{plugin}' takes: {', '.join(sorted(known - {'resolved_weights'}))})")
    declared = CONTRACTS["backbones"].optional_member(factory, "settings_spec") or {}
    for key, param in named.items():
        if key not in backbone:
            continue
        setting = declared.get(key) or (inferred(param.default) if param.default is not inspect.Parameter.empty else None)
        problem = setting.problem(backbone[key]) if setting is not None else None
        if problem:
            raise ReidkitError(f"setting 'backbone.{key}' from {source}: expected {problem}, got {backbone[key]!r}")


def backbone_settings(config: dict, name: str | None) -> dict:
    """``--backbone NAME``: a registered backbone plugin, or else a model name for the default plugin (timm)."""
    from reidkit.plugin_manager import get_plugins

    backbone = dict(config.get("backbone", {}))
    if name:
        if name in get_plugins().names("backbones"):
            if name != backbone.get("plugin", "timm"):  # the strategy's backbone settings were another plugin's
                backbone = {}
            backbone["plugin"] = name
        else:
            backbone["model"] = name
    return backbone


def scaled_schedule(config: dict, reference_epochs: int, keys) -> dict:
    """The epoch-valued settings ``keys`` (a strategy's ``epoch_settings``) scaled from a ``reference_epochs``
    schedule to the run's ``epochs`` (rounded)."""
    factor = int(config["epochs"]) / max(1, reference_epochs)

    def scale(v):
        return [scale(x) for x in v] if isinstance(v, list) else int(round(v * factor))

    return {key: scale(config[key]) for key in keys if key in config and config[key] is not None}


SCHEDULE_HINT = "lower it, or set scale_schedule: true to scale the paper schedule to --epochs"


def schedule_warnings(config: dict) -> list[str]:
    """One line per schedule point the run never reaches: the strategy's own ``schedule_warnings(config)``, else one
    per value of its ``epoch_settings`` past the run's last epoch (epochs count from 0 to epochs - 1)."""
    factory = strategy_factory(config.get("strategy", "baseline"))
    own = STRATEGY.optional_member(factory, "schedule_warnings")
    if own is not None:
        return list(own(config))
    last = int(config["epochs"]) - 1
    out = []
    for key in STRATEGY.optional_member(factory, "epoch_settings"):
        value = config.get(key)
        late = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int) and v > last]
        if late:
            out.append(f"setting '{key}' has {late} beyond the run's last epoch {last}: they never take effect ({SCHEDULE_HINT})")
    return out
