"""``reidkit expand``: generate new training images into a store (a generated run)."""
from __future__ import annotations

from pathlib import Path

import click

from reidkit.errors import ReidkitError

# YAML config keys -> run_expand arguments (flags given on the command line win)
CONFIG_KEYS = ("generator", "prompts", "masker", "variants", "seed", "name", "split", "group_size", "batch_size", "chunk_size",
               "shard", "filters", "generator_settings", "prompt_settings", "masker_settings", "device", "limit")


def group_size_as_batch_size(settings: dict) -> dict:
    """``group_size`` (the name of what it sets: part.json's group_size) as run_expand's ``batch_size`` (its old name)."""
    settings = dict(settings)
    if "group_size" in settings:
        settings["batch_size"] = settings.pop("group_size")
    return settings


def load_config(path: Path) -> dict:
    from reidkit.settings_file import read_settings_file

    data = read_settings_file(path, f"--config {path}")
    data = group_size_as_batch_size({k.replace("-", "_"): v for k, v in data.items()})
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ReidkitError(f"--config {path}: unknown keys {unknown} (known: {', '.join(CONFIG_KEYS)})")
    from reidkit.generation.engine import check_run_settings

    check_run_settings(data, f"--config {path}")  # a wrong type names the key and the file, before anything runs
    return data


def print_summary(summary: dict):
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title=f"run {summary['run']} (shard {summary['shard']})")
    for col in ("planned", "already done", "generated", "kept", "filtered out", "time", "images/s"):
        table.add_column(col, justify="right")
    table.add_row(str(summary["planned"]), str(summary["skipped"]), str(summary["generated"]), str(summary["kept"]),
                  str(summary["rejected"]), f"{summary['seconds']:.1f} s", f"{summary['images_per_s']:.2f}")
    console.print(table)
    for kind in ("masker", "prompts"):
        if summary.get(kind):
            chosen = summary.get("chosen_by", {}).get(kind, "")
            console.print(f"  {kind}: {summary[kind]}" + (f" ({chosen})" if chosen.endswith("'s default") else ""))
    for reason, n in sorted(summary["reject_reasons"].items()):
        console.print(f"  rejected {n}: {reason}")
    for fname, rates in summary.get("pass_rates", {}).items():
        console.print(f"  {fname} pass rate by tau: " + ", ".join(f"{t}: {r:.1%}" for t, r in rates.items()))
    if summary.get("bank_parse_failures"):
        console.print(f"  clothing bank: {summary['bank_parse_failures']} outfits whose model reply did not parse (see 'reidkit show')")
    counted = {k[len("bank_"):]: v for k, v in summary.items() if k.startswith("bank_") and k != "bank_parse_failures" and v}
    if counted:  # the prompt source's own counters (llava-llama: answers and replies cut at their token limits)
        console.print(f"  clothing bank ({summary.get('prompts', 'prompt source')}): "
                      + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counted.items()))
    console.print(f"  written to {summary['path']}")


def _with_user_plugin_settings(settings: dict, per_plugin: dict) -> dict:
    from reidkit.generation.engine import FALLBACK_MASKER, FALLBACK_PROMPTS, plugin_choice
    from reidkit.plugin_manager import get_plugins

    generator = settings["generator"]
    gen_cls = get_plugins().get("generators", generator)
    chosen = {
        "generator_settings": generator,
        "prompt_settings": plugin_choice(settings.get("prompts"), gen_cls, generator, "default_prompts", FALLBACK_PROMPTS)[0],
        "masker_settings": plugin_choice(settings.get("masker"), gen_cls, generator, "default_masker", FALLBACK_MASKER)[0],
    }
    out = dict(settings)
    for key, by_name in per_plugin.items():
        own = by_name.get(chosen[key])
        if own:
            out[key] = {**own, **(out.get(key) or {})}
    return out


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--generator", help="Generator plugin (recolor, dlcr, ...). [default: recolor]")
@click.option("--prompts", help="Prompt source plugin (templates, llava-llama, file). [default: the generator's (dlcr: llava-llama), else templates]")
@click.option("--masker", help="Masker plugin (store, heuristic, parser). [default: the generator's (dlcr: parser), else store]")
@click.option("--variants", "-k", type=click.IntRange(1), help="Generated images per source image. [default: 10]")
@click.option("--seed", type=int, help="Run seed: every item's seed and target outfit derive from it. [default: 0]")
@click.option("--name", help="Run name. [default: GENERATOR-SPLIT-kK-sSEED]")
@click.option("--split", help="Split to expand: train, or query for test-time refinement. [default: train]")
@click.option("--group-size", "--batch-size", "batch_size", type=click.IntRange(1),
              help="Items per generator call: the run's items in fixed groups of this size, recorded with the run "
                   "(group_size), so shards and resumed runs give the same bytes; --batch-size is its old name. "
                   "[default: the run's own, else 8]")
