"""fast-reid (JDAI-CV/fast-reid), its Baseline meta-architecture with a ResNet-50.

``fastreid/utils/checkpoint.py`` Checkpointer.save: ``{'model': model.state_dict(), 'optimizer': ..., 'scheduler':
..., 'iteration': ...}`` (``module.`` stripped on load). ``modeling/meta_arch/baseline.py``: ``backbone.*``,
``heads.*``; ``pixel_mean`` / ``pixel_std`` (0-255 units, ImageNet's x 255 by default) are non-persistent buffers
now, present only in older checkpoints. ``modeling/backbones/resnet.py``: conv1, bn1, relu, then
``nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)`` (no padding; torchvision pads by 1: changed in Nov 2020,
before v1.0), layer1..4 of Bottleneck blocks (stride on conv2) under torchvision's names; ``LAST_STRIDE`` 1.
``modeling/heads/embedding_head.py`` EmbeddingHead: ``pool_layer`` (GlobalAvgPool in Base-bagtricks.yml;
GeneralizedMeanPoolingP holds ``heads.pool_layer.p``), ``bottleneck`` = [Conv2d 1x1 without bias when
EMBEDDING_DIM > 0] + BN with frozen bias (``heads.bottleneck.0`` / ``.1``), ``heads.weight`` the classifier
(``F.linear(neck_feat, weight)`` for CLS_LAYER Linear); at test time it returns the bottleneck's output whatever
NECK_FEAT says (NECK_FEAT picks the training triplet feature). ``data/transforms/build.py`` test:
``T.Resize(SIZE_TEST, interpolation=3)`` (PIL bicubic, 256x128), ``ToTensor`` in 0-255, then
(x - pixel_mean) / pixel_std in the model; TEST.FLIP off. Training persons are numbered by their ids sorted as text
(``common.py``: ``sorted(set(pids))`` of "market1501_<id>" strings).
"""
from __future__ import annotations

from reidkit.errors import ReidkitError
from reidkit.importing.plan import Plan, classifier_width, neck, refuse_leftovers, take
from reidkit.importing.reading import contained_state, plain_metadata
from reidkit.importing.resnet import map_trunk

NAME = "fastreid"
PROJECT = "fast-reid"
SOURCE = ("JDAI-CV/fast-reid (fastreid/modeling/backbones/resnet.py, heads/embedding_head.py, meta_arch/baseline.py, "
          "utils/checkpoint.py, configs/Base-bagtricks.yml)")
CONTAINER = "model"
TEST = {"height": 256, "width": 128, "test_flip": False, "resize": "pil-bicubic"}
IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def _state(checkpoint: dict) -> dict | None:
    return contained_state(checkpoint, CONTAINER)


def detect(checkpoint: dict) -> bool:
    state = _state(checkpoint) or {}
    return any(k.startswith("backbone.") for k in state) and any(k.startswith("heads.") for k in state)


def plan(checkpoint: dict, options) -> Plan:
    state = _state(checkpoint)
    if state is None or not any(k.startswith("backbone.") for k in state):
        raise ReidkitError("not a fast-reid checkpoint: no 'model' state dict with backbone.* keys (fast-reid's "
                           "Checkpointer saves {'model': state_dict, ...})")
    _check_pixels(state)
    backbone = take(state, "backbone.")
    tensors = map_trunk({"backbone." + k: (k, v) for k, v in backbone.items()}, "backbone.", PROJECT)
    heads = take(state, "heads.")
    refuse_leftovers(state, PROJECT, "keys outside backbone.* and heads.* (another meta-architecture?)")
    pooling = "avg"
    p = heads.pop("pool_layer.p", None)
    if p is not None:  # GeneralizedMeanPoolingP
        pooling = "gem"
        tensors["backbone.gem_p"] = (p.reshape(1), "heads.pool_layer.p")
    if options.pooling not in (None, pooling):
        if not (options.pooling == "max" and pooling == "avg"):
            raise ReidkitError(f"--pooling {options.pooling}: this fast-reid checkpoint's weights show {pooling} pooling")
        pooling = "max"  # GlobalMaxPool leaves no trace in the weights: the user says so
    bottleneck = take(heads, "bottleneck.")
    embedding_dim, dim = 0, 2048
    conv = bottleneck.get("0.weight")
    if conv is not None and conv.dim() == 4:  # EMBEDDING_DIM > 0: a 1x1 convolution without bias before the BN
        import torch

        bottleneck.pop("0.weight")
        embedding_dim = dim = int(conv.shape[0])
        tensors["backbone.embed.weight"] = (conv.reshape(conv.shape[0], conv.shape[1]), "heads.bottleneck.0.weight")
        tensors["backbone.embed.bias"] = (torch.zeros(dim), "(none: fast-reid's 1x1 convolution has no bias)")
        bn_prefix = "1."
    else:
        bn_prefix = "0."
    bn = take(bottleneck, bn_prefix)
    bnneck = bool(bn)
    if bnneck:
        if "weight" not in bn:
            raise ReidkitError(f"fast-reid checkpoint: a partial BN neck (no heads.bottleneck.{bn_prefix}weight) (refused)")
        tensors.update(neck(bn, f"heads.bottleneck.{bn_prefix}"))
    refuse_leftovers({f"heads.bottleneck.{k}": v for k, v in bottleneck.items()}, PROJECT)
    result = Plan(format=NAME, strategy="baseline", tensors=tensors, num_classes=None, classifier_bias=False,
                  test=dict(TEST), label_order="text",
                  backbone={"last_stride": options.last_stride or 1, "pooling": pooling, "embedding_dim": embedding_dim,
                            "bnneck": bnneck, "stem_pool": "max-ceil"},
                  metadata=plain_metadata(checkpoint, skip=(CONTAINER,)) if CONTAINER in checkpoint else {})
    if "weight" in heads:
        weight = heads.pop("weight")
        result.num_classes = classifier_width(weight, dim, PROJECT, "heads.weight")
        tensors["heads.classifier.weight"] = (weight, "heads.weight")
        result.notes.append("heads.weight is read as a linear classifier (CLS_LAYER Linear, as Base-bagtricks.yml); a "
                            "cosine one (CircleSoftmax, ArcSoftmax, CosSoftmax) gives other identity probabilities, "
                            "the features are the same")
    refuse_leftovers({f"heads.{k}": v for k, v in heads.items()}, PROJECT)
    if CONTAINER in checkpoint:
        result.dropped += [(str(k), "not model weights") for k in checkpoint if k != CONTAINER and k not in result.metadata]
    return result


def _check_pixels(state: dict):
    """Older checkpoints hold the normalisation (0-255 units): it must be ImageNet's, which reidkit normalises with."""
    import torch

    for key, expected in (("pixel_mean", IMAGENET_MEAN_255), ("pixel_std", IMAGENET_STD_255)):
        value = state.pop(key, None)
        if value is None:
            continue
        if value.numel() != 3 or not torch.allclose(value.reshape(-1).double(), torch.tensor(expected, dtype=torch.float64), atol=1e-3):
            shown = [round(float(x), 3) for x in value.reshape(-1)[:3]]
            raise ReidkitError(f"fast-reid checkpoint normalises with {key} {shown} (0-255 units); reidkit normalises "
                               f"with ImageNet's ({[round(x, 3) for x in expected]}), so its features would differ (refused)")
