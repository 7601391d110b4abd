"""dlcr generation: batched pipeline calls vs one call per image, fast samplers and GPU switches, one run.

Same items (same sources, masks, prompts, seeds), same settings, one run,
on the tiny SD inpainting pipeline that the tests use (random weights time
like trained ones of the same size). Run from the repository root:

    python benchmarks/bench_dlcr.py [--images 16] [--width 128] [--height 384] [--steps 10]

On a GPU, with a full-size SD-1.5 inpainting pipeline built from its config
(random weights, nothing downloaded) at DLCR's settings, the GPU suite:
DLCR's original loop (batch 5, fp16, DDIM-50), one image per call, batches
of 16 in bf16, DPM-Solver++/UniPC at 20 steps, channels_last + fused QKV,
and torch.compile; each with images/s, UNet TFLOP/s (FLOPs counted on the
meta device) and its share of the GPU's measured bf16 matmul rate, plus the
UNet alone at batch 16:

    python benchmarks/bench_dlcr.py --full-size --device cuda --dtype bfloat16 \
        --width 256 --height 768 --steps 50 --json dlcr.json

Discriminator-guided vs plain images/s (DLCR's second pass): benchmarks/bench_discriminator.py speed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def dlcr_setup(args, tmp: Path):
    """A small synthetic store, its first ``args.images`` training items, and the dlcr generator on ``args.model``
    (default: the tiny test pipeline) or, with ``--full-size``, SD-1.5's inpainting architecture with random weights."""
    from reidkit import open_store
    from reidkit.generation.bank import ensure_bank
    from reidkit.generation.engine import make_item
    from reidkit.plugins.generators.dlcr import DlcrGenerator

    store_path = tmp / "w.h5"
    subprocess.run([sys.executable, "-m", "reidkit.cli", "adapt", "synthetic", "--out", str(store_path), "--ids", "8",
                    "--shots", "1"], check=True, capture_output=True)
    model = args.model
    if model is None and not args.full_size:
        from tests.tiny_models import build_tiny_inpaint_pipeline

        model = str(build_tiny_inpaint_pipeline(tmp / "tiny-sd"))
    store = open_store(store_path)
    context = {"store": store, "bank": ensure_bank(store, "templates", {}, show_progress=False),
               "mask_set": store.mask_sets()["ground_truth"], "seed": 0}
    items = [make_item(context, (int(i), 0)) for i in store.split("train")[: args.images]]
    settings = {**DlcrGenerator.defaults, "model": model or "full-size-random", "width": args.width, "height": args.height,
                "steps": args.steps, "dtype": args.dtype}
    gen = DlcrGenerator(settings, args.device)
    if args.full_size:
        from reidkit.devices import torch_dtype

        gen.pipe = full_size_pipeline(tmp, args.device, torch_dtype(args.dtype, args.device))
        gen.device = args.device
    return gen, items


# the GPU suite: DLCR's original loop (batch 5, fp16, DDIM-50) first, then each speed-up alone and combined
GPU_SUITE = (
    ("original-batch5-fp16-ddim50", dict(batch=5, dtype="float16", images=10)),
    ("per-image-bf16-ddim50", dict(batch=1, images=4)),
    ("batched16-bf16-ddim50", dict(batch=16, images=32)),
    ("batched16-bf16-dpmsolver20", dict(batch=16, images=32, scheduler="dpm-solver++", steps=20)),
    ("batched16-bf16-unipc20", dict(batch=16, images=32, scheduler="unipc", steps=20)),
    ("batched16-bf16-ddim50-channels_last-fuse_qkv", dict(batch=16, images=32, channels_last=True, fuse_qkv=True)),
    ("batched16-bf16-ddim50-compiled", dict(batch=16, images=32, channels_last=True, fuse_qkv=True, compile="default")),
    # compile alone (the eager switches above slowed the UNet), then with a fast sampler: the same compiled graph
    ("batched16-bf16-ddim50-compile-only", dict(batch=16, images=32, compile="default")),
    ("batched16-bf16-dpmsolver20-compile-only", dict(batch=16, images=32, compile="default", scheduler="dpm-solver++",
                                                     steps=20)),
    # issue 30: what might lift DDIM-50 from 0.37 to half the peak: CUDA graphs (compile's reduce-overhead: one
    # replay a step instead of ~1,000 kernel launches), a larger batch, autotuned kernels without graphs
    ("batched16-bf16-ddim50-cudagraphs", dict(batch=16, images=32, compile="reduce-overhead")),
    ("batched32-bf16-ddim50-compile-only", dict(batch=32, images=64, compile="default")),
    ("batched32-bf16-ddim50-cudagraphs", dict(batch=32, images=64, compile="reduce-overhead")),
    ("batched16-bf16-ddim50-autotune", dict(batch=16, images=32, compile="max-autotune-no-cudagraphs")),
)
# gpu_session.sh's part dlcr-graphs: the baseline, then the new configurations in order of promise
ISSUE30 = ("original-batch5-fp16-ddim50", "batched16-bf16-ddim50-cudagraphs", "batched32-bf16-ddim50-compile-only",
           "batched32-bf16-ddim50-cudagraphs", "batched16-bf16-ddim50-autotune")
