"""``reidkit train``: train a Re-ID model on a store (and its generated runs) with a strategy plugin."""
from __future__ import annotations

import click

from reidkit.json_output import emit, json_option, say

from reidkit.errors import ReidkitError


def parse_batch(value):
    if value is None:
        return None
    try:
        p, k = (int(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected P,K (persons per batch, images per person), e.g. 16,4; got '{value}'") from None
    if p < 2 or k < 1:
        raise click.BadParameter("P must be at least 2 and K at least 1")
    return p, k


@click.command("train")
@click.argument("stores", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strategy", "--plugin", "plugin", default=None,
              help="Strategy plugin: baseline (BoT), cal (CAL), progressive (DLCR), pretrain (Diffusion-ReID pre-training: exports "
                   "backbone.safetensors for --init-from); --plugin is an alias. [default: baseline]")
@click.option("--generated", "generated", multiple=True, help="Generated run(s) to train with (repeatable; 'reidkit info' lists them). "
                                                             "[default: none; progressive needs one]")
@click.option("--base", default=None, help="progressive only: base strategy, cal or baseline. [default: cal]")
@click.option("--backbone", default=None, help="Backbone plugin, or a timm model name (resnet50, resnet18, ...). "
                                            "[default: strategy's: resnet50, or the --init-from export's]")
@click.option("--weights", default=None, help="Backbone start weights: imagenet (resnet50 -> timm resnet50.tv_in1k, from the Hugging Face "
                                          "cache or hub), a .safetensors file, or none (random init). "
                                          "[default: strategy's: imagenet; pretrain: none]")
@click.option("--init-from", "init_from", default=None, help="Start the backbone from an export of 'train --strategy pretrain' (its run folder "
                                                            "or backbone.safetensors). [default: none]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (a schedule point beyond the last one is warned about). "
                                                      "[default: strategy's: baseline 120, cal / progressive / pretrain 60]")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="Run folder [default: runs/<strategy>].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML file with the same settings as keys (options given win; docs/training.md). [default: none]")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of initialisation, sampling and augmentation. [default: 0]")
@click.option("--device", default=None, help="auto (a visible GPU, else cpu), cpu, cuda, cuda:1. [default: auto]")
@click.option("--batch", default=None, help="P,K: persons per batch, images per person (or --ids-per-batch / --images-per-id). "
                                         "[default: strategy's: baseline / pretrain 16,4; cal 8,8; progressive 4,8]; a global batch: "
                                         "each of N processes takes P/N persons")
@click.option("--ids-per-batch", type=click.IntRange(min=2), default=None, help="P: persons per (global) batch. [default: strategy's: baseline 16, cal 8, progressive 4]")
@click.option("--images-per-id", type=click.IntRange(min=1), default=None, help="K: images per person in a batch. [default: strategy's: baseline 4, cal 8]")
@click.option("--height", type=click.IntRange(min=8), default=None, help="Input image height in pixels. [default: strategy's: baseline 256, cal 384]")
@click.option("--width", type=click.IntRange(min=8), default=None, help="Input image width in pixels. [default: strategy's: baseline 128, cal 192]")
@click.option("--clip-len", "clip_len", type=click.IntRange(min=0), default=None,
              help="Video training: frames per clip taken from a tracklet (CCVID; CAL: 8); 0 trains on single images. [default: 0]")
@click.option("--clip-stride", "clip_stride", type=click.IntRange(min=1), default=None,
              help="Video training: a clip takes every Nth frame (CAL: 4). [default: 4]")
@click.option("--clip-chunk", "clip_chunk", type=click.IntRange(min=0), default=None,
              help="Video training: tracklets cut into pieces of N frames, one clip per piece (CAL's dense sampling: 64; "
                   "0: whole tracklets). [default: 64]")
@click.option("--lr", type=click.FloatRange(min=0), default=None, help="Base learning rate (Adam). [default: strategy's: 3.5e-4 for all]")
@click.option("--amp", type=click.Choice(["auto", "none", "bf16", "fp16"]), default=None,
              help="Mixed precision on GPU (auto: bf16 where supported, else fp16; CPU runs never use it). "
                   "[default: none: float32, as the references train]")
@click.option("--num-workers", type=click.IntRange(min=0), default=None, help="Data-loading processes (0: load in the training process). "
                                                                       "[default: min(8, CPUs / processes on this machine)]")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, help="Save a checkpoint every N epochs (the last epoch "
                                                                               "always). [default: 1]")
