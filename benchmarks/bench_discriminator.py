"""DLCR's discriminator guidance: does the discriminator learn, and what does the guided pass cost per image.

``learn``: the embedded synthetic world, the recolor generator as the first
pass, ``reidkit discriminator train`` on its latents; prints the held-out
accuracy per epoch (log.csv). No trained VAE can be had offline, so the VAE
has random weights (seeded; nothing downloaded): the tiny test pipeline's,
or SD-1.5's VAE architecture (``sd-config``), saved as a pipeline folder
(vae/ + scheduler/). ``-calibrated`` (the default) first gives it the two
statistics of a trained VAE the discriminator depends on: the scaling
factor from its latents' std on the store (how SD's 0.18215 was chosen) and
a small posterior variance (see calibrate_vae):

    python benchmarks/bench_discriminator.py learn [--vae tiny-calibrated|tiny|sd-config|sd-config-calibrated] \
        [--epochs 10] [--variants 2]

``speed``: dlcr images/s, plain vs guided (same items, same settings), on the
tiny pipeline, or on a GPU with the full-size SD-1.5 inpainting architecture
(random weights) at DLCR's settings and a discriminator of the default
architecture (random weights; its cost does not depend on them):

    python benchmarks/bench_discriminator.py speed --full-size --device cuda --dtype float16 \
        --width 256 --height 768 --steps 50 --images 32 --batch 16
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
REIDKIT = [sys.executable, "-m", "reidkit.cli"]


def sd_config_vae_folder(folder: Path, seed: int = 0) -> Path:
    """vae/ (SD-1.5's AutoencoderKL architecture, random weights) and scheduler/ (SD-1.5's DDIM betas)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler

    torch.manual_seed(seed)
    AutoencoderKL(block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  sample_size=512).save_pretrained(folder / "vae")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                  steps_offset=1).save_pretrained(folder / "scheduler")
    return folder


def calibrate_vae(folder: Path, store_path: Path, logvar: float = -10.0, sample: int = 256) -> float:
    """Give a random VAE the two statistics of a trained one that a latent discriminator depends on, in place:
    scaling_factor = 1 / std of the latents of the store's training images (how SD's 0.18215 was chosen), and a small
    posterior variance (quant_conv's log-variance rows constant at ``logvar``; a random one has std ~ 1, which buries
    the image in the VAE's own sampling noise). Returns the scaling factor."""
    import torch
    from diffusers import AutoencoderKL

    from reidkit import open_store

    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    half = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[half:] = 0.0
        vae.quant_conv.bias[half:] = logvar
        store = open_store(store_path)
        idx = store.split("train")[:sample]
        x = np.stack([store.image(int(i)) for i in idx])
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        scale = 1.0 / float(vae.encode(x).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(folder / "vae")
    return scale


def learn(args):
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dg-"))
    tmp.mkdir(parents=True, exist_ok=True)
    store = tmp / "world.h5"
    if not store.exists():
        subprocess.run([*REIDKIT, "adapt", "synthetic", "--out", str(store)], check=True, capture_output=True)
    subprocess.run([*REIDKIT, "expand", str(store), "--generator", "recolor", "--variants", str(args.variants), "--seed", "0"],
                   check=True, capture_output=True)
    model = tmp / f"vae-{args.vae}"
    if not model.exists():
        if args.vae.startswith("tiny"):
            from tests.tiny_models import build_tiny_inpaint_pipeline

            build_tiny_inpaint_pipeline(model)
        else:
            sd_config_vae_folder(model)
        if args.vae.endswith("calibrated"):
            calibrate_vae(model, store)
    out = tmp / f"disc-{args.vae}"
    start = time.perf_counter()
    proc = subprocess.run([*REIDKIT, "discriminator", "train", str(store), "--run", f"recolor-train-k{args.variants}-s0",
                           "--out", str(out), "--model", str(model), "--epochs", str(args.epochs), "--device", args.device,
                           "--set", f"width={args.width}", "--set", f"height={args.height}", "--json"],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    summary = json.loads(proc.stdout)
    rows = list(csv.DictReader((out / "log.csv").open()))
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "vae": args.vae,
        "vae_scaling_factor": json.loads((model / "vae" / "config.json").read_text())["scaling_factor"],
        "working_size": f"{args.width}x{args.height}", "variants": args.variants, "seconds": round(time.perf_counter() - start, 1),
        "items": {k: summary[k] for k in ("real_train", "generated_train", "real_heldout", "generated_heldout")},
        "per_epoch": [{k: r[k] for k in ("epoch", "train_acc", "heldout_acc", "heldout_acc_t_le_threshold",
                                          "heldout_acc_t_gt_threshold")} for r in rows],
    }, indent=2))


def speed(args):
    import torch

    from benchmarks.bench_dlcr import dlcr_setup
    from reidkit.plugins.guidance import discriminator
    from reidkit.plugins.guidance.sampling import DiscriminatorGuidance

    gen, items = dlcr_setup(args, Path(tempfile.mkdtemp(prefix="bench-dg-speed-")))
    pipe = gen.load()
    torch.manual_seed(0)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    net = discriminator.build(discriminator.architecture(None), 4).to(gen.device).eval().requires_grad_(False)
    guidance = DiscriminatorGuidance(net, {"latent_channels": 4}, "random", weight=1.0, threshold=200, clip=1e-5)
    sync = torch.cuda.synchronize if str(gen.device).startswith("cuda") else (lambda: None)

    def timed(g):
        gen.guidance = g
        gen.generate(items[:1])  # warm-up
        sync()
        t = time.perf_counter()
        outs = []
        for s in range(0, len(items), args.batch):
            outs += gen.generate(items[s:s + args.batch])
        sync()
        return len(items) / (time.perf_counter() - t), outs

    plain_ips, plain = timed(None)
    guided_ips, guided = timed(guidance)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
        "device": str(gen.device), "gpu": torch.cuda.get_device_name() if str(gen.device).startswith("cuda") else None,
        "images": len(items), "batch": args.batch, "working_size": f"{args.width}x{args.height}",
        "latent": f"{args.height // factor}x{args.width // factor}", "steps": args.steps, "dtype": args.dtype,
        "plain_img_s": round(plain_ips, 3), "guided_img_s": round(guided_ips, 3),
        "guided_cost_ratio": round(plain_ips / guided_ips, 3),
        "max_abs_diff_grey_levels": max(float(np.abs(a.astype(np.float32) - b).max()) for a, b in zip(plain, guided)),
    }, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("learn")
    a.add_argument("--vae", choices=("tiny", "tiny-calibrated", "sd-config", "sd-config-calibrated"), default="tiny-calibrated")
    a.add_argument("--epochs", type=int, default=10)
    a.add_argument("--variants", type=int, default=2)
    a.add_argument("--width", type=int, default=64)
    a.add_argument("--height", type=int, default=128)
    a.add_argument("--device", default="cpu")
    a.add_argument("--workdir", help="keep the world, VAE and discriminator here (default: a new temporary folder)")
    b = sub.add_parser("speed")
    b.add_argument("--images", type=int, default=8)
    b.add_argument("--batch", type=int, default=4)
    b.add_argument("--width", type=int, default=32)
    b.add_argument("--height", type=int, default=64)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--device", default="cpu")
    b.add_argument("--dtype", default="auto")
    b.add_argument("--model", help="an inpainting pipeline folder or id (default: the tiny test pipeline)")
    b.add_argument("--full-size", action="store_true", help="SD-1.5 inpainting architecture, random weights, in memory")
    args = ap.parse_args()
    (learn if args.what == "learn" else speed)(args)


if __name__ == "__main__":
    main()
