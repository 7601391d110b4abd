"""BoT, the strong baseline (michuanhaohao/reid-strong-baseline).

The trainer's ignite ``ModelCheckpoint`` saves ``model.state_dict()`` of ``modeling/baseline.py`` Baseline, a bare
state dict: ``base.*`` (``modeling/backbones/resnet.py``, their own ResNet under torchvision's names, no fc; last
stride ``MODEL.LAST_STRIDE`` 1), global average pooling (``gap``, no weights), ``bottleneck.*`` (BatchNorm1d(2048),
its bias frozen at 0) and ``classifier.weight`` (Linear without bias); with ``MODEL.NECK 'no'`` there is no
bottleneck and the classifier has a bias. Their ResNet has NO ReLU after the stem's BN (``# self.relu`` /
``# x = self.relu(x)  # add missed relu``, commented out): conv1, bn1, maxpool, layer1..4. Test
(``TEST.NECK_FEAT 'after'``): the bottleneck's output; ``data/transforms/build.py``: ``T.Resize(SIZE_TEST)`` (PIL
bilinear, 256x128 in the released configs), ImageNet mean/std, no flip.
"""
from __future__ import annotations

from reidkit.errors import ReidkitError
from reidkit.importing.plan import Plan, classifier_width, neck, refuse_leftovers, take
from reidkit.importing.reading import is_state_dict, strip_module
from reidkit.importing.resnet import map_trunk

NAME = "bot"
PROJECT = "BoT"
SOURCE = "michuanhaohao/reid-strong-baseline (modeling/baseline.py, modeling/backbones/resnet.py, config/defaults.py)"
TEST = {"height": 256, "width": 128, "test_flip": False, "resize": "pil-bilinear"}


def detect(checkpoint: dict) -> bool:
    state = strip_module(checkpoint) if is_state_dict(checkpoint) else {}
    return "base.conv1.weight" in state


def plan(checkpoint: dict, options) -> Plan:
    if not is_state_dict(checkpoint):
        raise ReidkitError("not a BoT checkpoint: BoT saves a bare state dict (model.state_dict()), this file holds "
                           f"entries {', '.join(map(str, list(checkpoint)[:4]))}")
    state = strip_module(checkpoint)
    if "base.conv1.weight" not in state:
        raise ReidkitError(f"not a BoT checkpoint: no base.conv1.weight (first keys: {', '.join(list(state)[:3])})")
    base = take(state, "base.")
    tensors = map_trunk({"base." + k: (k, v) for k, v in base.items()}, "base.", PROJECT)
    bottleneck = take(state, "bottleneck.")
    bnneck = bool(bottleneck)
    if bnneck:
        if "weight" not in bottleneck:
            raise ReidkitError("BoT checkpoint: a partial bottleneck (no bottleneck.weight) (refused)")
        tensors.update(neck(bottleneck, "bottleneck."))
    dim = 2048
    result = Plan(format=NAME, strategy="baseline", tensors=tensors, num_classes=None, classifier_bias=False,
                  test=dict(TEST),
                  backbone={"last_stride": options.last_stride or 1, "pooling": "avg", "embedding_dim": 0, "bnneck": bnneck,
                            "stem_relu": False})
    if "classifier.weight" in state:
        weight = state.pop("classifier.weight")
        result.num_classes = classifier_width(weight, dim, PROJECT, "classifier.weight")
        tensors["heads.classifier.weight"] = (weight, "classifier.weight")
        if "classifier.bias" in state:  # MODEL.NECK 'no': Linear with bias
            result.classifier_bias = True
            tensors["heads.classifier.bias"] = (state.pop("classifier.bias"), "classifier.bias")
    refuse_leftovers(state, PROJECT)
    if options.pooling not in (None, "avg"):
        raise ReidkitError(f"--pooling {options.pooling}: BoT pools with global average pooling (its gap)")
    if not bnneck:
        result.notes.append("no bottleneck (MODEL.NECK 'no'): the test features are the pooled features")
    return result
