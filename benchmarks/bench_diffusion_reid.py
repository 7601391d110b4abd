"""Diffusion-ReID generator throughput: one image per diffusion call (micro_batch=1, batch-independent bytes)
versus several images per call (micro_batch=M), same items, one run.

    python benchmarks/bench_diffusion_reid.py --size tiny            # CPU: tiny UNet/VAE/CLIP from configs
    python benchmarks/bench_diffusion_reid.py --size sd15 --device cuda --dtype bfloat16   # SD-1.5-sized, random weights

Weights are random (built from configs: nothing downloads), which does not change the work done.
Reports images/s for both ways, the FLOPs of one image (torch's FLOP counter over the whole
generate() call: text encoder, VAE encode, UNet steps with CFG, VAE decode) and, on a GPU, the
achieved fraction of the device's dense bf16 peak.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_models: the CLIP tokenizer writer

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM datasheets


def build_pipeline(size: str, dtype, device):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.tiny_models import write_clip_tokenizer

    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tempfile.mkdtemp()))
    if size == "sd15":  # the SD-1.5 configs (UNet 860M, VAE 84M, CLIP ViT-L/14 text 123M)
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
        text = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                              vocab_size=len(tok), max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    else:
        unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, cross_attention_dim=32,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=4, norm_num_groups=8)
        vae = AutoencoderKL(block_out_channels=(16, 32), latent_channels=4, layers_per_block=1, norm_num_groups=8,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
        text = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                              vocab_size=len(tok), max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=CLIPTextModel(text), tokenizer=tok, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def main():
    import torch

    from diffusers.utils import logging as diffusers_logging

    from reidkit.plugins.generators.diffusion_reid import DiffusionReidGenerator

    diffusers_logging.set_verbosity_error()  # the tokenizer here is byte-level: long prompts are cut at 77 tokens, as CLIP does
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=["tiny", "sd15"], default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    sd = args.size == "sd15"
    steps = args.steps or (50 if sd else 10)
    height, width = (512, 256) if sd else (64, 32)
    dtype = getattr(torch, args.dtype)
    pipe = build_pipeline(args.size, dtype, args.device)
    rng = np.random.default_rng(0)
    ident = "a photo of a man with short black hair, wearing a red jacket, blue jeans and white shoes, carrying a backpack"
    settings = {"model": "(built from configs)", "steps": steps, "height": height, "width": width, "dtype": args.dtype}
    gen = DiffusionReidGenerator(settings, args.device)
    gen._pipe = pipe  # the pipeline from configs stands in for from_pretrained(model)
    items = [SimpleNamespace(image=rng.integers(0, 255, (128, 64, 3), dtype=np.uint8), seed=1000 + i, pid=1,
                             prompt=gen.item_prompt(ident, 1000 + i), identity_prompt=ident) for i in range(args.images)]

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    from torch.utils.flop_counter import FlopCounterMode

    gen.settings["micro_batch"] = 1
    gen.generate(items[:1])  # warm-up (kernels, allocator)
    with FlopCounterMode(display=False) as counter:
        gen.generate(items[:1])
    flops_per_image = counter.get_total_flops()
    results = {}
    for mb in (1, args.micro_batch):
        gen.settings["micro_batch"] = mb
        gen.generate(items[:mb])  # warm-up at this batch size
        sync()
        t = time.perf_counter()
        out = gen.generate(items)
        sync()
        seconds = time.perf_counter() - t
        results[mb] = {"images_per_s": len(out) / seconds, "seconds": seconds, "first_bytes": out[0].tobytes()}
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    report = {"size": args.size, "device": device_name, "dtype": args.dtype, "steps": steps, "strength": gen.settings["strength"],
              "image": f"{height}x{width}", "images": args.images, "gflops_per_image": round(flops_per_image / 1e9, 1),
              "torch": torch.__version__}
    for mb, r in results.items():
        report[f"micro_batch_{mb}_images_per_s"] = round(r["images_per_s"], 3)
        achieved = flops_per_image * r["images_per_s"] / 1e12
        report[f"micro_batch_{mb}_tflops"] = round(achieved, 5)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)
        if peak and args.dtype == "bfloat16":
            report[f"micro_batch_{mb}_fraction_of_bf16_peak"] = round(achieved / peak, 4)
    report["same_first_image_bytes"] = results[1]["first_bytes"] == results[args.micro_batch]["first_bytes"]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
