"""Using a trained model: load a run folder, extract features (flip-averaged as the run says), identity probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def extract(model_fn, source, indices, height, width, device="cpu", batch_size=128, num_workers=0, flip=True, description=None,
            kernel="pil-bilinear"):
    """Features of ``source.image(i)`` for ``i`` in ``indices``; ``model_fn(batch) -> N x D`` tensor.

    With ``flip``, the features of the image and its mirror are averaged (as CAL does). ``kernel``: how images are
    resized (reidkit.training.resizing; a run's own is ``run_kernel(config)``).
    """
    import torch
    from torch.utils.data import DataLoader

    from reidkit.progress import progress_bar
    from reidkit.training.data import ImageListDataset

    loader = DataLoader(ImageListDataset(source, indices, height, width, kernel), batch_size=batch_size,
                        num_workers=num_workers, shuffle=False)
    out = []
    with torch.inference_mode(), progress_bar(len(indices), description or "features", "img") as update:
        for batch in loader:
            batch = batch.to(device)
            f = model_fn(batch).float()
            if flip:
                f = (f + model_fn(torch.flip(batch, dims=[3])).float()) / 2
            out.append(f.cpu().numpy())
            update(advance=len(batch))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def run_test_flip(config: dict) -> bool:
    """Whether a run's test features average each image with its mirror: its ``test_flip`` setting (CAL's image
    test: yes; BoT, CAL's video test: no). A run made before the setting was recorded keeps flip, as it was evaluated."""
    return bool(config.get("test_flip", True))


class ReidModelRunner:
    """A trained model ready to use: ``features(images)``, ``identity_probs(images)``, ``label_of_pid``.

    ``flip``: the test-time flip its features use unless a call says otherwise (default: the run's ``test_flip``).
    ``weights``, ``epoch``: which weights were loaded (``last`` or ``best``) and their epoch (1-based; None if unknown).
    """

    def __init__(self, model, config: dict, device: str, flip: bool | None = None, weights: str = "last", epoch: int | None = None):
        from reidkit.training.resizing import run_kernel

        self.model, self.config, self.device = model, config, device
        self.flip = run_test_flip(config) if flip is None else bool(flip)
        self.weights, self.epoch = weights, epoch
        self.height, self.width = int(config["height"]), int(config["width"])
        self.kernel = run_kernel(config)  # the run's resizing; OpenCV's bilinear for runs made before the setting
        pids = config["data"]["class_pids"]
        self.label_of_pid = {int(p): i for i, p in enumerate(pids)}
        self.pid_of_label = [int(p) for p in pids]

    def bn_features(self, batch):
        return self.model.backbone(batch)[1]

    def _batch(self, images):
        import torch

        from reidkit.training.data import normalise, resize

        return torch.from_numpy(np.stack([normalise(resize(np.asarray(im), self.height, self.width, self.kernel))
                                          for im in images])).to(self.device)

    def features(self, images, flip=None, batch_size=64) -> np.ndarray:
        """N x D features (after the BNNeck; flip-averaged when ``flip``, default the runner's) of HxWx3 uint8 RGB images."""
        import torch

        flip = self.flip if flip is None else flip
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                batch = self._batch(images[i:i + batch_size])
                f = self.bn_features(batch).float()
                if flip:
                    f = (f + self.bn_features(torch.flip(batch, dims=[3])).float()) / 2
                out.append(f.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def identity_probs(self, images, batch_size=64) -> np.ndarray:
        """N x C softmax over the training identities (columns follow ``label_of_pid``)."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                outputs = self.model(self._batch(images[i:i + batch_size]))
                out.append(torch.softmax(outputs["logits"].float(), 1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.pid_of_label)), np.float32)

    def extract_source(self, source, indices, batch_size=128, num_workers=0, flip=None, description=None) -> np.ndarray:
        """Features of a store's (or a generated run's) images by index (flip-averaged when ``flip``, default the runner's)."""
        return extract(self.bn_features, source, indices, self.height, self.width, self.device, batch_size, num_workers,
                       flip=self.flip if flip is None else flip, description=description, kernel=self.kernel)


def load_reid_model(checkpoint_dir, device="cpu", flip=None, select="last") -> ReidModelRunner:
    """Load ``reidkit train``'s output folder (config.yaml + model.safetensors) in eval mode.

    ``flip``: test-time flip (default: the run's ``test_flip``); ``select``: ``last`` (the last saved epoch) or
    ``best`` (``best/``: the best epoch on the test set, kept with ``--eval-every``)."""
    from reidkit.training.checkpoint import load_into, load_weights, read_config
    from reidkit.devices import torch_device
    from reidkit.training.model import build_model

    checkpoint_dir = Path(checkpoint_dir)
    config = read_config(checkpoint_dir)
    data = config["data"]
    device = torch_device(device)
    weights_dir = checkpoint_dir
    if select == "best":
        from reidkit.errors import ReidkitError
        from reidkit.training.selection import best_dir

        weights_dir = best_dir(checkpoint_dir)
        if weights_dir is None:
            raise ReidkitError(f"{checkpoint_dir} keeps no best epoch (best/): train with --eval-every N to keep one")
    elif select != "last":
        from reidkit.errors import ReidkitError

        raise ReidkitError(f"select must be last or best, got {select!r}")
    model, _ = build_model(config, data["num_classes"], data["num_clothes"], data["clothes_of_class"])
    state, epoch = load_weights(weights_dir)
    load_into(model, state, weights_dir / "model.safetensors")
    model.to(device).eval()
    return ReidModelRunner(model, config, device, flip=flip, weights=select, epoch=epoch + 1 if epoch >= 0 else None)
