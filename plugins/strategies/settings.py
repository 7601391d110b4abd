"""Declarations (type, range, help) of the built-in strategies' settings: shown by ``reidkit plugins
strategies`` and enforced by training (reidkit.training.config.validate_config checks every value of a run
against them, with the common settings' declarations, before a run folder is written).
"""
from reidkit.contracts import Setting
from reidkit.training.samplers import KINDS as SAMPLERS  # the one list of sampler kinds

SETTINGS = {
    "epochs": Setting(int, "training epochs", min=1),
    "lr": Setting(float, "base learning rate (Adam)", min=0),
    "weight_decay": Setting(float, "Adam weight decay", min=0),
    "warmup_epochs": Setting(int, "linear warm-up epochs", min=0),
    "warmup_factor": Setting(float, "learning-rate factor at the start of the warm-up", min=0, min_open=True, max=1),
    "schedule_offset": Setting(int, "0-based epoch e runs at schedule index e + offset (BoT's code: 1, stepped before each epoch)", min=0),
    "sampler": Setting(str, "identity sampler: cal (all groups shuffled, P consecutive a batch) or bot (P distinct persons)",
                       choices=SAMPLERS),
    "milestones": Setting(list, "0-based epochs where the learning rate is multiplied by gamma", item=int, min=0),
    "gamma": Setting(float, "learning-rate factor at each milestone", min=0, min_open=True),
    "ids_per_batch": Setting(int, "P: persons per batch", min=2),
    "images_per_id": Setting(int, "K: images per person in a batch", min=1),
    "height": Setting(int, "input image height in pixels", min=8),
    "width": Setting(int, "input image width in pixels", min=8),
    "label_smoothing": Setting(float, "label smoothing of the identity cross-entropy", min=0, max=1, max_open=True),
    "triplet_margin": Setting(float, "batch-hard triplet margin", min=0),
    "triplet_weight": Setting(float, "weight of the triplet loss (0: none)", min=0),
    "augment": Setting(dict, "training augmentation (docs/training.md)"),
    "classifier_bias": Setting(bool, "identity classifier with a bias"),
    "test_flip": Setting(bool, "test features averaged with the mirrored image's (reidkit eval --flip/--no-flip overrides)"),
    "backbone": Setting(dict, "backbone plugin and its settings (docs/training.md)"),
    "clothes_scale": Setting(float, "scale of the cosine clothes classifier", min=0, min_open=True),
    "cal_epsilon": Setting(float, "label smoothing of the CAL loss", min=0, max=1, max_open=True),
    "adversarial_start_epoch": Setting(int, "0-based epoch the CAL loss starts", min=0),
    "clothes_start_epoch": Setting(int, "0-based epoch the clothes classifier starts training", min=0),
    "clothes_lr": Setting(float, "the clothes classifier's own Adam rate (null: lr)", min=0, nullable=True),
    "clothes_weight_decay": Setting(float, "the clothes classifier's weight decay (null: weight_decay)", min=0, nullable=True),
    "base": Setting(str, "strategy progressive builds on", choices=("cal", "baseline")),
    "progress_epochs": Setting(list, "0-based epochs where the variant pool grows", item=int, min=0),
    "progress_fractions": Setting(list, "share of the variants drawn from, before and after each progress epoch",
                                  item=float, min=0, min_open=True, max=1),
}


def spec_for(defaults: dict) -> dict:
    """The declarations of the keys a strategy's ``defaults`` has."""
    return {key: SETTINGS[key] for key in defaults if key in SETTINGS}
