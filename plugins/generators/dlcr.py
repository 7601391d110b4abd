"""The ``dlcr`` generator: Stable Diffusion inpainting of the clothing mask (DLCR, methods.md 1.3).

Defaults are DLCR's: SD-1.5 inpainting, DDIM, 50 steps, guidance 7.5,
strength 1.0, 256 x 768 (w x h) working size (aspect not kept), fp16 on GPU.
The result is resized back and composited onto the untouched source through
the mask, so pixels outside the mask are the source's, byte for byte.
Batched across images; each item has its own torch.Generator seed (made on
the CPU, so the starting noise is the same on every device).
"""
from __future__ import annotations

import numpy as np

from reidkit.contracts import DTYPES, Setting

from .sd_loading import LOADING_DEFAULTS, LOADING_SPEC, SCHEDULER_HELP, SCHEDULERS

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"


def composite(source: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """out = M * G + (1 - M) * X with a binary M: outside the mask, exactly the source."""
    out = source.astype(np.float32)
    out[mask] = generated[mask]
    return out


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


class DlcrGenerator:
    """Inpaint each item's clothing with its target outfit's prompt (diffusers StableDiffusionInpaintPipeline)."""

    defaults = {
        "model": DEFAULT_MODEL,
        "width": 256,
        "height": 768,
        "steps": 50,
        "guidance": 7.5,
        "strength": 1.0,
        "scheduler": "ddim",  # DLCR's; dpm-solver++ / unipc are opt-in fast samplers, 'model' keeps the saved one
        "eta": 0.0,
        "dtype": "auto",  # auto: float16 on GPU, float32 on CPU; or float32, float16, bfloat16
        "prompt_template": "{prompt}",
        "negative_prompt": "",
        "mask_dilate": 0,  # pixels; DLCR uses none
        **LOADING_DEFAULTS,  # revision, use_safetensors and the opt-in GPU switches (sd_loading.py)
        # discriminator guidance (DLCR's second pass, docs/discriminator.md): a folder from 'reidkit discriminator train'
        "discriminator": "",  # '' = the plain first pass
        "discriminator_threshold": 200,  # correct only at diffusion steps t > threshold (DLCR: 200)
        "discriminator_weight": 1.0,  # w in eps' = eps - sqrt(1 - alpha_bar_t) * w * grad log(d / (1 - d)) (DLCR: 1.0)
        "discriminator_clip": 1e-5,  # d clipped to [clip, 1 - clip] (DLCR: 1e-5)
        "discriminator_epoch": "auto",  # whose weights: auto = epoch 50 (DLCR's), the last if trained fewer; last; N
    }
    needs_masks = True
    # DLCR's own pipeline when the user names no --masker / --prompts: a human parser's clothing masks
    # (methods.md 1.1) and the LLaVA + LLaMA clothing bank (1.2)
    default_masker = "parser"
    default_prompts = "llava-llama"
    # types, choices and ranges of the settings above (checked before any model loads); undeclared ones take their default's type
    settings_spec = {
        "model": Setting(str, "diffusers inpainting pipeline: hub id or local folder"),
        "width": Setting(int, "generation width in pixels (the crop is resized to it and back)", min=8),
        "height": Setting(int, "generation height in pixels", min=8),
        "steps": Setting(int, "denoising steps", min=1),
        "guidance": Setting(float, "classifier-free guidance scale", min=0),
        "strength": Setting(float, "how far the masked region is re-noised (1: fully)", min=0, min_open=True, max=1),
        "scheduler": Setting(str, SCHEDULER_HELP + " (DLCR: ddim)", choices=SCHEDULERS),
        "eta": Setting(float, "DDIM eta (0: deterministic sampling)", min=0, max=1),
        "dtype": Setting(str, "auto: float16 on GPU, float32 on CPU", choices=DTYPES),
        "prompt_template": Setting(str, "prompt text; {prompt} = the outfit's prompt, {items} = its items joined by ', '"),
        "negative_prompt": Setting(str, "negative prompt ('' for none)"),
        "mask_dilate": Setting(int, "pixels the clothing mask grows by (DLCR: 0)", min=0),
        **LOADING_SPEC,
        "discriminator": Setting(str, "discriminator guidance: a folder from 'reidkit discriminator train' ('' = plain pass)"),
        "discriminator_threshold": Setting(int, "guidance acts at diffusion steps t > threshold (DLCR: 200)", min=-1),
        "discriminator_weight": Setting(float, "weight w of the guidance correction (DLCR: 1.0)"),
        "discriminator_clip": Setting(float, "d clipped to [clip, 1 - clip] (DLCR: 1e-5)", min=0, min_open=True, max=0.5,
                                      max_open=True),
        # any type: an epoch number from Python stays an int, the command line's digits are read by the plugin
        "discriminator_epoch": Setting(None, "the discriminator's epoch: auto (DLCR's 50, or the last when trained fewer), "
                                             "last, or an epoch the folder keeps"),
    }

    def __init__(self, settings, device):
        self.settings = settings
        self.device = device
        self.model_id = settings["model"]
        self.pipe = None
        self.guidance = None  # a DiscriminatorGuidance once loaded, when settings name a discriminator
        self.weights = None  # revision and resolved commit of the loaded weights (recorded with every chunk)

    @staticmethod
    def provenance(settings) -> dict:
        """Extra facts a run records and is named after: the discriminator and its sha256 ({} for the plain pass)."""
        from reidkit.plugins.guidance.sampling import provenance

        return provenance(settings)

    def load(self):
        """The pipeline, loaded once (from a hub id, a cache, or a local folder)."""
        if self.pipe is not None:
            return self.pipe
        from diffusers import StableDiffusionInpaintPipeline

        from reidkit.devices import torch_device, torch_dtype

        from .sd_loading import (
            apply_speed_settings,
            load_pipeline,
            set_scheduler,
            weights_record,
        )

        self.device = torch_device(self.device)
        dtype = torch_dtype(self.settings["dtype"], self.device)
        pipe = load_pipeline(StableDiffusionInpaintPipeline, "inpainting model", self.model_id, dtype, self.settings)
        set_scheduler(pipe, self.settings["scheduler"])
        self.weights = weights_record(self.model_id, self.settings)
        pipe.set_progress_bar_config(disable=True)
        if self.settings["discriminator"]:
            from reidkit.plugins.guidance.sampling import load_guidance

            self.guidance = load_guidance(self.settings, self.device)
        self.pipe = apply_speed_settings(pipe.to(self.device), self.settings, self.device)
        return self.pipe

    def generate(self, items):
        import cv2
        import torch
        from PIL import Image

        pipe = self.load()
        s = self.settings
        w, h = int(s["width"]), int(s["height"])
        masks = [dilate(it.mask, int(s["mask_dilate"])) for it in items]
        images = [Image.fromarray(cv2.resize(it.image, (w, h), interpolation=cv2.INTER_CUBIC)) for it in items]
        mask_images = [Image.fromarray(cv2.resize(m.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_NEAREST))
                       for m in masks]
        prompts = [s["prompt_template"].format(prompt=it.prompt, items=", ".join(it.items)) for it in items]
        generators = [torch.Generator("cpu").manual_seed(it.seed) for it in items]
        if self.guidance is None:
            sampling = torch.inference_mode()
        else:  # the second pass: autograd through the discriminator only, hooked onto the UNet's output
            from reidkit.plugins.guidance.sampling import sampling_context

            sampling = sampling_context(pipe, self.guidance)
        with sampling:
            result = pipe(
                prompt=prompts,
                negative_prompt=[s["negative_prompt"]] * len(items) if s["negative_prompt"] else None,
                image=images,
                mask_image=mask_images,
                height=h,
                width=w,
                num_inference_steps=int(s["steps"]),
                guidance_scale=float(s["guidance"]),
                strength=float(s["strength"]),
                eta=float(s["eta"]),
                generator=generators,
                output_type="np",
            ).images
        outputs = []
        for it, m, g in zip(items, masks, result):
            g = cv2.resize(np.asarray(g, np.float32) * 255.0, (it.image.shape[1], it.image.shape[0]), interpolation=cv2.INTER_AREA)
            outputs.append(composite(it.image, g, m))
        return outputs
