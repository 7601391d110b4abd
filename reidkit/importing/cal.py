"""CAL (guxinqian/Simple-CCReID) and DLCR, which trains with CAL's code.

``main.py`` saves ``{'model_state_dict', 'classifier_state_dict', 'clothes_classifier_state_dict', 'rank1', 'epoch'}``
(the DDP modules' ``.module.state_dict()``). ``models/img_resnet.py`` ResNet50: ``self.base`` is
``nn.Sequential(*list(torchvision resnet50.children())[:-2])``, so the trunk's keys are numbered: ``base.0`` conv1,
``base.1`` bn1 (2: relu, 3: maxpool, no weights), ``base.4``..``base.7`` layer1..4; last stride 1
(``MODEL.RES4_STRIDE``: layer4[0].conv2 and downsample[0]); ``globalpooling``: max and avg concatenated
(``models/utils/pooling.py`` MaxAvgPooling: ``cat((max, avg), 1)``, FEATURE_DIM 4096; GeM has ``globalpooling.p``);
``bn``: BatchNorm1d(FEATURE_DIM), weight ~ N(1, 0.02), a trained bias; the model returns the BN output.
``models/classifier.py``: ``Classifier`` (``classifier.weight`` / ``.bias``: a linear layer with bias) or a
``NormalizedClassifier`` (``weight``: cosine); the clothes classifier is a NormalizedClassifier (``weight``).
Test (``test.py`` extract_img_feature): model(img) + model(flipped img), L2-normalised; ``data/__init__.py``:
``T.Resize((384, 192))`` (PIL bilinear), ImageNet mean/std.
"""
from __future__ import annotations

import re

from reidkit.errors import ReidkitError
from reidkit.importing.plan import Plan, classifier_width, neck, refuse_leftovers, take
from reidkit.importing.reading import is_state_dict, plain_metadata, strip_module
from reidkit.importing.resnet import map_trunk

NAME = "cal"
PROJECT = "CAL/DLCR"
SOURCE = "guxinqian/Simple-CCReID (main.py, models/img_resnet.py, models/classifier.py, test.py)"
CONTAINER = "model_state_dict"
# base.N of nn.Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4)
SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
TEST = {"height": 384, "width": 192, "test_flip": True, "resize": "pil-bilinear"}


def detect(checkpoint: dict) -> bool:
    if CONTAINER in checkpoint:
        return True
    state = strip_module(checkpoint) if is_state_dict(checkpoint) else {}
    return "base.0.weight" in state and "bn.weight" in state


def model_state(checkpoint: dict) -> dict:
    if CONTAINER in checkpoint:
        if not is_state_dict(checkpoint[CONTAINER]):
            raise ReidkitError(f"CAL checkpoint: '{CONTAINER}' holds no tensors (refused)")
        return strip_module(checkpoint[CONTAINER])
    if is_state_dict(checkpoint):
        return strip_module(checkpoint)
    raise ReidkitError(f"not a CAL/DLCR checkpoint: no '{CONTAINER}' (CAL's main.py saves one)")