@click.option("--keep-checkpoints", type=click.IntRange(min=1), default=None, help="Checkpoint folders kept (the newest). [default: 2]")
@click.option("--check-sync/--no-check-sync", "check_sync", default=None, help="Hash every rank's parameters after each epoch "
                                                                         "and compare them (ranks/rank-R.json). [default: off]")
@click.option("--compile/--no-compile", "compile_model", default=None, help="torch.compile the model (opt-in). [default: off]")
@click.option("--eval-every", type=click.IntRange(min=0), default=None, help="Evaluate every N epochs (0: never during training). [default: 0]")
@click.option("--subset", default=None, help="Train on part of the training split, as LUPerson: ids=R (a seeded share R of "
              "the persons, all their images) or images=R (every person, a share R of its images, at least one); "
              "query and gallery stay whole. [default: all]")
@click.option("--steps-per-epoch", "max_steps_per_epoch", type=click.IntRange(min=1), default=None,
              help="Cap batches per epoch (quick runs). [default: no cap: every batch of the epoch]")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint stopped "
                                          "(alone with --out: with the run's own settings). [default: off]")
@click.option("--set", "sets", multiple=True, help="Any training setting key=value (repeatable; values read as YAML; "
                                                  "nested with a dot: --set backbone.pooling=gem); named options win. [default: none]")
