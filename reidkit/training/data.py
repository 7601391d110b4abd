"""Training data: real store images plus kept generated images, an identity sampler, pairing, augmentations.

Every random choice of an epoch (which persons, which images, which variant,
each image's crop and flip) comes from ``(seed, epoch)``; augmentations are
seeded per sample, so results do not depend on the number of workers and a
resumed run sees exactly the batches it would have seen. Workers hand over
uint8 images; normalisation and random erasing run on the training device,
the erasing drawn from a generator seeded by ``(seed, epoch, step)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.training import subsets
from reidkit.training.resizing import DEFAULT_KERNEL, enlarge, resize  # noqa: F401 (resize: data.resize for callers)

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


def build_items(store, generated=(), split="train", subset=None, seed: int = 0) -> TrainItems:
    """The training items: the split's real images (``subset``: LUPerson's ids=R or images=R of them, drawn from
    ``seed``; reidkit.training.subsets), then the kept generated images of those sources in the ``generated`` runs."""
    real = np.asarray(store.split(split), dtype=np.int64)
    if len(real) == 0:
        raise ReidkitError(f"store {store.path} has no images in split '{split}'")
    real = subsets.select(real, store.pid[real], subset, seed)
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


def normalise(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32, ImageNet mean/std."""
    return ((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


# training transforms of the references (each key a setting under ``augment:``)
BOT_AUGMENT = {"crop": "pad", "pad": 10, "crop_prob": 1.0, "flip": 0.5, "erase": 0.5, "erase_fill": [0.485, 0.456, 0.406]}
CAL_AUGMENT = {"crop": "upscale", "pad": 0, "crop_prob": 0.5, "flip": 0.5, "erase": 0.5, "erase_fill": [0.4914, 0.4822, 0.4465]}


def augment_geometry(image: np.ndarray, height: int, width: int, rng, settings: dict | None = None,
                     kernel: str = DEFAULT_KERNEL) -> np.ndarray:
    """The geometric part of a reference's training transform, on HxWx3 uint8 -> HxWx3 uint8 (what workers do).

    ``crop: pad`` (BoT): resize, flip, zero-pad ``pad`` pixels and crop back; ``crop: upscale`` (CAL): resize,
    with ``crop_prob`` enlarge by 1/8 and crop back, flip. Normalisation and random erasing follow on the
    training device (:func:`device_normalise_and_erase`). ``kernel``: the run's ``resize`` setting.
    """
    a = {**BOT_AUGMENT, **(settings or {})}
    image = resize(image, height, width, kernel)
    if a["crop"] == "upscale":
        if rng.random() < a["crop_prob"]:
            image = _upscale_crop(image, height, width, rng, kernel)
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
    return np.ascontiguousarray(image)


def to_chw(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW uint8 (contiguous): the form a batch travels in, 4x smaller than float32."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))


ERASE_AREA, ERASE_RATIO, ERASE_TRIES = (0.02, 0.4), 0.3, 100  # the references' RandomErasing (sl, sh, r1, 100 attempts)


def erase_boxes(n: int, height: int, width: int, probability: float, generator):
    """Random-erasing rectangles of a batch, drawn on the CPU from ``generator``: an n x 4 int64 tensor
    ``(y, x, h, w)``, h = w = 0 where the image is not erased.

    As the references' RandomErasing: with ``probability``, up to 100 tries of a target area uniform in 2-40% of
    the image and an aspect ratio uniform in [0.3, 1/0.3]; the first try whose rectangle fits is used, at a
    uniform position.
    """
    import torch

    erase = torch.rand(n, generator=generator, dtype=torch.float64) < probability
    area = torch.empty(n, ERASE_TRIES, dtype=torch.float64).uniform_(*ERASE_AREA, generator=generator) * height * width
    aspect = torch.empty(n, ERASE_TRIES, dtype=torch.float64).uniform_(ERASE_RATIO, 1 / ERASE_RATIO, generator=generator)
    eh = torch.sqrt(area * aspect).round().long()
    ew = torch.sqrt(area / aspect).round().long()
    fits = (eh > 0) & (eh < height) & (ew > 0) & (ew < width)
    first = fits.to(torch.float32).argmax(1)  # the first try that fits
    rows = torch.arange(n)
    eh, ew = eh[rows, first], ew[rows, first]
    erase &= fits.any(1)
    uy = torch.rand(n, generator=generator, dtype=torch.float64)
    ux = torch.rand(n, generator=generator, dtype=torch.float64)
    y = (uy * (height - eh + 1)).floor().long().clamp(min=0)
    x = (ux * (width - ew + 1)).floor().long().clamp(min=0)
    boxes = torch.stack([y, x, eh, ew], 1)
    boxes[~erase] = 0
    return boxes


def erase_generator(seed: int, epoch: int, step: int, rank: int = 0):
    """The CPU generator of one step's erasing: seeded from (run seed, epoch, step, rank), so a resumed run redraws
    the same rectangles whatever the number of workers."""
    import torch

    state = np.random.SeedSequence([int(seed), int(epoch), int(step), int(rank)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def device_normalise_and_erase(images, boxes=None, fill=None, mean=MEAN, std=STD, channels_last=False):
    """uint8 N x 3 x H x W (on the training device) -> float32, ImageNet-normalised, with the rectangles ``boxes``
    (from :func:`erase_boxes`) filled with ``fill`` in normalised units, as the references erase after Normalize."""
    import torch

    device = images.device
    mean_t = torch.as_tensor(np.asarray(mean, np.float32), device=device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(np.asarray(std, np.float32), device=device).view(1, 3, 1, 1)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    x = (images.float() / 255.0 - mean_t) / std_t  # the float32 operations of normalise(): the same values as at test time
    if boxes is not None:
        boxes = boxes.to(device, non_blocking=True)
        _, _, h, w = x.shape
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        y0, x0, eh, ew = (boxes[:, i].view(-1, 1, 1) for i in range(4))
        inside = (ys >= y0) & (ys < y0 + eh) & (xs >= x0) & (xs < x0 + ew)
        fill_t = torch.as_tensor(np.asarray(fill, np.float32), device=device).view(1, 3, 1, 1)
        x = torch.where(inside.unsqueeze(1), fill_t, x)
    return x


def augment(image: np.ndarray, height: int, width: int, rng, settings: dict | None = None, erase_rng=None,
            kernel: str = DEFAULT_KERNEL) -> np.ndarray:
    """The whole training transform of one image on the CPU (HxWx3 uint8 -> normalised 3xHxW float32): geometry,
    normalisation and, with probability ``erase``, random erasing. Training does the last two on the device, a
    batch at a time; this is the same transform for one image (tests, tools). ``erase_rng``: a torch.Generator."""
    import torch

    a = {**BOT_AUGMENT, **(settings or {})}
    chw = torch.from_numpy(to_chw(augment_geometry(image, height, width, rng, a, kernel)))[None]
    generator = erase_rng or torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    boxes = erase_boxes(1, height, width, float(a["erase"]), generator)
    return device_normalise_and_erase(chw, boxes, a["erase_fill"])[0].numpy()


def _upscale_crop(image: np.ndarray, height: int, width: int, rng, kernel: str = DEFAULT_KERNEL) -> np.ndarray:
    """CAL's RandomCroping: resize to round(1.125 x size) (PIL bilinear, :func:`enlarge`), then a random crop of the
    original size."""
    big_w, big_h = int(round(width * 1.125)), int(round(height * 1.125))
    big = enlarge(image, big_h, big_w, kernel)
    x = int(round(rng.uniform(0, big_w - width)))
    y = int(round(rng.uniform(0, big_h - height)))
    return big[y:y + height, x:x + width]


class TrainDataset:
    """Map-style dataset over ``(item, sample_seed)`` keys; the store's HDF5 opens lazily in each worker.

    Images come out as uint8 3xHxW (resize, flip, crop applied): a batch travels to the device 4x smaller than
    float32, and normalisation and random erasing run there, in the training step."""

    def __init__(self, store, items: TrainItems, height: int, width: int, augment_images=True, augment_settings=None,
                 kernel: str = DEFAULT_KERNEL):
        self.store, self.items = store, items
        self.augment_settings, self.kernel = augment_settings, kernel
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
        """``(item, sample_seed)`` -> uint8 3xHxW ``image`` (geometry applied), labels, and ``valid`` (False for a
        padding row ``~item``, whose clothes class is -1 so that it stays out of the clothes losses too)."""
        import torch

        item, seed = key if isinstance(key, tuple) else (key, 0)
        valid = item >= 0
        item = item if valid else ~item
        image = self.image(item)
        if self.augment_images:
            pixels = augment_geometry(image, self.height, self.width, np.random.default_rng(seed), self.augment_settings,
                                      self.kernel)
        else:
            pixels = resize(image, self.height, self.width, self.kernel)
        it = self.items
        return {"image": torch.from_numpy(to_chw(pixels)), "label": int(it.label[item]),
                "clothes": int(it.clothes[item]) if valid else -1, "generated": bool(it.kind[item] == GENERATED),
                "item": int(item), "valid": bool(valid)}


class ImageListDataset:
    """Test-time dataset: images by index from any ``image(i)`` source, resized with ``kernel`` and normalised (no
    augmentation)."""

    def __init__(self, source, indices, height: int, width: int, kernel: str = DEFAULT_KERNEL):
        self.source, self.indices, self.height, self.width = source, np.asarray(indices), int(height), int(width)
        self.kernel = kernel

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        import torch

        return torch.from_numpy(normalise(resize(self.source.image(int(self.indices[i])), self.height, self.width, self.kernel)))