def plan(checkpoint: dict, options) -> Plan:
    state = model_state(checkpoint)
    if not any(re.match(r"base\.\d+\.", k) for k in state):
        raise ReidkitError("not a CAL/DLCR checkpoint: its model has no base.N.* keys (CAL's ResNet50 keeps torchvision's "
                           f"layers as a numbered nn.Sequential; first keys: {', '.join(list(state)[:3])})")
    base = take(state, "base.")
    trunk = {}
    for key, value in base.items():
        index, _, rest = key.partition(".")
        if index not in SEQUENTIAL:
            raise ReidkitError(f"CAL/DLCR checkpoint holds base.{key}, which torchvision's ResNet-50 has no place for (refused)")
        trunk["base." + key] = (f"{SEQUENTIAL[index]}.{rest}", value)
    tensors = map_trunk(trunk, "base.N.", PROJECT)
    bn = take(state, "bn.")
    if "weight" not in bn:
        raise ReidkitError("CAL/DLCR checkpoint: no BN neck (bn.weight) after the pooling (refused)")
    width = int(bn["weight"].shape[0])
    tensors.update(neck(bn, "bn."))
    gem = state.pop("globalpooling.p", None)
    pooling = _pooling(width, gem is not None, options.pooling)
    if gem is not None:
        tensors["backbone.gem_p"] = (gem.reshape(1), "globalpooling.p")
    refuse_leftovers(state, PROJECT)

    result = Plan(format=NAME, strategy="cal", tensors=tensors, num_classes=None, classifier_bias=True, test=dict(TEST),
                  backbone={"last_stride": options.last_stride or 1, "pooling": pooling, "embedding_dim": 0, "bnneck": True,
                            "bnneck_shift": True, "bnneck_weight_std": 0.02},
                  metadata=plain_metadata(checkpoint))
    _identity_classifier(checkpoint, width, result)
    _clothes_classifier(checkpoint, width, result)
    known = {CONTAINER, "classifier_state_dict", "clothes_classifier_state_dict", *result.metadata}
    result.dropped += [(str(k), "not model weights") for k in checkpoint if k not in known and CONTAINER in checkpoint]
    return result


def _pooling(width: int, has_p: bool, asked: str | None) -> str:
    if has_p:
        found = "gem"
    elif width == 4096:
        found = "maxavg"
    elif width == 2048:
        if asked not in ("avg", "max"):
            raise ReidkitError("CAL/DLCR checkpoint: its BN neck is 2048 wide, so its pooling was avg or max "
                               "(MODEL.POOLING.NAME), which the weights do not show: give --pooling avg or --pooling max")
        return asked
    else:
        raise ReidkitError(f"CAL/DLCR checkpoint: a BN neck {width} wide fits no pooling of ResNet-50's 2048 channels "
                           "(maxavg: 4096; avg, max, gem: 2048) (refused)")
    if asked is not None and asked != found:
        raise ReidkitError(f"--pooling {asked}: this CAL/DLCR checkpoint's weights show {found} pooling "
                           f"({'globalpooling.p' if has_p else f'a {width}-wide neck'})")
    return found


def _identity_classifier(checkpoint: dict, width: int, result: Plan):
    state = checkpoint.get("classifier_state_dict")
    if state is None:
        return
    state = strip_module(state) if is_state_dict(state) else {}
    if "classifier.weight" in state:
        weight = state.pop("classifier.weight")
        result.num_classes = classifier_width(weight, width, PROJECT, "classifier_state_dict.classifier.weight")
        result.tensors["heads.identity.classifier.weight"] = (weight, "classifier_state_dict.classifier.weight")
        if "classifier.bias" in state:
            result.tensors["heads.identity.classifier.bias"] = (state.pop("classifier.bias"), "classifier_state_dict.classifier.bias")
    elif "weight" in state:  # NormalizedClassifier (CLA_LOSS cosface / arcface...): cosine logits, not a linear layer
        result.num_classes = classifier_width(state["weight"], width, PROJECT, "classifier_state_dict.weight")
        state.pop("weight")
        result.dropped.append(("classifier_state_dict.weight", "a cosine identity classifier (NormalizedClassifier); "
                                                               "reidkit's is linear"))
    result.dropped += [(f"classifier_state_dict.{k}", "unknown classifier tensor") for k in state]


def _clothes_classifier(checkpoint: dict, width: int, result: Plan):
    state = checkpoint.get("clothes_classifier_state_dict")
    if state is None:
        return
    state = strip_module(state) if is_state_dict(state) else {}
    weight = state.pop("weight", None)
    if weight is not None and weight.dim() == 2 and int(weight.shape[1]) == width:
        result.num_clothes = int(weight.shape[0])
        result.tensors["heads.clothes"] = (weight, "clothes_classifier_state_dict.weight")
    elif weight is not None:
        state["weight"] = weight
    result.dropped += [(f"clothes_classifier_state_dict.{k}", "not a clothes classifier of the features' width "
                                                              "(CAL with memory keeps a memory bank here)") for k in state]
