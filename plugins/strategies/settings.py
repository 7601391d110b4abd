"""Declarations (type, range, help) of the built-in strategies' settings: shown by ``reidkit plugins
strategies`` and enforced by training (reidkit.training.config.validate_config checks every value of a run
against them, with the common settings' declarations, before a run folder is written).
"""
from reidkit.contracts import Setting
from reidkit.training.config import common_spec

SETTINGS = {
    "warmup_epochs": Setting(int, "linear warm-up epochs", min=0),
    "warmup_factor": Setting(float, "learning-rate factor at the start of the warm-up", min=0, min_open=True, max=1),
    "schedule_offset": Setting(int, "0-based epoch e runs at schedule index e + offset (BoT's code: 1, stepped before each epoch)", min=0),
    "milestones": Setting(list, "0-based epochs where the learning rate is multiplied by gamma", item=int, min=0),
    "gamma": Setting(float, "learning-rate factor at each milestone", min=0, min_open=True),
    "label_smoothing": Setting(float, "label smoothing of the identity cross-entropy", min=0, max=1, max_open=True),
    "triplet_margin": Setting(float, "batch-hard triplet margin", min=0),
    "triplet_weight": Setting(float, "weight of the triplet loss (0: none)", min=0),
    "classifier_bias": Setting(bool, "identity classifier with a bias"),
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
    """The declarations of the keys a strategy's ``defaults`` has (the common ones declared by reidkit's core)."""
    known = {**common_spec(), **SETTINGS}
    return {key: known[key] for key in defaults if key in known}
