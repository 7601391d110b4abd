"""``reidkit discriminator train``: the latent discriminator for dlcr's guided second pass."""
from __future__ import annotations

from pathlib import Path

import click


@click.group()
def discriminator():
    """Latent discriminators for DLCR's discriminator guidance (dlcr --set discriminator=DIR)."""


@discriminator.command("train")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--run", "run_name", required=True, help="Generated run whose kept images are the 'generated' class (the first pass).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for discriminator.safetensors, settings.json, log.csv, checkpoints and the kept epochs' weights.")
@click.option("--model", help="Inpainting pipeline id or folder whose VAE and scheduler are used. [default: the run's, else DLCR's SD-1.5 inpainting]")
@click.option("--epochs", type=click.IntRange(1), help="Epochs (each: every real training image once). [default: 120]")
@click.option("--batch-size", type=click.IntRange(2), help="Batch size, half real and half generated. [default: 16]")
@click.option("--seed", type=int, help="Seed of the person split, the initial weights and every draw. [default: 0]")
@click.option("--set", "sets", multiple=True, help="Setting key=value (repeatable): width, height, lr, weight_decay, heldout, dtype, "
              "encode_batch, report_threshold, keep_epochs (epochs whose weights are kept for the guided pass; "
              "default [50], DLCR's), and the architecture's channels, blocks_per_stage, time_dim, groups.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def train(store, run_name, out, model, epochs, batch_size, seed, sets, device, as_json):
    """Train a real-vs-generated discriminator on noisy latents of STORE's images and a run's images.

    Resumable: rerun the same command after an interruption (per-epoch checkpoints); more --epochs trains further.
    """
    import json

    from reidkit.generation.contracts import key_values
    from reidkit.plugins.guidance.training import train_discriminator

    settings = key_values(sets, "--set")
    for key, value in (("model", model), ("epochs", epochs), ("batch_size", batch_size), ("seed", seed)):
        if value is not None:
            settings[key] = value
    summary = train_discriminator(store, run_name, out, settings=settings, device=device)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"discriminator in {summary['out']}: {summary['epochs']} epochs, held-out balanced accuracy "
               f"{summary['heldout_acc']:.3f} (t > threshold: {summary['heldout_acc_t_gt_threshold']:.3f}; "
               f"{summary['real_heldout']} real, {summary['generated_heldout']} generated held-out images)", err=True)
