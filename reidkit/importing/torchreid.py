"""torchreid (KaiyangZhou/deep-person-reid), its ``resnet50``.

``torchreid/utils/torchtools.py`` save_checkpoint: ``{'state_dict': model.state_dict(), 'epoch', 'rank1',
'optimizer', 'scheduler'}`` (``module.`` kept unless remove_module_from_keys: the engine wraps the model in
nn.DataParallel); ``load_pretrained_weights`` also reads a bare state dict. ``torchreid/models/resnet.py`` ResNet:
conv1, bn1, relu, maxpool (torchvision's), layer1..4 under torchvision's names, ``global_avgpool``, ``fc`` (None for
``resnet50``; Linear, BatchNorm1d, ReLU for ``resnet50_fc512``), ``classifier`` (Linear with bias). ``resnet50``
passes ``last_stride=2``. In eval mode ``forward`` returns ``v``, the pooled feature (after fc when there is one).
``torchreid/data/transforms.py`` test: ``Resize((256, 128))`` (PIL bilinear), ImageNet mean/std, no flip.
"""
from __future__ import annotations

from reidkit.errors import ReidkitError
from reidkit.importing.plan import Plan, classifier_width, refuse_leftovers, take
from reidkit.importing.reading import contained_state, plain_metadata
from reidkit.importing.resnet import describe_unsupported, map_trunk

NAME = "torchreid"
PROJECT = "torchreid"
SOURCE = "KaiyangZhou/deep-person-reid (torchreid/models/resnet.py, torchreid/utils/torchtools.py, torchreid/data/transforms.py)"
CONTAINER = "state_dict"
TEST = {"height": 256, "width": 128, "test_flip": False, "resize": "pil-bilinear"}
TRUNK = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


def _state(checkpoint: dict) -> dict | None:
    return contained_state(checkpoint, CONTAINER)


def detect(checkpoint: dict) -> bool:
    state = _state(checkpoint) or {}
    return "conv1.weight" in state and any(k.startswith("layer1.") for k in state)


def plan(checkpoint: dict, options) -> Plan:
    state = _state(checkpoint)
    if state is not None and "conv1.weight" not in state:
        problem = describe_unsupported(list(state), "")
        if problem and not problem.startswith("no ResNet"):  # e.g. torchreid's osnet_x1_0
            raise ReidkitError(f"torchreid checkpoint holds {problem}: reidkit's timm ResNet-50 cannot hold it (refused)")
    if state is None or "conv1.weight" not in state:
        raise ReidkitError("not a torchreid checkpoint: no 'state_dict' (or bare state dict) with conv1.* / layer1.* keys")
    fc = take(state, "fc.")
    if fc:
        raise ReidkitError(f"torchreid checkpoint has an fc layer ({', '.join('fc.' + k for k in sorted(fc)[:2])}; e.g. resnet50_fc512: "
                           "Linear, BatchNorm1d, ReLU after the pooling): reidkit's neck has no ReLU after its BN, so its "
                           "features cannot be reproduced (refused)")
    trunk = {}
    for key in [k for k in state if k.startswith(TRUNK)]:
        trunk[key] = (key, state.pop(key))
    classifier = take(state, "classifier.")
    rest = dict(state)
    tensors = map_trunk({**trunk, **{k: (k, v) for k, v in rest.items() if not k.startswith("classifier.")}}, "", PROJECT)
    result = Plan(format=NAME, strategy="baseline", tensors=tensors, num_classes=None, classifier_bias=True,
                  test=dict(TEST),
                  backbone={"last_stride": options.last_stride or 2, "pooling": "avg", "embedding_dim": 0, "bnneck": False},
                  metadata=plain_metadata(checkpoint, skip=(CONTAINER,)) if CONTAINER in checkpoint else {})
    if "weight" in classifier:
        weight = classifier.pop("weight")
        result.num_classes = classifier_width(weight, 2048, PROJECT, "classifier.weight")
        tensors["heads.classifier.weight"] = (weight, "classifier.weight")
        if "bias" in classifier:
            tensors["heads.classifier.bias"] = (classifier.pop("bias"), "classifier.bias")
    refuse_leftovers({f"classifier.{k}": v for k, v in classifier.items()}, PROJECT)
    if options.pooling not in (None, "avg"):
        raise ReidkitError(f"--pooling {options.pooling}: torchreid's resnet50 pools with global average pooling")
    if CONTAINER in checkpoint:
        result.dropped += [(str(k), "not model weights") for k in checkpoint if k != CONTAINER and k not in result.metadata]
    return result
