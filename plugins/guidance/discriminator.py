"""The latent discriminator of DLCR's discriminator guidance, and how it is saved and loaded.

A discriminator folder holds ``discriminator.safetensors`` (the weights) and
``settings.json`` (architecture, the VAE / pipeline it was trained on, its
working size, the store's fingerprint, the run's name, training settings and
held-out accuracy), and ``epochs/epoch-NNNN.safetensors``, the weights of
the epochs training was told to keep (``keep_epochs``, DLCR's 50 by
default), which the checkpoint pruning never removes. The guided pass picks
one (:func:`select_weights`). ``d = sigmoid(logit)`` is the probability that a noisy
latent comes from a real image; time enters as ``t / (T - 1)`` in [0, 1],
the way the reference passes it.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from reidkit.errors import ReidkitError

WEIGHTS_FILE, SETTINGS_FILE = "discriminator.safetensors", "settings.json"
EPOCHS_DIR = "epochs"  # epochs/epoch-NNNN.safetensors: kept weights of chosen epochs (1-based)
FORMAT = "reidkit-latent-discriminator"
# DLCR's guided generation loads classifier_50.pt / discriminator_50.pt although its training runs 120 epochs
DLCR_EPOCH = 50

# the architecture is a setting; these are its defaults (a small residual conv net, see docs/discriminator.md)
ARCHITECTURE_DEFAULTS = {
    "kind": "latent-convnet",
    "channels": [64, 128, 256],  # one residual stage per entry, each after the first halves the resolution
    "blocks_per_stage": 1,
    "time_dim": 128,  # sinusoidal embedding of the diffusion step, then a 2-layer MLP
    "groups": 8,  # GroupNorm groups: per-sample statistics, so an item's output never depends on its batch
}


def architecture(overrides: dict | None) -> dict:
    arch = {**ARCHITECTURE_DEFAULTS, **(overrides or {})}
    if arch["kind"] != "latent-convnet":
        raise ReidkitError(f"discriminator: unknown architecture kind '{arch['kind']}' (known: latent-convnet)")
    channels = arch["channels"]
    if not isinstance(channels, list) or not channels or not all(isinstance(c, int) and c > 0 for c in channels):
        raise ReidkitError(f"discriminator: channels must be a non-empty list of positive integers, got {channels!r}")
    if any(c % int(arch["groups"]) for c in channels):
        raise ReidkitError(f"discriminator: every entry of channels {channels} must be a multiple of groups={arch['groups']}")
    if int(arch["time_dim"]) < 2 or int(arch["time_dim"]) % 2:
        raise ReidkitError(f"discriminator: time_dim must be an even number >= 2, got {arch['time_dim']}")
    return arch


def build(arch: dict, in_channels: int):
    """The torch module for ``arch`` (torch imported here, not at plugin load)."""
    import torch
    from torch import nn

    def timestep_embedding(t, dim):
        # t in [0, 1] is spread over the scheduler's step range first, so the frequencies resolve single steps
        steps = t.float() * 1000.0
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = steps[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)

    class ResBlock(nn.Module):
        """GroupNorm-SiLU-conv twice; the time embedding scales and shifts the second norm (ADM's scale-shift)."""

        def __init__(self, cin, cout, tdim, groups):
            super().__init__()
            self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.emb = nn.Linear(tdim, 2 * cout)
            self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

        def forward(self, x, emb):
            h = self.conv1(nn.functional.silu(self.norm1(x)))
            scale, shift = self.emb(nn.functional.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
            return self.skip(x) + self.conv2(nn.functional.silu(h))

    class LatentDiscriminator(nn.Module):
        def __init__(self):
            super().__init__()
            chans, tdim, groups = list(arch["channels"]), int(arch["time_dim"]), int(arch["groups"])
            self.time_dim = tdim
            self.time_mlp = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
            self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
            self.blocks = nn.ModuleList()
            self.down = nn.ModuleList()
            cin = chans[0]
            for i, c in enumerate(chans):
                for _ in range(int(arch["blocks_per_stage"])):
                    self.blocks.append(ResBlock(cin, c, tdim, groups))
                    cin = c
                # a strided conv between stages; the last stage keeps its resolution for the pooled head
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
            self.norm = nn.GroupNorm(groups, cin)
            self.head = nn.Linear(cin, 1)

        def forward(self, x, t):
            """Logit of 'real' for noisy latents ``x`` (B, C, h, w) at times ``t`` (B,) in [0, 1]."""
            emb = self.time_mlp(timestep_embedding(t, self.time_dim))
            h = self.stem(x)
            per_stage = int(arch["blocks_per_stage"])
            for s, down in enumerate(self.down):
                for block in self.blocks[s * per_stage:(s + 1) * per_stage]:
                    h = block(h, emb)
                h = down(h)
            h = nn.functional.silu(self.norm(h)).mean(dim=(2, 3))
            return self.head(h).squeeze(1)

    return LatentDiscriminator()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_settings(folder) -> dict:
    """A discriminator folder's settings.json; a one-line error when the folder is not one."""
    folder = Path(folder)
    path, weights = folder / SETTINGS_FILE, folder / WEIGHTS_FILE
    if not path.is_file() or not weights.is_file():
        raise ReidkitError(f"{folder} is not a trained discriminator (expected {WEIGHTS_FILE} and {SETTINGS_FILE}; "
                           "make one with 'reidkit discriminator train')")
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReidkitError(f"{path}: cannot read it as JSON ({str(exc).splitlines()[0]})") from None
    if settings.get("format") != FORMAT:
        raise ReidkitError(f"{path} is not a reidkit discriminator's settings (format {settings.get('format')!r})")
    return settings


def epoch_file(folder, epoch: int) -> Path:
    return Path(folder) / EPOCHS_DIR / f"epoch-{int(epoch):04d}.safetensors"


def weights_epoch(path, fallback=None):
    """The 1-based epoch a weights file was written after (its safetensors metadata), else ``fallback``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {}).get("epoch"))
    except (OSError, ValueError, TypeError, SafetensorError):
        return fallback


def held_epochs(folder, info: dict) -> dict[int, Path]:
    """{epoch: weights file} a discriminator folder holds: the kept epochs, and the last one (the top-level weights)."""
    folder = Path(folder)
    held = {}
    kept = folder / EPOCHS_DIR
    if kept.is_dir():
        for f in kept.glob("epoch-*.safetensors"):
            number = f.name[len("epoch-"):-len(".safetensors")]
            if number.isdigit():
                held[int(number)] = f
    # the top file's own record of its epoch: settings.json is replaced after it, so may lag by one after a kill
    last = weights_epoch(folder / WEIGHTS_FILE, info.get("epochs_done"))
    if last is not None:
        held = {e: f for e, f in held.items() if e < int(last)}  # one past the top file (a kill between the two writes): 'last' stays the top file
        held[int(last)] = folder / WEIGHTS_FILE
    return dict(sorted(held.items()))


def parse_epoch(requested):
    """'auto', 'last' or a positive epoch number (an int, or its digits as typed on the command line)."""
    if isinstance(requested, str) and requested.strip().lower() in ("auto", "last"):
        return requested.strip().lower()
    if isinstance(requested, str) and requested.strip().isdigit():
        requested = int(requested.strip())
    if isinstance(requested, int) and not isinstance(requested, bool) and requested >= 1:
        return requested
    raise ReidkitError(f"dlcr: discriminator_epoch must be auto, last or an epoch number >= 1, got {requested!r}")


def select_weights(folder, info: dict, requested="auto") -> tuple[int, Path]:
    """(epoch, weights file) for ``discriminator_epoch``: 'auto' is DLCR's epoch 50, or the last epoch when training ran
    fewer; 'last'; or a number. An epoch the folder does not hold is a one-line error naming those it holds."""
    wanted = parse_epoch(requested)
    held = held_epochs(folder, info)
    if not held:
        raise ReidkitError(f"{folder} holds no discriminator weights (make them with 'reidkit discriminator train')")
    last = max(held)
    if wanted == "last" or (wanted == "auto" and last < DLCR_EPOCH):
        epoch = last
    else:
        epoch = DLCR_EPOCH if wanted == "auto" else wanted
    if epoch not in held:
        listed = ", ".join(map(str, held))
        if wanted == "auto":
            raise ReidkitError(f"discriminator {folder} holds the weights of epochs {listed}, not of epoch {DLCR_EPOCH} "
                               f"(DLCR's, the default for a discriminator trained {DLCR_EPOCH}+ epochs): set "
                               f"discriminator_epoch=last or one of those, or train into a new --out with --set "
                               f"keep_epochs=[{DLCR_EPOCH}]")
        raise ReidkitError(f"discriminator {folder} holds the weights of epochs {listed}, not of epoch {epoch}: set "
                           "discriminator_epoch to one of those (or last)")
    return epoch, held[epoch]


def load(folder, device: str = "cpu", epoch="last"):
    """(module in eval mode with frozen weights, settings plus ``weights_epoch``, sha256 of the weights file) for the
    weights :func:`select_weights` picks for ``epoch``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    settings = read_settings(folder)
    chosen, path = select_weights(folder, settings, epoch)
    net = build(architecture(settings["architecture"]), int(settings["latent_channels"]))
    try:
        net.load_state_dict(load_file(str(path)))
    except (RuntimeError, OSError, ValueError) as exc:
        raise ReidkitError(f"{path}: weights do not fit its settings.json ({str(exc).splitlines()[0]})") from None
    net.eval().requires_grad_(False)  # guidance needs the gradient with respect to the latent only
    return net.to(device), {**settings, "weights_epoch": chosen}, file_sha256(path)
