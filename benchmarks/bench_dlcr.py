"""dlcr generation: batched pipeline calls vs one pipeline call per image (the original code's way).

Same items (same sources, masks, prompts, seeds), same settings, one run,
on the tiny SD inpainting pipeline that the tests use (random weights time
like trained ones of the same size). Run from the repository root:

    python benchmarks/bench_dlcr.py [--images 16] [--batch 8] [--width 128] [--height 384] [--steps 10]

On a GPU, with a full-size SD-1.5 inpainting pipeline built from its config
(random weights, nothing downloaded) at DLCR's settings, also reporting the
UNet's FLOPs (counted on the meta device) and the fraction of the GPU's
bf16 peak:

    python benchmarks/bench_dlcr.py --full-size --device cuda --dtype bfloat16 \
        --width 256 --height 768 --steps 50 --images 32 --batch 16 --peak-tflops 989

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
        from reidkit.generation.devices import torch_dtype

        gen.pipe = full_size_pipeline(tmp, args.device, torch_dtype(args.dtype, args.device))
        gen.device = args.device
    return gen, items


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="an inpainting pipeline folder or id (default: build the tiny test pipeline)")
    ap.add_argument("--full-size", action="store_true", help="SD-1.5 inpainting architecture, random weights, in memory")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on GPU, fp32 on CPU), float32, float16, bfloat16")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak (H100/H200 SXM: 989)")
    args = ap.parse_args()

    import numpy as np
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="bench-dlcr-"))
    gen, items = dlcr_setup(args, tmp)
    gen.load()
    gen.generate(items[:1])  # warm-up: first-call allocations are not generation time

    def timed(batch):
        sync = torch.cuda.synchronize if str(gen.device).startswith("cuda") else (lambda: None)
        sync()
        t = time.perf_counter()
        outs = []
        for s in range(0, len(items), batch):
            outs += gen.generate(items[s : s + batch])
        sync()
        return time.perf_counter() - t, outs

    t_single, single = timed(1)
    t_batched, batched = timed(args.batch)
    diff = max(float(np.abs(a.astype(np.float32) - b).max()) for a, b in zip(single, batched))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "torch": torch.__version__, "device": str(gen.device), "threads": torch.get_num_threads(),
        "images": len(items), "working_size": f"{args.width}x{args.height}", "steps": args.steps,
        "one_call_per_image_img_s": round(len(items) / t_single, 3),
        f"batched_{args.batch}_img_s": round(len(items) / t_batched, 3),
        "speedup": round(t_single / t_batched, 2),
        "max_abs_diff_grey_levels": diff,
    }
    if args.full_size:
        tflop = unet_tflop_per_forward(args.width, args.height)
        guided = 2 if float(gen.settings["guidance"]) > 1 else 1  # classifier-free guidance doubles the UNet batch
        for key in ("one_call_per_image_img_s", f"batched_{args.batch}_img_s"):
            achieved = result[key] * args.steps * guided * tflop
            result[key.replace("_img_s", "_unet_tflop_s")] = round(achieved, 3)
            result[key.replace("_img_s", "_share_of_peak")] = round(achieved / args.peak_tflops, 3)
        result["unet_tflop_per_forward"] = round(tflop, 4)
    print(json.dumps(result, indent=2))


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