@click.option("--chunk-size", type=click.IntRange(1), help="Items per published chunk (the resume granularity). [default: 64]")
@click.option("--shard", help="Make only the I-th of N disjoint parts (I/N). Default: the launcher's RANK/WORLD_SIZE, else all.")
@click.option("--filter", "filters", multiple=True, help="Filter NAME[:key=value,...] (repeatable), e.g. sanity, reid-confidence:tau=0.5.")
@click.option("--set", "gen_sets", multiple=True, help="Generator setting key=value (repeatable), e.g. --set steps=20.")
@click.option("--prompt-set", "prompt_sets", multiple=True, help="Prompt source setting key=value (repeatable).")
@click.option("--mask-set", "mask_sets", multiple=True, help="Masker setting key=value (repeatable).")
@click.option("--model", help="Generator model id or local folder (same as --set model=...).")
@click.option("--per-identity", type=click.IntRange(1), help="Images per identity, for identity-wise generators such as diffusion-reid (same as --set per_identity=N).")
@click.option("--device", help="cpu, cuda, cuda:1 ... [default: auto]")
@click.option("--limit", type=click.IntRange(1), help="Expand only the first N images of the split (trials).")
@click.option("--config", type=click.Path(path_type=Path), help="YAML file with any of these settings (flags win; $REIDKIT_CONFIG's expand: section lies under it).")
@click.option("--merge", "merge_name", help="Instead of generating: merge run MERGE from the --from stores/folders.")
@click.option("--from", "merge_from", multiple=True, type=click.Path(path_type=Path), help="With --merge: a store file, its .parts folder, or a run folder (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def expand(store, generator, prompts, masker, variants, seed, name, split, batch_size, chunk_size, shard, filters,
           gen_sets, prompt_sets, mask_sets, model, per_identity, device, limit, config, merge_name, merge_from, as_json):
    """Generate VARIANTS new images per image of STORE's split into a generated run.

    Deterministic (same seed, same images), resumable (rerun the same
    command after an interruption), and shardable across processes or
    machines (--shard I/N, or torchrun/accelerate ranks; then --merge).
    """
    import json

    if merge_name:
        if not merge_from:
            raise click.UsageError("--merge needs at least one --from")
        from reidkit.generation import merge_run

        result = merge_run(store, merge_name, merge_from)
        click.echo(json.dumps(result, indent=2) if as_json else
                   f"merged run {result['run']}: {result['added']} items added, {result['already_present']} already present, {result['items']} in total")
        return
    from reidkit.user_config import merge_under, split_per_plugin, user_settings

    # built-in defaults < $REIDKIT_CONFIG's expand: section < --config < flags; masker and prompts left unset
    # here are the generator's own (dlcr: parser, llava-llama), else store and templates (run_expand decides)
    settings = {"generator": "recolor", "variants": 10, "seed": 0, "split": "train", "batch_size": None, "chunk_size": 64,
                "device": "auto"}
    user, user_per_plugin = split_per_plugin(user_settings("expand", CONFIG_KEYS))
    user = group_size_as_batch_size(user)
    if user:
        from reidkit.generation.engine import check_run_settings
        from reidkit.user_config import config_path

        check_run_settings(user, f"$REIDKIT_CONFIG {config_path()} (expand:)")
    settings.update(user)
    if config:
        settings = merge_under(settings, load_config(config))  # plugin settings merge key by key
    flags = {"generator": generator, "prompts": prompts, "masker": masker, "variants": variants, "seed": seed,
             "name": name, "split": split, "batch_size": batch_size, "chunk_size": chunk_size, "shard": shard,
             "device": device, "limit": limit}
    settings.update({k: v for k, v in flags.items() if v is not None})
    if filters:
        settings["filters"] = list(filters)
    from reidkit.generation.contracts import key_values

    for key, pairs, what in (("generator_settings", gen_sets, "--set"), ("prompt_settings", prompt_sets, "--prompt-set"),
                             ("masker_settings", mask_sets, "--mask-set")):
        if pairs:
            settings[key] = {**(settings.get(key) or {}), **key_values(pairs, what)}
    for key, value in (("model", model), ("per_identity", per_identity)):
        if value is not None:
            settings["generator_settings"] = {**(settings.get("generator_settings") or {}), key: value}
    if user_per_plugin:  # $REIDKIT_CONFIG's settings for the plugins this run uses, under any other settings for them
        settings = _with_user_plugin_settings(settings, user_per_plugin)
    from reidkit.generation import run_expand

    summary = run_expand(store, **settings)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
