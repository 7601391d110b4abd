"""Discriminator guidance in the inpainting loop (Kim et al. 2023; DLCR's second pass, methods.md 1.3).

At every denoising step with ``t > threshold`` the UNet's noise prediction
becomes

    eps' = eps - sqrt(1 - alpha_bar_t) * w * grad_x log(d / (1 - d)),

with ``d`` the discriminator's probability that the (scaled) latent ``x`` is
real, clipped to [clip, 1 - clip]. The correction is added by a forward hook
on the pipeline's own UNet, so the rest of the diffusers loop (CFG, scheduler
step, mask latents) is the library's, unchanged. The hook sees the UNet's
batch, i.e. both classifier-free-guidance branches, and corrects each one
(the reference does the same); as the CFG combination u + g (c - u) has
coefficients summing to one, correcting both branches by the same delta
equals correcting the combined eps by delta.
"""
from __future__ import annotations

import contextlib
import math

from reidkit.errors import ReidkitError

# dlcr's guidance settings (added to its defaults): DLCR's code uses t > 200, weight 1.0, d clipped to [1e-5, 1 - 1e-5]
# and the discriminator of epoch 50 ('auto': that one, or the last when training ran fewer epochs)
SETTINGS = {"discriminator": "", "discriminator_threshold": 200, "discriminator_weight": 1.0, "discriminator_clip": 1e-5,
            "discriminator_epoch": "auto"}


def log_ratio(discriminator, x, t_unit, clip: float):
    """log(d / (1 - d)) with d = sigmoid(logit) clipped to [clip, 1 - clip]: the logit clamped to +-log((1 - clip) / clip)
    (the same function, without rounding d first; outside the clip the gradient is zero, as with the reference's clip)."""
    bound = math.log((1.0 - clip) / clip)
    return discriminator(x, t_unit).reshape(-1).clamp(-bound, bound)


def correction(discriminator, latents, timestep, alphas_cumprod, *, weight: float, threshold: int, clip: float,
               num_train_timesteps: int):
    """sqrt(1 - alpha_bar_t) * w * grad log(d / (1 - d)) for ``latents`` (B, C, h, w) at ``timestep``; None at t <= threshold.

    Gradients flow through the discriminator only: the latent is detached, and the result carries no graph.
    """
    import torch

    t = int(timestep)
    if t <= int(threshold) or float(weight) == 0.0:
        return None
    with torch.enable_grad():
        x = latents.detach().float().requires_grad_(True)
        t_unit = torch.full((x.shape[0],), t / (num_train_timesteps - 1), dtype=torch.float32, device=x.device)
        (grad,) = torch.autograd.grad(log_ratio(discriminator, x, t_unit, clip).sum(), x)
    scale = math.sqrt(1.0 - float(alphas_cumprod[t])) * float(weight)
    return (scale * grad).detach()


class DiscriminatorGuidance:
    """Holds a loaded discriminator and its settings; ``attached(unet, scheduler)`` corrects the UNet's output."""

    def __init__(self, discriminator, info: dict, sha256: str, *, weight: float, threshold: int, clip: float,
                 epoch: int | None = None):
        self.discriminator, self.info, self.sha256, self.epoch = discriminator, info, sha256, epoch
        self.weight, self.threshold, self.clip = float(weight), int(threshold), float(clip)
        self.channels = int(info["latent_channels"])

    def corrected(self, eps, sample, timestep, scheduler):
        """The UNet's ``eps`` for input ``sample`` (latents first, then mask and masked-image channels) at ``timestep``."""
        delta = correction(self.discriminator, sample[:, :self.channels], timestep, scheduler.alphas_cumprod,
                           weight=self.weight, threshold=self.threshold, clip=self.clip,
                           num_train_timesteps=int(scheduler.config.num_train_timesteps))
        if delta is None:
            return eps
        return (eps.float() - delta.to(eps.device)).to(eps.dtype)  # in fp32, then back: a zero delta returns eps exactly

    @contextlib.contextmanager
    def attached(self, unet, scheduler):
        def hook(module, args, kwargs, output):
            sample = args[0] if args else kwargs["sample"]
            timestep = args[1] if len(args) > 1 else kwargs["timestep"]
            if isinstance(output, tuple):
                return (self.corrected(output[0], sample, timestep, scheduler),) + tuple(output[1:])
            output.sample = self.corrected(output.sample, sample, timestep, scheduler)
            return output

        handle = unet.register_forward_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()


def provenance(settings: dict) -> dict:
    """What a guided run records (and is named after): the discriminator folder, the epoch whose weights it uses and
    their sha256, threshold, weight, clip; {} without a discriminator, so a plain run's record and name are what they
    always were."""
    from reidkit.plugins.guidance.discriminator import file_sha256, read_settings, select_weights

    folder = settings.get("discriminator") or ""
    if not folder:
        return {}
    info = read_settings(folder)
    check_fits(info, settings, folder)
    epoch, weights = select_weights(folder, info, settings.get("discriminator_epoch", "auto"))
    return {"discriminator": str(folder), "discriminator_epoch": epoch, "discriminator_sha256": file_sha256(weights),
            "discriminator_threshold": int(settings["discriminator_threshold"]),
            "discriminator_weight": float(settings["discriminator_weight"]),
            "discriminator_clip": float(settings["discriminator_clip"]),
            "discriminator_store_fingerprint": info.get("store_fingerprint"), "discriminator_run": info.get("run")}


def check_fits(info: dict, settings: dict, folder) -> None:
    """A discriminator judges one VAE's latents at one working size: refuse any other in one line."""
    ours = (str(settings["model"]), int(settings["width"]), int(settings["height"]))
    theirs = (str(info.get("model")), int(info.get("width", -1)), int(info.get("height", -1)))
    if ours != theirs:
        raise ReidkitError(f"discriminator {folder} was trained on {theirs[0]} latents at {theirs[1]}x{theirs[2]}, "
                           f"this run uses {ours[0]} at {ours[1]}x{ours[2]} (train one with --model and the same size)")
    clip, threshold = float(settings["discriminator_clip"]), settings["discriminator_threshold"]
    if not 0.0 < clip < 0.5:
        raise ReidkitError(f"dlcr: discriminator_clip must lie in (0, 0.5), got {clip}")
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise ReidkitError(f"dlcr: discriminator_threshold must be an integer diffusion step, got {threshold!r}")


def load_guidance(settings: dict, device: str) -> DiscriminatorGuidance | None:
    """The guidance for dlcr's settings (None without a discriminator)."""
    from reidkit.plugins.guidance import discriminator

    folder = settings.get("discriminator") or ""
    if not folder:
        return None
    net, info, sha = discriminator.load(folder, device, settings.get("discriminator_epoch", "auto"))
    check_fits(info, settings, folder)
    return DiscriminatorGuidance(net, info, sha, weight=settings["discriminator_weight"],
                                 threshold=settings["discriminator_threshold"], clip=settings["discriminator_clip"],
                                 epoch=info["weights_epoch"])


def sampling_context(pipe, guidance: DiscriminatorGuidance | None):
    """No autograd anywhere for the plain pass; the guided pass runs the pipeline under no_grad (inference_mode would
    forbid the discriminator's backward) with the correction hooked onto the UNet."""
    import torch

    if guidance is None:
        return torch.inference_mode()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(guidance.attached(pipe.unet, pipe.scheduler))
    return stack
