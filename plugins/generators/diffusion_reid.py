"""Diffusion-ReID generator: N new images per training identity, identity-consistent and diverse.

Work unit: identity x image number (``per_identity`` images per identity),
not source image x variant. Image j of identity p starts from reference
image R_p[j mod |R_p|] (R_p: the identity's training images in store order),
so each item is recorded as (source_index = reference used, variant = j).

- LPE: the identity's images are captioned (identity_prompts.Captioner);
  consensus attributes make one identity prompt (kept in the sidecar part
  ``identity-prompts/<name>`` and reused by later runs with the same settings).
- Identity conditioning: img2img from the reference image at ``strength``
  (plain SD-1.5 weights, no adapter weights).
- DI: seeded viewpoint/pose/background/lighting/camera-style phrases after
  the identity prompt; seeded noise on the reference latent and on the DI
  tokens' text embeddings, each scaled to a fixed norm ratio (bounded).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from reidkit.contracts import DTYPES, Setting

from .identity_prompts import (
    CAPTION_QUESTION,
    consensus_attributes,
    diversity_suffix,
    identity_prompt,
    sample_diversity,
)
from .sd_loading import LOADING_DEFAULTS, LOADING_SPEC, SCHEDULER_HELP, SCHEDULERS

PROMPTS_KIND = "identity-prompts"
_DI_STREAM, _LATENT_STREAM, _EMBED_STREAM = 11, 12, 13  # sub-seeds of one item's seed, one per random choice


def sub_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, np.uint64)[0] & np.uint64(2**63 - 1))


@dataclass
class PlannedItem:
    """One image to make: identity ``pid`` (from ``camera``), reference ``source_index``, image number ``variant``."""

    source_index: int
    variant: int
    pid: int
    camera: int
    seed: int
    prompt: str  # identity prompt + DI phrases: what the diffusion model reads
    identity_prompt: str


def identity_groups(store, indices) -> dict[int, np.ndarray]:
    """Person id -> its usable images among ``indices`` (store order; sorted person ids)."""
    idx = np.asarray(indices, dtype=np.int64)
    idx = idx[~store.junk[idx] & ~store.distractor[idx]]
    groups: dict[int, list[int]] = {}
    for i in idx.tolist():
        groups.setdefault(int(store.pid[i]), []).append(i)
    return {p: np.asarray(sorted(groups[p]), dtype=np.int64) for p in sorted(groups)}


def norm_scaled(noise, reference, ratio: float):
    """``noise`` rescaled so that ||noise|| = ratio * ||reference||: DI noise can never swamp the signal."""
    n = noise.norm()
    return noise * (ratio * reference.norm() / n) if float(n) > 0 else noise


class DiffusionReidGenerator:
    """``reidkit expand --generator diffusion-reid``: see docs/diffusion-reid.md for every setting."""

    defaults: ClassVar[dict] = {
        "model": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "captioner": "llava-hf/llava-1.5-7b-hf",
        "caption_question": CAPTION_QUESTION,
        "caption_tokens": 60,
        "caption_batch": 8,
        "captions_per_identity": 0,  # 0: every image of the identity
        "consensus": 0.5,
        "per_identity": 150,
        "conditioning": "img2img",
        "strength": 0.75,
        "steps": 50,
        "guidance": 7.5,
        "negative_prompt": "blurry, deformed, extra limbs, several people, text, watermark",
        "height": 512,
        "width": 256,
        "latent_noise": 0.1,
        "embed_noise": 0.1,
        "diversity": True,
        "micro_batch": 0,  # images per diffusion call; 0: the engine's whole group (fixed groups: same bytes on resume/shard)
        "scheduler": "model",  # the sampler saved with the model (SD-1.5: PNDM); dpm-solver++ / unipc / ddim opt-in
        "dtype": "auto",
        **LOADING_DEFAULTS,  # revision, use_safetensors and the opt-in GPU switches (sd_loading.py)
        "prompts_name": "",
    }
    settings_spec: ClassVar[dict] = {
        "model": Setting(str, "Stable Diffusion img2img pipeline: hub id or local folder"),
        "captioner": Setting(str, "VLM captioning each identity's images (LPE): hub id or local folder"),
        "caption_question": Setting(str, "question the captioner answers for every image"),
        "caption_tokens": Setting(int, "most new tokens per caption", min=1),
        "caption_batch": Setting(int, "images per captioner call", min=1),
        "captions_per_identity": Setting(int, "images captioned per identity (0: all)", min=0),
        "consensus": Setting(float, "share of captions an attribute must appear in to enter the identity prompt", min=0, max=1),
        "per_identity": Setting(int, "images generated per identity", min=1),
        # no choices: the constructor's refusal of another value says it is not built (docs/diffusion-reid.md)
        "conditioning": Setting(str, "how the source conditions generation (only img2img is built)"),
        "strength": Setting(float, "img2img strength: how far the source is re-noised", min=0, min_open=True, max=1),
        "steps": Setting(int, "denoising steps (img2img runs steps x strength of them)", min=1),
        "guidance": Setting(float, "classifier-free guidance scale", min=0),
        "negative_prompt": Setting(str, "negative prompt ('' for none)"),
        "height": Setting(int, "generation height in pixels (a multiple of 8)", min=8),
        "width": Setting(int, "generation width in pixels (a multiple of 8)", min=8),
        "latent_noise": Setting(float, "DI: norm ratio of the noise added to the start latents", min=0, max=1),
        "embed_noise": Setting(float, "DI: norm ratio of the noise added to the prompt embeddings", min=0, max=1),
        "diversity": Setting(bool, "diversity injection (DI) on or off"),
        "micro_batch": Setting(int, "images per diffusion call (0: the engine's whole group, --batch-size)", min=0),
        "scheduler": Setting(str, SCHEDULER_HELP, choices=SCHEDULERS),
        "dtype": Setting(str, "auto: float16 on GPU, float32 on CPU", choices=DTYPES),
        **LOADING_SPEC,
        "prompts_name": Setting(str, "name of the stored identity prompts ('': lpe)"),
    }
    needs_masks: ClassVar[bool] = False

    def __init__(self, settings: dict, device: str):
        from reidkit.errors import PluginError
        from reidkit.devices import torch_device

        self.settings = s = {**self.defaults, **settings}
        self.device = torch_device(device)
        self.model_id = s["model"]
        if s["conditioning"] != "img2img":
            raise PluginError(f"diffusion-reid: conditioning '{s['conditioning']}' is not built (only img2img; see docs/diffusion-reid.md)")
        for key in ("latent_noise", "embed_noise"):
            if not 0.0 <= float(s[key]) <= 1.0:
                raise PluginError(f"diffusion-reid: {key} is a norm ratio in [0, 1], got {s[key]}")
        if not 0.0 < float(s["strength"]) <= 1.0:
            raise PluginError(f"diffusion-reid: strength must be in (0, 1], got {s['strength']}")
        if int(int(s["steps"]) * float(s["strength"])) < 1:  # img2img runs int(steps x strength) denoising steps
            raise PluginError(f"diffusion-reid: steps x strength must give at least one step, got {s['steps']} x {s['strength']}")
        if int(s["height"]) % 8 or int(s["width"]) % 8:
            raise PluginError(f"diffusion-reid: height and width must be multiples of 8, got {s['height']}x{s['width']}")
        if int(s["per_identity"]) < 1:
            raise PluginError(f"diffusion-reid: per_identity must be >= 1, got {s['per_identity']}")
        self._pipe = None
        self.weights = None  # revision and resolved commit of the loaded weights (recorded with every chunk)
        self.identity_prompts: dict[int, str] = {}

    # -- LPE: identity prompts (captioned once per store, kept in the sidecar) ---------------------------
    def _lpe_settings(self) -> dict:
        keys = ("captioner", "caption_question", "caption_tokens", "captions_per_identity", "consensus")
        return {k: self.settings[k] for k in keys}

    def build_identity_prompts(self, store, groups: dict[int, np.ndarray], progress: bool = True) -> dict[int, str]:
        """pid -> identity prompt; captions every identity not yet in the store's identity-prompts part (resumable)."""
        from reidkit.store import chunks
        from reidkit.store.build_once import built_once

        name = self.settings["prompts_name"] or "lpe"
        d = chunks.create_part(store, PROMPTS_KIND, name, {"settings": self._lpe_settings()}, must_match=("settings",))
        with built_once(store.path, f"{PROMPTS_KIND}.{name}", f"the identity prompts '{name}'"):  # one rank captions
            return self._caption_missing(store, groups, d, progress)

    def _caption_missing(self, store, groups, d, progress) -> dict[int, str]:
        from reidkit.store import chunks

        done = read_identity_prompts(d)
        todo = [p for p in groups if p not in done]
        if todo:
            import os

            from reidkit.progress import progress_bar

            from .identity_prompts import Captioner

            s = self.settings
            captioner = Captioner(s["captioner"], device=self.device, dtype=self._dtype(),
                                  max_new_tokens=int(s["caption_tokens"]), question=s["caption_question"])
            per_chunk = 8  # identities per published chunk: the resume granularity of captioning
            with progress_bar(len(todo) if progress else 0, "LPE captions", unit="id") as update:
                for start in range(0, len(todo), per_chunk):
                    rows = [self._describe(store, captioner, pid, groups[pid]) for pid in todo[start : start + per_chunk]]
                    # per-process tag: concurrent shards never overwrite each other's chunks (same pid twice: same text)
                    chunks.write_chunk(d, f"lpe-{os.getpid()}", {
                        "pid": [r[0] for r in rows],
                        "prompt": [r[1] for r in rows],
                        "attributes": [json.dumps(r[2]) for r in rows],
                        "captions": [json.dumps(r[3]) for r in rows],
                    })
                    update(advance=len(rows))
            done = read_identity_prompts(d)
        self.identity_prompts = {p: done[p] for p in groups}
        return self.identity_prompts

    def _describe(self, store, captioner, pid: int, idx: np.ndarray):
        """(pid, identity prompt, consensus attributes, captions) of one identity."""
        s = self.settings
        cap = int(s["captions_per_identity"])
        if cap > 0 and len(idx) > cap:  # evenly spaced, so every camera/outfit can speak
            idx = idx[np.linspace(0, len(idx) - 1, cap).round().astype(int)]
        captions = captioner([store.image(i) for i in idx], batch_size=int(s["caption_batch"]))
        attrs = consensus_attributes(captions, float(s["consensus"]))
        return pid, identity_prompt(attrs), attrs, captions

    # -- work units ------------------------------------------------------------------------------------
    def plan(self, store, indices, run_seed: int, item_seed, progress: bool = True) -> list[PlannedItem]:
        """Every item of the run, in a fixed order: identities sorted, image numbers 0..N-1."""
        groups = identity_groups(store, indices)
        prompts = self.build_identity_prompts(store, groups, progress)
        n = int(self.settings["per_identity"])
        out = []
        for pid, refs in groups.items():
            for j in range(n):
                ref = int(refs[j % len(refs)])
                seed = item_seed(run_seed, ref, j)
                out.append(PlannedItem(ref, j, pid, int(store.camera[ref]), seed, self.item_prompt(prompts[pid], seed), prompts[pid]))
        return out

    def item_prompt(self, id_prompt: str, seed: int) -> str:
        if not self.settings["diversity"]:
            return id_prompt
        return id_prompt + ", " + diversity_suffix(sample_diversity(np.random.default_rng(sub_seed(seed, _DI_STREAM))))

    # -- diffusion ---------------------------------------------------------------------------------------
    def _dtype(self):
        from reidkit.devices import torch_dtype

        return torch_dtype(self.settings["dtype"], self.device)

    def pipeline(self):
        if self._pipe is None:
            from diffusers import StableDiffusionImg2ImgPipeline

            from .sd_loading import (
                apply_speed_settings,
                load_pipeline,
                set_scheduler,
                weights_record,
            )

            pipe = load_pipeline(StableDiffusionImg2ImgPipeline, "diffusion model", self.model_id, self._dtype(), self.settings)
            set_scheduler(pipe, self.settings["scheduler"])
            self.weights = weights_record(self.model_id, self.settings)
            pipe.set_progress_bar_config(disable=True)
            self._pipe = apply_speed_settings(pipe.to(self.device), self.settings, self.device)
        return self._pipe

    def load(self):
        """The diffusion pipeline, loaded before the engine starts timing (the captioner is loaded by plan())."""
        self.pipeline()

    def _embeddings(self, pipe, prompts: list[str], id_prompts: list[str], seeds: list[int]):
        """Text embeddings with seeded, norm-bounded noise on the DI tokens only (identity tokens untouched)."""
        import torch

        s = self.settings
        cfg = float(s["guidance"]) > 1.0
        with torch.inference_mode():
            cond, uncond = pipe.encode_prompt(prompts, self.device, 1, cfg, [s["negative_prompt"]] * len(prompts) if cfg else None)
        ratio = float(s["embed_noise"]) if s["diversity"] else 0.0
        if ratio > 0:
            cond = cond.clone()
            limit = cond.shape[1] - 1

            def n_tokens(text):
                return len(pipe.tokenizer(text, truncation=True, max_length=cond.shape[1]).input_ids) - 1

            for b, (full, ident, seed) in enumerate(zip(prompts, id_prompts, seeds)):
                start = min(n_tokens(ident), limit)  # first token after the identity part
                stop = min(n_tokens(full), limit)  # the end-of-text token stays clean
                if stop > start:
                    g = torch.Generator("cpu").manual_seed(sub_seed(seed, _EMBED_STREAM))
                    seg = cond[b, start:stop]
                    noise = torch.randn(seg.shape, generator=g, dtype=torch.float32).to(seg.device, seg.dtype)
                    cond[b, start:stop] = seg + norm_scaled(noise, seg, ratio)
        return cond, uncond

    def _start_latents(self, pipe, images: list[np.ndarray], seeds: list[int]):
        """Reference latents (VAE posterior mean: deterministic), plus seeded noise of norm latent_noise x ||latent||."""
        import cv2
        import torch

        s = self.settings
        h, w = int(s["height"]), int(s["width"])
        batch = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_CUBIC) for im in images])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        x = x.to(self.device, pipe.vae.dtype)
        with torch.inference_mode():
            z = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        ratio = float(s["latent_noise"]) if s["diversity"] else 0.0
        if ratio > 0:
            z = z.clone()
            for b, seed in enumerate(seeds):
                g = torch.Generator("cpu").manual_seed(sub_seed(seed, _LATENT_STREAM))
                noise = torch.randn(z[b].shape, generator=g, dtype=torch.float32).to(z.device, z.dtype)
                z[b] = z[b] + norm_scaled(noise, z[b], ratio)
        return z

    def generate(self, items) -> list[np.ndarray]:
        """One image per item (same size as its reference); ``item.prompt`` = identity prompt + DI phrases."""
        import cv2
        import torch

        s = self.settings
        pipe = self.pipeline()
        out = []
        bs = int(s["micro_batch"]) or len(items)
        for start in range(0, len(items), bs):
            batch = items[start : start + bs]
            seeds = [int(it.seed) for it in batch]
            id_prompts = [self.identity_prompt_of(it) for it in batch]
            cond, uncond = self._embeddings(pipe, [it.prompt for it in batch], id_prompts, seeds)
            latents = self._start_latents(pipe, [it.image for it in batch], seeds)
            gens = self.noise_generators(seeds)
            with torch.inference_mode():
                result = pipe(
                    prompt_embeds=cond, negative_prompt_embeds=uncond, image=latents, strength=float(s["strength"]),
                    num_inference_steps=int(s["steps"]), guidance_scale=float(s["guidance"]), generator=gens, output_type="np",
                ).images
            for it, img in zip(batch, result):
                img = np.clip(np.nan_to_num(img, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                h, w = it.image.shape[:2]
                out.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        return out

    @staticmethod
    def noise_generators(seeds: list[int]):
        """One CPU generator per item, seeded with the item's seed: the pipeline draws each item's diffusion noise
        (img2img's start noise, and any scheduler-step noise: eta > 0, ancestral samplers) from it on the CPU and
        moves it to the device (diffusers' randn_tensor), so the draws do not depend on the device or the batch."""
        import torch

        return [torch.Generator("cpu").manual_seed(int(sd)) for sd in seeds]

    def identity_prompt_of(self, item) -> str:
        """The identity part of an item's prompt (what DI noise must not touch)."""
        ident = getattr(item, "identity_prompt", None) or self.identity_prompts.get(int(item.pid))
        if ident and item.prompt.startswith(ident):
            return ident
        return item.prompt  # unknown split: no token counts as DI, so nothing is perturbed


def read_identity_prompts(d) -> dict[int, str]:
    from reidkit.store.chunks import ChunkedPart

    part = ChunkedPart(d)
    if not part.files:
        return {}
    return {int(p): str(t) for p, t in zip(part.column("pid"), part.column("prompt"))}
