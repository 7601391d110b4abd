"""Loading and speeding up a diffusers Stable Diffusion pipeline, shared by the dlcr and diffusion-reid generators.

- Loading the ecosystem's way: ``revision`` (branch, tag or commit) and
  ``use_safetensors`` passed to ``from_pretrained``; the commit the weights
  were actually read from is found in the Hugging Face cache and recorded
  with every chunk; hub download bars stay visible (only diffusers'
  component-loading bar is hidden, reidkit shows its own progress).
- Samplers as settings: DDIM (DLCR's), DPM-Solver++ and UniPC (multistep,
  good at ~20 steps), or the one saved with the model.
- GPU switches as settings, all off by default: channels_last, fused QKV
  projections, torch.compile of the UNet. SDPA attention is diffusers'
  default and stays; attention slicing is a low-memory fallback only.
"""
from __future__ import annotations

from pathlib import Path

from reidkit.contracts import Setting

SCHEDULERS = ("ddim", "dpm-solver++", "unipc", "model")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# the settings every SD-pipeline generator shares (defaults: the reference's loading, no speed switch on)
LOADING_DEFAULTS = {"revision": "", "use_safetensors": True, "channels_last": False, "fuse_qkv": False,
                    "compile": "off", "attention_slicing": False}
LOADING_SPEC = {
    "revision": Setting(str, "hub branch, tag or commit of the model ('' = main); the resolved commit is recorded"),
    "use_safetensors": Setting(bool, "load only .safetensors weights (false: pickled .bin files accepted too)"),
    "channels_last": Setting(bool, "UNet and VAE in channels_last memory format (faster convolutions on GPUs)"),
    "fuse_qkv": Setting(bool, "fuse the attention q/k/v projections into one matrix product"),
    "compile": Setting(str, "torch.compile the UNet: off, default, reduce-overhead (CUDA graphs), "
                       "max-autotune or max-autotune-no-cudagraphs",
                       choices=COMPILE_MODES),
    "attention_slicing": Setting(bool, "slice attention to save GPU memory (slower; a low-memory fallback only)"),
}
SCHEDULER_HELP = ("sampler: ddim, dpm-solver++ or unipc (multistep solvers, ~20 steps suffice), "
                  "or model: the one saved with the model")


def load_pipeline(pipeline_cls, what: str, model_id: str, dtype, settings: dict):
    """``pipeline_cls.from_pretrained`` with the settings' revision and safetensors choice, or one clear line."""
    import warnings

    from reidkit.errors import PluginError
    from reidkit.hub import load_failure

    quiet_loading_bars()
    kwargs = {"dtype": dtype, "safety_checker": None, "requires_safety_checker": False,
              # False means "also accept .bin" (diffusers' None: safetensors preferred), not "refuse safetensors"
              "use_safetensors": True if settings.get("use_safetensors", True) else None}
    if settings.get("revision"):
        kwargs["revision"] = settings["revision"]
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its "error occurred while trying to fetch" lines: our one line says it
    try:
        with warnings.catch_warnings():  # a pipeline saved without a safety checker: diffusers warns, we asked for none
            warnings.simplefilter("ignore", FutureWarning)
            return pipeline_cls.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        hint = "pass a local folder with --model"
        if kwargs["use_safetensors"] and "safetensors" in str(exc):
            hint = "the model has no .safetensors weights; --set use_safetensors=false accepts pickled .bin files"
        raise PluginError(load_failure(what, model_id, exc, hint)) from None
    finally:
        diffusers_logging.set_verbosity(verbosity)


def quiet_loading_bars():
    """Hide diffusers' and transformers' weight-loading bars (reidkit shows its own progress) but keep the hub's
    download bars: a first run's multi-GB download must show its progress."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import enable_progress_bars
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()  # this one also silences the hub's bars: turned back on below
    enable_progress_bars()


def set_scheduler(pipe, name: str):
    """Replace the pipeline's sampler by ``name`` (built from the saved scheduler's config: same noise schedule)."""
    from reidkit.errors import PluginError

    if name == "model":
        return pipe
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
    )

    config = pipe.scheduler.config
    if name == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(config)
    elif name == "dpm-solver++":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    elif name == "unipc":
        pipe.scheduler = UniPCMultistepScheduler.from_config(config)
    else:
        raise PluginError(f"unknown scheduler '{name}' (expected one of {', '.join(SCHEDULERS)})")
    return pipe


def apply_speed_settings(pipe, settings: dict, device: str):
    """The opt-in GPU switches, in the order they compose: fuse, memory format, then compile."""
    import torch

    if settings.get("attention_slicing"):
        pipe.enable_attention_slicing()
    if settings.get("fuse_qkv"):
        pipe.fuse_qkv_projections()
    if settings.get("channels_last"):
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    mode = settings.get("compile", "off")
    if mode not in (None, "", "off", False):
        # one graph per batch shape: the engine's fixed groups keep the shape constant (the last group may recompile)
        pipe.unet = torch.compile(pipe.unet, mode=None if mode == "default" else mode, fullgraph=False)
    return pipe


def resolved_commit(model_id: str, revision: str = "") -> str | None:
    """The commit the hub cache holds for ``model_id`` at ``revision`` (None for a local folder or no cache entry)."""
    if Path(str(model_id)).expanduser().exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - comes with diffusers
        return None
    try:
        path = try_to_load_from_cache(str(model_id), "model_index.json", revision=revision or None)
    except Exception:  # a malformed id: the load already said what was wrong
        return None
    if not isinstance(path, str):
        return None
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def weights_record(model_id: str, settings: dict) -> dict:
    """What a chunk records about the weights it was made with."""
    if Path(str(model_id)).expanduser().exists():
        return {}  # a local folder: its path (the model setting) is the record
    return {"model_revision": settings.get("revision") or "main",
            "model_commit": resolved_commit(model_id, settings.get("revision", "")) or "unknown"}