CPU_SUITE = (("per-image", dict(batch=1)), ("batched", dict(batch=8)))


def measured_peak_tflops(device, dtype, n=8192, repeats=10):
    """The device's bf16 matmul rate on random data (TFLOP/s): the 'peak' the shares are taken of."""
    import torch

    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e12


def unet_only_tflops(pipe, images, width, height, repeats=10):
    """TFLOP/s of the UNet alone at one sampling step's shape (CFG doubles the batch): the compute ceiling."""
    import torch

    unet = pipe.unet
    x = torch.randn(2 * images, 9, height // 8, width // 8, device=unet.device, dtype=unet.dtype)
    text = torch.randn(2 * images, 77, 768, device=unet.device, dtype=unet.dtype)
    t = torch.full((2 * images,), 500, device=unet.device)
    with torch.inference_mode():
        for _ in range(3):
            unet(x, t, encoder_hidden_states=text)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            unet(x, t, encoder_hidden_states=text)
        torch.cuda.synchronize()
    return 2 * images * repeats * unet_tflop_per_forward(width, height) / (time.perf_counter() - start)


def run_config(args, tmp, name, cfg, state):
    """Images/s of one configuration; the pipeline is rebuilt only when the dtype or a one-way switch changes."""
    import torch

    from reidkit.plugins.generators.sd_loading import apply_speed_settings, set_scheduler

    dtype = cfg.get("dtype", args.dtype)
    switches = {k: cfg.get(k, False) for k in ("channels_last", "fuse_qkv")}
    switches["compile"] = cfg.get("compile", "off")
    key = (dtype, tuple(sorted(switches.items())))
    if state.get("key") != key:  # fusing and compiling cannot be undone: a fresh pipeline for each combination
        state.pop("gen", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        state["setups"] = state.get("setups", 0) + 1
        folder = tmp / f"setup-{state['setups']}"
        folder.mkdir()
        gen, items = dlcr_setup(argparse.Namespace(**{**vars(args), "dtype": dtype}), folder)
        gen.load()
        apply_speed_settings(gen.pipe, switches, gen.device)
        state.update(gen=gen, items=items, key=key)
    gen, items = state["gen"], state["items"]
    gen.settings.update(steps=cfg.get("steps", args.steps), scheduler=cfg.get("scheduler", "ddim"))
    set_scheduler(gen.pipe, gen.settings["scheduler"])
    images = items[: cfg.get("images", len(items))]
    batch = cfg["batch"]
    sync = torch.cuda.synchronize if str(gen.device).startswith("cuda") else (lambda: None)
    t = time.perf_counter()
    gen.generate(images[:batch])  # warm-up (and, compiled, the compile): not generation time
    sync()
    warmup = time.perf_counter() - t
    t = time.perf_counter()
    outs = []
    for s in range(0, len(images), batch):
        outs += gen.generate(images[s : s + batch])
    sync()
    seconds = time.perf_counter() - t
    row = {"config": name, "images": len(images), "batch": batch, "dtype": dtype, "scheduler": gen.settings["scheduler"],
           "steps": gen.settings["steps"], **switches, "img_s": round(len(images) / seconds, 3),
           "warmup_s": round(warmup, 1)}
    return row, outs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="an inpainting pipeline folder or id (default: build the tiny test pipeline)")
    ap.add_argument("--full-size", action="store_true", help="SD-1.5 inpainting architecture, random weights, in memory")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on GPU, fp32 on CPU), float32, float16, bfloat16")
    ap.add_argument("--suite", choices=("cpu", "gpu"), default=None, help="default: gpu on CUDA, else cpu")
    ap.add_argument("--only", help="comma-separated config names of the suite to run, in that order (issue30: "
                    "the baseline and the configurations issue 30 asks to try)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import numpy as np
    import torch

    cuda = args.device.startswith("cuda")
    suite = dict(GPU_SUITE if (args.suite or ("gpu" if cuda else "cpu")) == "gpu" else CPU_SUITE)
    if args.only:
        names = ISSUE30 if args.only == "issue30" else args.only.split(",")
        suite = {k: suite[k] for k in names if k in suite}  # in the order given
    args.images = max([args.images] + [c.get("images", 0) for c in suite.values()])
    tmp = Path(tempfile.mkdtemp(prefix="bench-dlcr-"))
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "torch": torch.__version__, "device": torch.cuda.get_device_name() if cuda else "cpu",
              "working_size": f"{args.width}x{args.height}", "full_size": args.full_size, "configs": []}
    if cuda:
        result["measured_bf16_matmul_tflops"] = round(measured_peak_tflops(args.device, torch.bfloat16), 1)
    state, first = {}, {}
    for name, cfg in suite.items():
        try:
            row, outs = run_config(args, tmp, name, cfg, state)
        except Exception as exc:  # one failing configuration (e.g. compile) must not lose the others' figures
            row, outs = {"config": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}, None
        if outs is not None and args.full_size:
            tflop = unet_tflop_per_forward(args.width, args.height)
            achieved = row["img_s"] * row["steps"] * 2 * tflop  # classifier-free guidance: two UNet images per image
            row["unet_tflop_s"] = round(achieved, 1)
            if cuda:
                row["share_of_measured_peak"] = round(achieved / result["measured_bf16_matmul_tflops"], 3)
        if outs is not None:  # same items, same seeds: how far each configuration's pictures are from the first's
            ref = first.setdefault(row["steps"], outs)
            row["max_abs_diff_vs_first_same_steps"] = max(float(np.abs(a.astype(np.float32) - b).max()) for a, b in zip(ref, outs))
        print(json.dumps(row), flush=True)
        result["configs"].append(row)
        if cuda and row.get("batch", 0) > 1 and "unet_only_tflop_s" not in result and outs is not None:
            result["unet_only_tflop_s_batch16"] = round(unet_only_tflops(state["gen"].pipe, 16, args.width, args.height), 1)
            result["unet_only_share_of_measured_peak"] = round(result["unet_only_tflop_s_batch16"]
                                                               / result["measured_bf16_matmul_tflops"], 3)
    rows = {r["config"]: r for r in result["configs"] if "img_s" in r}
    base = rows.get("original-batch5-fp16-ddim50") or rows.get("per-image")
    if base:
        result["speedup_vs_" + base["config"]] = {k: round(r["img_s"] / base["img_s"], 2) for k, r in rows.items()}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


SD15_UNET = dict(sample_size=64, in_channels=9, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8)


def unet_tflop_per_forward(width: int, height: int) -> float:
    """FLOPs of one SD-1.5 inpainting UNet forward for one image (counted on the meta device: no memory, no time)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        x = torch.empty(1, 9, height // 8, width // 8)
        t = torch.tensor([10])
        text = torch.empty(1, 77, 768)
    with FlopCounterMode(display=False) as counter:
        unet(x, t, encoder_hidden_states=text)
    return counter.get_total_flops() / 1e12


def full_size_pipeline(tmp, device, dtype):
    """SD-1.5 inpainting architecture (UNet 860M, VAE, CLIP ViT-L text encoder) with random weights."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.tiny_models import write_clip_tokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp / "tokenizer"))
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4,
                            layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
        text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                            num_attention_heads=12, max_position_embeddings=77, vocab_size=len(tokenizer),
                                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                            pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


if __name__ == "__main__":
    main()
