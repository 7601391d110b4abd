"""Video training (CAL's CCVID setup): clips of a tracklet's frames, one augmentation draw per clip.

A training sample is a piece of a training tracklet (CAL's dense sampling: a
tracklet cut into pieces of ``clip_chunk`` frames, the last piece taking the
rest). Each time the identity sampler draws a piece it hands over a sample
seed (from ``(run seed, epoch)``, like every other draw of an epoch); that seed
picks the clip's ``clip_len`` frames by CAL's TemporalRandomCrop rule and one
geometric augmentation shared by every frame of the clip. A resumed run
therefore sees the same clips whatever the number of workers.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.training.data import REAL, TrainItems, augment_geometry, build_items, resize, to_chw
from reidkit.training.resizing import DEFAULT_KERNEL

# CAL's video defaults: AUG.SEQ_LEN 8, AUG.SAMPLING_STRIDE 4, DATA.SAMPLING_STEP 64 (dense sampling)
CAL_CLIP_LEN, CAL_CLIP_STRIDE, CAL_CLIP_CHUNK = 8, 4, 64


def clip_len_of(config: dict) -> int:
    """Frames per training clip; 0 = image training."""
    return int(config.get("clip_len") or 0)


def check_video_config(config: dict) -> None:
    """Refuse, in one line, the combinations clips cannot honour."""
    if clip_len_of(config) <= 0:
        return
    if config.get("strategy") == "progressive":
        raise ReidkitError("clip_len > 0 (video training) does not work with strategy 'progressive': generated images are single "
                           "frames with no tracklet, so a clip has no generated partner; use --strategy cal or baseline")
    if config.get("generated"):
        raise ReidkitError("clip_len > 0 (video training) cannot use --generated: generated images belong to no tracklet")


def chunk_positions(n: int, chunk: int) -> list[range]:
    """CAL's dense sampling of one tracklet of ``n`` frames: pieces of ``chunk`` frames, the last one taking the rest
    (a tracklet shorter than ``chunk``, or ``chunk`` 0, stays whole)."""
    pieces = n // chunk if chunk else 0
    if pieces == 0:
        return [range(n)]
    return [range(i * chunk, n if i == pieces - 1 else (i + 1) * chunk) for i in range(pieces)]


def clip_positions(n: int, clip_len: int, stride: int, rng) -> np.ndarray:
    """Positions (0-based, into a piece of ``n`` frames) of one training clip: CAL's TemporalRandomCrop.

    n >= clip_len x stride: every ``stride``-th frame from a uniform start; clip_len <= n < clip_len x stride: one frame
    drawn in each of clip_len equal segments; n < clip_len: clip_len frames drawn with replacement, sorted (frames repeat).
    """
    if n >= clip_len * stride:
        start = int(rng.integers(0, n - (clip_len - 1) * stride))
        return start + stride * np.arange(clip_len)
    if n >= clip_len:
        size = n // clip_len
        return np.array([i * size + int(rng.integers(0, size)) for i in range(clip_len)])
    return np.sort(rng.integers(0, n, clip_len))


def build_clip_items(store, chunk: int = CAL_CLIP_CHUNK, split: str = "train") -> tuple[TrainItems, list]:
    """The training samples of video training: one item per tracklet piece, and each piece's store indices in frame order.

    Labels and clothes classes are those of the image pipeline (same numbering), so the heads and evaluation match."""
    frames = build_items(store, (), split)
    idx = frames.ref
    tracklet = np.asarray(store.tracklet)[idx]
    if (tracklet < 0).any():
        raise ReidkitError(f"clip_len > 0 (video training) needs tracklets, but {int((tracklet < 0).sum())} of the {len(idx)} "
                           f"'{split}' images of store {store.path} have none (set clip_len 0 for image training)")
    camera, order_in = np.asarray(store.camera)[idx], np.asarray(store.frame)[idx]
    keys = np.stack([frames.label, camera, tracklet], axis=1)  # a tracklet id is unique within person and camera
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.ravel()
    pieces, label, clothes = [], [], []
    for g in range(int(group.max()) + 1):
        members = np.flatnonzero(group == g)
        members = members[np.lexsort((idx[members], order_in[members]))]  # frame order, then store order
        for part in chunk_positions(len(members), int(chunk)):
            rows = members[part.start:part.stop]
            pieces.append(idx[rows])
            label.append(frames.label[rows[0]])
            clothes.append(frames.clothes[rows[0]])
    n = len(pieces)
    items = TrainItems(kind=np.full(n, REAL, np.int64), ref=np.arange(n, dtype=np.int64), run=np.full(n, -1, np.int64),
                       label=np.asarray(label, np.int64), clothes=np.asarray(clothes, np.int64),
                       source=np.arange(n, dtype=np.int64), variant=np.full(n, -1, np.int64), run_names=[],
                       num_classes=frames.num_classes, num_clothes=frames.num_clothes, label_of_pid=frames.label_of_pid,
                       clothes_of_class=frames.clothes_of_class)
    return items, pieces


class ClipDataset:
    """Map-style dataset over ``(piece, sample_seed)`` keys: a uint8 T x 3 x H x W clip with the piece's labels.

    The sample seed draws the clip's frames, then one augmentation seed used for every frame (same flip and crop);
    random erasing, drawn on the device, is also one rectangle per clip (engine.device_batch). Frames are resized with
    ``kernel`` (the run's ``resize``; CAL's video Scale is PIL bicubic: ``resize: pil-bicubic``)."""

    def __init__(self, store, items: TrainItems, pieces: list, clip_len: int, clip_stride: int, height: int, width: int,
                 augment_images=True, augment_settings=None, kernel: str = DEFAULT_KERNEL):
        self.store, self.items, self.pieces = store, items, pieces
        self.clip_len, self.clip_stride = int(clip_len), int(clip_stride)
        self.height, self.width = int(height), int(width)
        self.augment_images, self.augment_settings, self.kernel = augment_images, augment_settings, kernel

    def __len__(self):
        return len(self.pieces)

    def frames(self, item: int, seed: int) -> tuple[np.ndarray, int]:
        """Store indices of the clip of ``item`` for ``seed``, and the clip's augmentation seed."""
        rng = np.random.default_rng(seed)
        piece = self.pieces[item]
        positions = clip_positions(len(piece), self.clip_len, self.clip_stride, rng)
        return piece[positions], int(rng.integers(0, 2**63 - 1))

    def __getitem__(self, key):
        import torch

        item, seed = key if isinstance(key, tuple) else (key, 0)
        indices, aug_seed = self.frames(int(item), int(seed))
        clip = []
        for i in indices:
            image = self.store.image(int(i))
            if self.augment_images:  # a fresh generator from the same seed: identical draws for every frame
                pixels = augment_geometry(image, self.height, self.width, np.random.default_rng(aug_seed), self.augment_settings,
                                          self.kernel)
            else:
                pixels = resize(image, self.height, self.width, self.kernel)
            clip.append(to_chw(pixels))
        it = self.items
        return {"image": torch.from_numpy(np.stack(clip)), "label": int(it.label[item]), "clothes": int(it.clothes[item]),
                "generated": False, "item": int(item), "valid": True, "frames": torch.from_numpy(indices.astype(np.int64))}


def temporal_pool(backbone, clips):
    """B x T x 3 x H x W -> (features, bn features): the backbone's pooled features of the B x T frames averaged over T
    (temporal average pooling, CAL's C2D), then its neck on the clip feature."""
    b, t = clips.shape[:2]
    feat = backbone.features(clips.flatten(0, 1))
    feat = feat.view(b, t, *feat.shape[1:]).mean(1)
    return feat, backbone.neck(feat)


def check_backbone(backbone, name: str) -> None:
    """Video training needs the backbone split into ``features`` (pooled) and ``neck`` (BNNeck)."""
    if not (callable(getattr(backbone, "features", None)) and callable(getattr(backbone, "neck", None))):
        raise ReidkitError(f"backbone plugin '{name}' has no features()/neck() methods, which video training (clip_len > 0) "
                           "needs for temporal pooling before the neck; use the timm backbone or set clip_len 0")
