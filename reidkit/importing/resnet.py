"""The ResNet-50 trunk the four projects share: torchvision's layout (``conv1``, ``bn1``, ``layer1..4`` of Bottleneck
blocks with ``downsample.0/1`` on each stage's first block), which timm's ``resnet50`` (reidkit's backbone) holds
under the same names. What is not that trunk is named in one line: IBN-Net, SE, non-local blocks, OSNet, a ViT,
ResNet-18/34/101/152."""
from __future__ import annotations

import re

from reidkit.errors import ReidkitError

BLOCKS = (3, 4, 6, 3)
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
TRUNK_PREFIX = "backbone.trunk."

# key patterns of architectures reidkit's timm ResNet-50 cannot hold, checked in this order
UNSUPPORTED = (
    (re.compile(r"(^|\.)IN\."), "IBN-Net (instance-norm in the blocks"),
    (re.compile(r"(^|\.)(se|se_module|se_layer)\.|\.fc[12]\.weight$"), "squeeze-and-excitation blocks (SE"),
    (re.compile(r"(^|\.)NL_\d"), "non-local blocks (NL"),
    (re.compile(r"cls_token|pos_embed|patch_embed"), "a vision transformer (ViT"),
    (re.compile(r"^conv1\.conv\.weight$|^conv[2-5]\.\d+\.conv\d?(\.conv)?\.weight$|^conv2\.0\.conv1\.conv"), "OSNet (omni-scale blocks"),
    (re.compile(r"^layer0\."), "a SENet-style stem (layer0"),
    (re.compile(r"\.conv2\.(fc1|rsoftmax)|radix"), "ResNeSt split attention ("),
)
DEPTHS = {(3, 4, 23, 3): "ResNet-101", (3, 8, 36, 3): "ResNet-152", (2, 2, 2, 2): "ResNet-18"}


def resnet50_keys() -> list[str]:
    """The state-dict keys of timm's (and torchvision's, less fc) resnet50, in order."""
    keys = ["conv1.weight", *(f"bn1.{p}" for p in BN)]
    for stage, blocks in enumerate(BLOCKS, start=1):
        for b in range(blocks):
            head = f"layer{stage}.{b}."
            for i in (1, 2, 3):
                keys += [f"{head}conv{i}.weight", *(f"{head}bn{i}.{p}" for p in BN)]
            if b == 0:
                keys += [f"{head}downsample.0.weight", *(f"{head}downsample.1.{p}" for p in BN)]
    return keys


def describe_unsupported(keys, where: str) -> str | None:
    """What architecture ``keys`` (a trunk's, prefix removed) belong to when it is not ResNet-50, or None."""
    keys = list(keys)
    for pattern, what in UNSUPPORTED:
        hit = next((k for k in keys if pattern.search(k)), None)
        if hit is not None:
            return f"{what}: {where}{hit})"
    counts = [0, 0, 0, 0]
    for k in keys:
        m = re.match(r"layer([1-4])\.(\d+)\.", k)
        if m:
            counts[int(m.group(1)) - 1] = max(counts[int(m.group(1)) - 1], int(m.group(2)) + 1)
    if not any(counts) or "conv1.weight" not in keys:
        shown = ", ".join(keys[:3]) or "none"
        return f"no ResNet trunk (no conv1 / layer1..4; first keys: {shown})"
    if not any(k.startswith("layer1.0.conv3.") for k in keys):
        depth = "ResNet-18" if tuple(counts) == (2, 2, 2, 2) else "ResNet-34" if tuple(counts) == BLOCKS else "a ResNet"
        return f"{depth} (basic blocks, no {where}layer1.0.conv3)"
    if tuple(counts) != BLOCKS:
        name = DEPTHS.get(tuple(counts), "a ResNet")
        return f"{name} ({'/'.join(map(str, counts))} blocks per stage; reidkit maps ResNet-50's 3/4/6/3)"
    return None


def map_trunk(source: dict, where: str, project: str) -> dict:
    """``{source key: (trunk key, tensor)}`` -> ``{reidkit key: (tensor, source key)}``, after refusing anything that is
    not a whole ResNet-50 trunk (another architecture, missing or extra keys) in one line. ``where``: the source keys'
    prefix, for messages; ``project``: the format's name."""
    trunk_keys = [t for t, _ in source.values()]
    problem = describe_unsupported(trunk_keys, where)
    if problem:
        raise ReidkitError(f"{project} checkpoint holds {problem}: reidkit's timm ResNet-50 cannot hold it (refused)")
    expected = resnet50_keys()
    have = set(trunk_keys)
    missing = [k for k in expected if k not in have and not k.endswith("num_batches_tracked")]
    extra = sorted(have - set(expected))
    if missing:
        raise ReidkitError(f"{project} checkpoint: a partial ResNet-50 trunk, {len(missing)} tensor(s) missing "
                           f"(e.g. {where}{missing[0]}): refused")
    if extra:
        raise ReidkitError(f"{project} checkpoint: {len(extra)} trunk tensor(s) ResNet-50 has no place for "
                           f"(e.g. {where}{extra[0]}): refused")
    return {TRUNK_PREFIX + t: (v, s) for s, (t, v) in source.items()}