@json_option
def train(stores, plugin, generated, base, backbone, weights, init_from, epochs, out, config_file, seed, device, batch, ids_per_batch,
          images_per_id, height, width, clip_len, clip_stride, clip_chunk, lr, amp, num_workers, checkpoint_every, keep_checkpoints,
          check_sync, compile_model, eval_every, subset, max_steps_per_epoch, resume, sets, as_json):
    """Train a model: reidkit train STORE --strategy progressive --generated RUN --backbone resnet50 --epochs 60 --out runs/NAME

    Defaults follow each strategy's paper (BoT for baseline, CAL for cal and
    progressive); --config FILE.yaml holds the same settings as keys. Several
    stores (reidkit train A.h5 B.h5 ...) train on the union of their training
    splits, person ids kept apart per store; the first store's test split is
    the one evaluated.
    Several processes: torchrun --nproc_per_node 2 $(which reidkit) train ...
    """
    import os
    from pathlib import Path

    from reidkit.training.config import backbone_settings, read_config_file, resolve_config
    from reidkit.evaluation.during_training import TestSetEvaluator
    from reidkit.training.engine import train as run_training

    pk = parse_batch(batch)
    if pk and (ids_per_batch or images_per_id):
        raise click.UsageError("give either --batch P,K or --ids-per-batch/--images-per-id, not both")
    if pk:
        ids_per_batch, images_per_id = pk
    from reidkit.user_config import merge_under, train_keys, user_settings

    user = user_settings("train", train_keys())  # $REIDKIT_CONFIG's train: section, under any --config file
    file_settings = merge_under(user, read_config_file(config_file) if config_file else {})
    # where file_settings came from, for error messages naming a bad setting's source
    file_source = str(config_file) if config_file else "$REIDKIT_CONFIG's train: section"
    if resume and out and not config_file and (Path(out) / "config.yaml").is_file():
        # '--resume --out DIR' alone continues with the run's own settings; options given still apply (and are checked)
        from reidkit.training.checkpoint import read_config
        from reidkit.training.config import DERIVED_KEYS

        file_settings = merge_under(user, {k: v for k, v in read_config(out).items() if k not in DERIVED_KEYS})
        file_source = str(Path(out) / "config.yaml")
    overrides = {"strategy": plugin, "base": base, "generated": list(generated) or None, "epochs": epochs, "seed": seed,
                 "device": device, "ids_per_batch": ids_per_batch, "images_per_id": images_per_id, "height": height,
                 "width": width, "clip_len": clip_len, "clip_stride": clip_stride, "clip_chunk": clip_chunk, "lr": lr, "amp": amp,
                 "num_workers": num_workers, "checkpoint_every": checkpoint_every,
                 "keep_checkpoints": keep_checkpoints, "check_sync": check_sync, "compile": compile_model, "eval_every": eval_every,
                 "max_steps_per_epoch": max_steps_per_epoch, "subset": subset}
    given = set_options(sets)
    overrides = {**given, **{k: v for k, v in overrides.items() if v is not None}}  # named options win over --set
    config = resolve_config(plugin, file_settings, overrides, file_source=file_source,
                            option_names={k: f"--set {k}" for k in given if k not in overrides or overrides[k] is given[k]})
    config["backbone"] = backbone_settings(config, backbone)
    if weights is not None:
        config["backbone"]["weights"] = None if weights == "none" else weights
    if init_from:
        from reidkit.pretrained_backbone import resolve_export

        weights_file, exported = resolve_export(init_from)
        if backbone is None:  # the export's own architecture, unless --backbone says otherwise
            config["backbone"].update(exported.get("backbone", {}))
        config["backbone"]["weights"] = None  # no hub weights under the export
        config["init_from"] = str(weights_file.resolve())
    from reidkit.training.config import check_backbone_keys

    check_backbone_keys(config["backbone"])  # --backbone may have named another plugin: its settings must fit it too
    for path in stores:
        if not Path(path).exists():
            raise ReidkitError(f"store {path} does not exist (make one with 'reidkit adapt')")
    # several stores: trained on as one, person ids namespaced per store (reidkit.store.union); evaluated on the first
    store = stores[0] if len(stores) == 1 else list(stores)
    out = Path(out or Path("runs") / config["strategy"])
    from reidkit.errors import disk_full_names
    with disk_full_names(out):  # a full disk: one line (the run folder's writer lock is the library function's)
        summary = run_training(store, config, out, resume=resume, evaluator=TestSetEvaluator())
    if os.environ.get("RANK", "0") != "0":
        return  # rank 0 reports for everyone
    if as_json:  # the last epoch's log.csv row, plus where the run is
        from reidkit.training.selection import read_best

        emit({"out": str(out), "epochs": int(config["epochs"]), **{k: v for k, v in summary.items() if k != "checksum"},
              "best": read_best(out)})  # the best epoch chosen on the test set (eval_every), or null
    if summary.get("epochs_run", 0) == 0:
        say(f"{out}: already trained for {config['epochs']} epochs (raise --epochs to continue)", as_json)
        return
    shown = {k: v for k, v in summary.items() if k not in ("checksum",)}
    say(f"trained {out} to epoch {summary['epoch']}: " + ", ".join(f"{k} {v}" for k, v in shown.items() if k != "epoch"), as_json)
    from reidkit.training.selection import read_best

    best = read_best(out)
    if best:
        say(f"best epoch {best['epoch']} ({best['protocol']} rank-1 {100 * best['rank1']:.1f}%), chosen on the test set, kept in "
            f"{out}/best (the run's result is the last epoch)", as_json)
    say(f"evaluate: reidkit eval {stores[0]} --checkpoint {out}", as_json)


def set_options(pairs) -> dict:
    """``--set key=value`` options as settings: values read as YAML (``--set milestones=[20,40]``), a dotted
    key sets one entry of a nested setting (``--set backbone.pooling=gem``: merged into the backbone's)."""
    import yaml

    from reidkit.generation.contracts import key_values

    out = {}
    for key, text in key_values(pairs, "--set").items():
        try:
            value = yaml.safe_load(text) if text else text
        except yaml.YAMLError:
            value = text
        head, _, sub = key.partition(".")
        if sub:
            out[head] = {**(out.get(head) or {}), sub: value}
        else:
            out[key] = value
    return out
