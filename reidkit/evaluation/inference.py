"""Using a trained model: load a run folder, extract (flip-averaged) features, identity probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def extract(model_fn, source, indices, height, width, device="cpu", batch_size=128, num_workers=0, flip=True, description=None):
    """Features of ``source.image(i)`` for ``i`` in ``indices``; ``model_fn(batch) -> N x D`` tensor.

    With ``flip``, the features of the image and its mirror are averaged (as CAL does).
    """
    import torch
    from torch.utils.data import DataLoader

    from reidkit.progress import progress_bar
    from reidkit.training.data import ImageListDataset

    loader = DataLoader(ImageListDataset(source, indices, height, width), batch_size=batch_size,
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


class ReidModelRunner:
    """A trained model ready to use: ``features(images)``, ``identity_probs(images)``, ``label_of_pid``."""

    def __init__(self, model, config: dict, device: str):
        self.model, self.config, self.device = model, config, device
        self.height, self.width = int(config["height"]), int(config["width"])
        pids = config["data"]["class_pids"]
        self.label_of_pid = {int(p): i for i, p in enumerate(pids)}
        self.pid_of_label = [int(p) for p in pids]

    def bn_features(self, batch):
        return self.model.backbone(batch)[1]

    def _batch(self, images):
        import torch

        from reidkit.training.data import normalise, resize

        return torch.from_numpy(np.stack([normalise(resize(np.asarray(im), self.height, self.width)) for im in images])).to(self.device)

    def features(self, images, flip=True, batch_size=64) -> np.ndarray:
        """N x D features (after the BNNeck, flip-averaged) of HxWx3 uint8 RGB images."""
        import torch

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

    def extract_source(self, source, indices, batch_size=128, num_workers=0, flip=True, description=None) -> np.ndarray:
        """Features of a store's (or a generated run's) images by index (flip-averaged unless ``flip=False``)."""
        return extract(self.bn_features, source, indices, self.height, self.width, self.device, batch_size, num_workers,
                       flip=flip, description=description)


def load_reid_model(checkpoint_dir, device="cpu") -> ReidModelRunner:
    """Load ``reidkit train``'s output folder (config.yaml + model.safetensors) in eval mode."""
    from reidkit.training.checkpoint import load_into, load_weights, read_config
    from reidkit.training.distributed import pick_device
    from reidkit.training.model import build_model

    checkpoint_dir = Path(checkpoint_dir)
    config = read_config(checkpoint_dir)
    data = config["data"]
    device = pick_device(device)
    model, _ = build_model(config, data["num_classes"], data["num_clothes"], data["clothes_of_class"])
    state, _ = load_weights(checkpoint_dir)
    load_into(model, state, checkpoint_dir / "model.safetensors")
    model.to(device).eval()
    return ReidModelRunner(model, config, device)
