"""Training data: real store images plus kept generated images, an identity sampler, pairing, augmentations.

Every random choice of an epoch (which persons, which images, which variant,
each image's augmentation) comes from ``(seed, epoch)``; augmentations are
seeded per sample, so results do not depend on the number of workers and a
resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidkit.errors import ReidkitError

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
REAL, GENERATED = 0, 1


@dataclass
class TrainItems:
    """The table of training items: real images first, then kept generated images."""

    kind: np.ndarray  # REAL or GENERATED
    ref: np.ndarray  # store index (real) or item index inside its run (generated)
    run: np.ndarray  # position in run_names (-1 for real)
    label: np.ndarray  # contiguous person label
    clothes: np.ndarray  # contiguous clothes class, -1 for generated images (no clothes label)
    source: np.ndarray  # item number of the real source (itself for real items)
    variant: np.ndarray  # global variant number (-1 for real)
    run_names: list
    num_classes: int
    num_clothes: int
    label_of_pid: dict  # raw pid -> label
    clothes_of_class: list  # label -> clothes classes of that person

    @property
    def num_real(self) -> int:
        return int((self.kind == REAL).sum())

    @property
    def num_variants(self) -> int:
        return int(self.variant.max()) + 1 if (self.kind == GENERATED).any() else 0


def build_items(store, generated=(), split="train") -> TrainItems:
    real = np.asarray(store.split(split), dtype=np.int64)
    if len(real) == 0:
        raise ReidkitError(f"store {store.path} has no images in split '{split}'")
    pids = store.pid[real]
    uniq = np.unique(pids)
    label_of_pid = {int(p): i for i, p in enumerate(uniq)}
    labels = np.searchsorted(uniq, pids)
    raw_clothes = store.clothes_id[real]
    has_clothes = bool((raw_clothes >= 0).all())
    if has_clothes:
        cl_uniq = np.unique(raw_clothes)
        clothes = np.searchsorted(cl_uniq, raw_clothes)
    else:
        cl_uniq, clothes = np.array([]), np.full(len(real), -1)
    item_of_store = {int(s): i for i, s in enumerate(real)}
    cols = {"kind": [np.zeros(len(real), int)], "ref": [real], "run": [np.full(len(real), -1)], "label": [labels],
            "clothes": [clothes], "source": [np.arange(len(real))], "variant": [np.full(len(real), -1)]}
    offset = 0
    for r, name in enumerate(generated):
        run = store.run(name)
        if len(run) == 0:
            raise ReidkitError(f"generated run '{name}' has no images yet (run 'reidkit expand' first)")
        src, var, kept = run.source_index(), run.variant(), run.kept()
        use = np.flatnonzero(kept & np.isin(src, real))
        if len(use) == 0:
            raise ReidkitError(f"generated run '{name}' has no kept images of the '{split}' split (was it made with --split query?)")
        source_items = np.array([item_of_store[int(s)] for s in src[use]])
        cols["kind"].append(np.ones(len(use), int))
        cols["ref"].append(use)
        cols["run"].append(np.full(len(use), r))
        cols["label"].append(labels[source_items])
        cols["clothes"].append(np.full(len(use), -1))
        cols["source"].append(source_items)
        cols["variant"].append(var[use] + offset)
        offset += int(var.max()) + 1  # variants of several runs line up one after another
    arrays = {k: np.concatenate(v).astype(np.int64) for k, v in cols.items()}
    clothes_of_class = [sorted(set(clothes[labels == c].tolist())) if has_clothes else [] for c in range(len(uniq))]
    return TrainItems(run_names=list(generated), num_classes=len(uniq), num_clothes=len(cl_uniq),
                      label_of_pid=label_of_pid, clothes_of_class=clothes_of_class, **arrays)


def variant_pool_size(epoch: int, num_variants: int, thresholds=(5, 10, 15), fractions=(0.25, 0.5, 0.75, 1.0)) -> int:
    """DLCR progressive learning: max(1, floor(V * p(e))), e the 0-based epoch; p(e) = fractions[i] while e <= thresholds[i]."""
    e = epoch
    p = fractions[-1]
    for limit, fraction in zip(thresholds, fractions):
        if e <= limit:
            p = fraction
            break
    return max(1, int(np.floor(num_variants * p + 1e-9)))


class IdentityBatchSampler:
    """P persons x K images per batch (BoT's identity sampler), optionally each real image paired with a variant.

    ``variant_limit(epoch, V)`` from the strategy: ``None`` puts generated
    images into the persons' pools as plain images; an int pairs every real
    image with one of its first ``limit`` variants (1:1 real and generated).
    Batches are sharded over ranks (same count on every rank). Yields lists of
    ``(item, sample_seed)``.
    """

    def __init__(self, items: TrainItems, p: int, k: int, seed: int, variant_limit=None, rank=0, world=1):
        self.items, self.p, self.k, self.seed = items, int(p), int(k), int(seed)
        self.variant_limit = variant_limit
        self.rank, self.world = rank, world
        self.epoch = 0
        self._cache = None
        if items.num_classes < self.p:
            raise ReidkitError(f"batch wants {self.p} persons but the training split has only {items.num_classes}; lower --batch P")
        order = np.argsort(items.source * (items.num_variants + 2) + items.variant + 1, kind="stable")
        gen = order[items.kind[order] == GENERATED]
        # variants of each real item, in variant order
        self.variants_of = {int(s): gen[items.source[gen] == s] for s in np.unique(items.source[gen])}

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def limit(self):
        return self.limit_at(self.epoch)

    def limit_at(self, epoch):
        if self.variant_limit is None or self.items.num_variants == 0:
            return None
        return self.variant_limit(epoch, self.items.num_variants)

    def batches(self, epoch=None):
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._plan(epoch))
        return self._cache[1]

    def _plan(self, epoch):
        rng = np.random.default_rng([self.seed, epoch])
        limit = self.limit_at(epoch)
        it = self.items
        pool_mask = it.kind == REAL if limit is not None or it.num_variants == 0 else np.ones(len(it.kind), bool)
        groups = {}
        for c in range(it.num_classes):
            members = np.flatnonzero(pool_mask & (it.label == c))
            if len(members) < self.k:
                members = rng.choice(members, self.k, replace=True)
            members = rng.permutation(members)
            groups[c] = [members[i:i + self.k] for i in range(0, len(members) - self.k + 1, self.k)]
        out = []
        alive = [c for c in groups if groups[c]]
        while len(alive) >= self.p:
            chosen = rng.choice(alive, self.p, replace=False)
            batch = np.concatenate([groups[c].pop() for c in chosen]).tolist()
            if limit is not None:
                batch = batch + [self._pair(i, limit, rng) for i in batch]
                batch = [i for i in batch if i >= 0]
            out.append([(int(i), int(s)) for i, s in zip(batch, rng.integers(0, 2**31 - 1, len(batch)))])
            alive = [c for c in alive if groups[c]]
        per_rank = len(out) // self.world
        return out[self.rank::self.world][:per_rank]

    def _pair(self, item: int, limit: int, rng) -> int:
        """One generated variant of this real image, drawn uniformly from its first ``limit`` variants (-1: none)."""
        variants = self.variants_of.get(int(item))
        if variants is None or len(variants) == 0:
            return -1
        usable = variants[self.items.variant[variants] < limit]
        if len(usable) == 0:  # filters rejected the early variants: fall back to the first kept one
            usable = variants[:1]
        return int(rng.choice(usable))

    def __iter__(self):
        return iter(self.batches())

    def __len__(self):
        return len(self.batches())


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def normalise(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32, ImageNet mean/std."""
    return ((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


# training transforms of the references (each key a setting under ``augment:``)
BOT_AUGMENT = {"crop": "pad", "pad": 10, "crop_prob": 1.0, "flip": 0.5, "erase": 0.5, "erase_fill": [0.485, 0.456, 0.406]}
CAL_AUGMENT = {"crop": "upscale", "pad": 0, "crop_prob": 0.5, "flip": 0.5, "erase": 0.5, "erase_fill": [0.4914, 0.4822, 0.4465]}


def augment(image: np.ndarray, height: int, width: int, rng, settings: dict | None = None) -> np.ndarray:
    """A reference's training transform on HxWx3 uint8 -> normalised 3xHxW float32.

    ``crop: pad`` (BoT): resize, flip, zero-pad ``pad`` pixels and crop back; ``crop: upscale`` (CAL): resize,
    with ``crop_prob`` enlarge by 1/8 and crop back, flip. Then normalise and, with probability ``erase``, random
    erasing whose fill is ``erase_fill`` in normalised units (as both references apply it after Normalize).
    """
    a = {**BOT_AUGMENT, **(settings or {})}
    image = resize(image, height, width)
    if a["crop"] == "upscale":
        if rng.random() < a["crop_prob"]:
            image = _upscale_crop(image, height, width, rng)
        if rng.random() < a["flip"]:
            image = image[:, ::-1]
    elif a["crop"] == "pad":
        if rng.random() < a["flip"]:
            image = image[:, ::-1]
        pad = int(a["pad"])
        if pad and rng.random() < a["crop_prob"]:
            padded = np.zeros((height + 2 * pad, width + 2 * pad, 3), image.dtype)
            padded[pad:pad + height, pad:pad + width] = image
            y, x = rng.integers(0, 2 * pad + 1, 2)
            image = padded[y:y + height, x:x + width]
    else:
        raise ValueError(f"augment.crop must be 'pad' or 'upscale' (got {a['crop']!r})")
    out = normalise(np.ascontiguousarray(image))
    if rng.random() < a["erase"]:
        _random_erase(out, rng, np.asarray(a["erase_fill"], np.float32))
    return out


def _upscale_crop(image: np.ndarray, height: int, width: int, rng) -> np.ndarray:
    """CAL's RandomCroping: resize to round(1.125 x size) (bilinear), then a random crop of the original size."""
    import cv2

    big_w, big_h = int(round(width * 1.125)), int(round(height * 1.125))
    big = cv2.resize(image, (big_w, big_h), interpolation=cv2.INTER_LINEAR)
    x = int(round(rng.uniform(0, big_w - width)))
    y = int(round(rng.uniform(0, big_h - height)))
    return big[y:y + height, x:x + width]


def _random_erase(chw: np.ndarray, rng, fill: np.ndarray, area=(0.02, 0.4), ratio=0.3):
    _, h, w = chw.shape
    for _ in range(100):
        target = rng.uniform(*area) * h * w
        aspect = rng.uniform(ratio, 1 / ratio)
        eh, ew = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < eh < h and 0 < ew < w:
            y, x = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
            chw[:, y:y + eh, x:x + ew] = fill[:, None, None]
            return


class TrainDataset:
    """Map-style dataset over ``(item, sample_seed)`` keys; the store's HDF5 opens lazily in each worker."""

    def __init__(self, store, items: TrainItems, height: int, width: int, augment_images=True, augment_settings=None):
        self.store, self.items = store, items
        self.augment_settings = augment_settings
        self.runs = [store.run(n) for n in items.run_names]
        self.height, self.width, self.augment_images = int(height), int(width), augment_images

    def __len__(self):
        return len(self.items.kind)

    def image(self, item: int) -> np.ndarray:
        it = self.items
        if it.kind[item] == REAL:
            return self.store.image(int(it.ref[item]))
        return self.runs[int(it.run[item])].image(int(it.ref[item]))

    def __getitem__(self, key):
        import torch

        item, seed = key if isinstance(key, tuple) else (key, 0)
        image = self.image(item)
        if self.augment_images:
            pixels = augment(image, self.height, self.width, np.random.default_rng(seed), self.augment_settings)
        else:
            pixels = normalise(resize(image, self.height, self.width))
        it = self.items
        return {"image": torch.from_numpy(np.ascontiguousarray(pixels)), "label": int(it.label[item]),
                "clothes": int(it.clothes[item]), "generated": bool(it.kind[item] == GENERATED), "item": int(item)}


class ImageListDataset:
    """Test-time dataset: images by index from any ``image(i)`` source, resized and normalised (no augmentation)."""

    def __init__(self, source, indices, height: int, width: int):
        self.source, self.indices, self.height, self.width = source, np.asarray(indices), int(height), int(width)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        import torch

        return torch.from_numpy(normalise(resize(self.source.image(int(self.indices[i])), self.height, self.width)))
