"""What a source format's reader hands the importer: reidkit's model settings and tensors, and what was left out."""
from __future__ import annotations

from dataclasses import dataclass, field

from reidkit.errors import ReidkitError

# the timm backbone's stem settings two sources need (their stems differ from torchvision's); left out of config.yaml
# at their defaults, so runs of the other formats carry no key an older backbone plugin would refuse
STEM_DEFAULTS = {"stem_relu": True, "stem_pool": "max"}


@dataclass
class Options:
    """The command's options a reader may need (None: the source project's default)."""

    pooling: str | None = None
    last_stride: int | None = None


@dataclass
class Plan:
    """A source checkpoint as reidkit's model: ``tensors`` maps reidkit state keys to (tensor, source key)."""

    format: str
    strategy: str  # cal or baseline
    backbone: dict  # timm backbone settings (model resnet50; last_stride, pooling, bnneck..., stem_* where not default)
    tensors: dict
    num_classes: int | None  # identity classifier rows; None: the checkpoint holds no classifier
    classifier_bias: bool
    test: dict  # height, width, test_flip, resize: the source project's test-time settings
    num_clothes: int | None = None  # CAL's clothes classifier rows
    label_order: str = "numeric"  # how the source numbers its training persons: by id (numeric) or as text (fast-reid)
    dropped: list = field(default_factory=list)  # (source key or entry, why)
    notes: list = field(default_factory=list)  # lines to print and record
    metadata: dict = field(default_factory=dict)  # the checkpoint's scalar entries (epoch, rank1...)


def take(state: dict, prefix: str) -> dict:
    """The entries of ``state`` under ``prefix`` (removed from ``state``), keyed without it."""
    found = {k[len(prefix):]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}
    return found


def refuse_leftovers(state: dict, project: str, what: str = "keys reidkit's model has no place for"):
    """Source keys nothing consumed: a partial match is never silent."""
    if state:
        keys = sorted(state)
        more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
        raise ReidkitError(f"{project} checkpoint holds {what}: {keys[0]}{more} (refused)")


def neck(source: dict, prefix: str, out: str = "backbone.bn.") -> dict:
    """A BatchNorm1d neck's tensors (weight, bias, running stats) as reidkit's ``backbone.bn``."""
    return {out + k: (v, prefix + k) for k, v in source.items()}


def classifier_width(weight, feature_dim: int, project: str, key: str) -> int:
    if weight.dim() != 2 or int(weight.shape[1]) != feature_dim:
        raise ReidkitError(f"{project} checkpoint: shape mismatch: {key} is {tuple(weight.shape)}, the features are "
                           f"{feature_dim} wide (refused)")
    return int(weight.shape[0])
