"""The whole story on the synthetic world: adapt, expand (recolor), train with and without the expansion, evaluate.

Every stage reuses what a previous (interrupted) demo in the same folder
finished: the store when its settings match, the generated run (resumed item
by item), and each training run (resumed from its last epoch).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError

FULL = {"ids": 48, "outfits": 3, "cameras": 4, "shots": 2, "world_height": 128, "world_width": 64, "variants": 4,
        "backbone": "resnet10t", "height": 64, "width": 32, "epochs": 24, "batch": (8, 4), "progress_epochs": [4, 8, 12],
        "lr": 1e-3}  # from scratch: a higher rate than the papers' (pretrained) 3.5e-4 (docs/training.md, findings)
QUICK = {"ids": 12, "outfits": 3, "cameras": 2, "shots": 1, "world_height": 64, "world_width": 32, "variants": 2,
         "backbone": "resnet10t", "height": 64, "width": 32, "epochs": 2, "batch": (4, 2), "progress_epochs": [1, 2, 3],
         "lr": 1e-3}
PROTOCOLS = ("standard", "cc")
METRICS = ("rank1", "rank5", "mAP", "mINP", "cmc")
WORLD_SEED = 0  # the embedded default world; --seeds vary the expansion, the query variants and the training


def ensure_world(path: Path, s: dict, seed: int):
    """Write the synthetic store, or reuse one written with the same settings."""
    from reidkit import open_store
    from reidkit.plugin_manager import get_plugins
    from reidkit.store.writer import write_store

    settings = {"ids": s["ids"], "outfits": s["outfits"], "cameras": s["cameras"], "shots": s["shots"], "seed": seed,
                "height": s["world_height"], "width": s["world_width"]}
    if path.exists():
        store = open_store(path)
        if all(store.settings.get(k) == v for k, v in settings.items()):
            return store
        raise ReidkitError(f"{path} exists with other settings; use another --out or delete it")
    layout = get_plugins().get("adapters", "synthetic")().scan(None, dict(settings))
    layout.settings = {**settings, **layout.settings, "adapter": "synthetic", "root": None}
    write_store(path, layout)
    return open_store(path)


def train_config(plugin: str, s: dict, seed: int, generated=None, base="baseline", workers=0) -> dict:
    from reidkit.training.config import backbone_settings, resolve_config

    p, k = s["batch"]
    overrides = {"epochs": s["epochs"], "height": s["height"], "width": s["width"], "ids_per_batch": p, "images_per_id": k,
                 "seed": seed, "num_workers": workers, "device": "cpu", "amp": "none", "lr": s["lr"],
                 # the papers' schedules scaled to a short run: 1 warm-up epoch per 12, one step at 2/3
                 "warmup_epochs": max(1, s["epochs"] // 12), "milestones": [max(1, 2 * s["epochs"] // 3)]}
    if plugin == "progressive":
        overrides.update(generated=[generated], base=base, progress_epochs=s["progress_epochs"])
    if base == "cal":  # CAL starts its clothes classifier and adversarial loss together (25 of 60 epochs); here a third in
        overrides["adversarial_start_epoch"] = overrides["clothes_start_epoch"] = max(1, s["epochs"] // 3)
    config = resolve_config(plugin if plugin == "progressive" else base, {}, overrides)
    config["backbone"] = {**backbone_settings(config, s["backbone"]), "weights": None}  # from scratch: nothing to download
    return config


def train_or_resume(store_path, config, out: Path):
    from reidkit.training.checkpoint import latest_checkpoint, read_config
    from reidkit.evaluation.during_training import TestSetEvaluator
    from reidkit.training.engine import train

    if latest_checkpoint(out) is not None:
        if read_config(out).get("epochs") == config["epochs"] and _epochs_done(out) >= config["epochs"]:
            return
        return train(store_path, config, out, resume=True, evaluator=TestSetEvaluator())
    return train(store_path, config, out, evaluator=TestSetEvaluator())


def _epochs_done(out: Path) -> int:
    log = out / "log.csv"
    return len(log.read_text().splitlines()) - 1 if log.is_file() else 0


def contact_sheet(store, run, path: Path, rows=6, seed=0):
    """Originals (first column) next to their kept variants, drawn as ``reidkit show`` draws its sheet.

    Columns headed (original, variant 1..k), each original captioned with its source image, person and camera,
    each variant with its prompt; a rejected variant's place is left empty.
    """
    from reidkit.generation.contact_sheet import kept_rows, write_sheet

    return write_sheet(kept_rows(store, run, rows, seed), path)


def run_demo(out, quick=False, seeds=(0, 1, 2), base="cal", refine=True, workers=0, overrides=None, echo=print,
             on_seed=None) -> dict:
    """Run every stage once per seed; returns {"models": {name: {protocol: mean metrics}}, "spread": ..., "per_seed": ...}.

    The world is the embedded default (world seed 0); each seed draws its own expansion, query variants and training.
    ``on_seed(seed, models, seconds)``: called after each seed's evaluation with that seed's results (the command
    prints the first seed's table at once, minutes before the spread over all seeds is known).
    """
    from reidkit import open_store
    from reidkit.evaluation.inference import load_reid_model
    from reidkit.evaluation.plots import write_cmc_plot
    from reidkit.evaluation.runner import evaluate_runner
    from reidkit.generation.engine import run_expand

    s = {**(QUICK if quick else FULL), **(overrides or {})}
    seeds = [int(x) for x in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ReidkitError(f"--seeds needs one or more distinct seeds (got {seeds})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings = {}
    echo(f"[1/5] synthetic world: {s['ids']} persons, {s['outfits']} outfits, {s['cameras']} cameras")
    store_path = out / "world.h5"
    store = ensure_world(store_path, s, WORLD_SEED)
    timings["adapt"] = time.perf_counter() - t0
    per_seed = {}
    for seed in seeds:
        tag = f"seed {seed} ({seeds.index(seed) + 1}/{len(seeds)})"
        echo(f"[2/5] {tag}: expand with recolor, {s['variants']} variants per training image (ground-truth clothing masks)")
        t = time.perf_counter()
        expansion, queries = f"recolor-k{s['variants']}-s{seed}", f"recolor-query-k4-s{seed}"
        run_expand(store_path, generator="recolor", prompts="templates", masker="store", variants=s["variants"], seed=seed,
                   name=expansion, split="train", device="cpu", show_progress=True)
        if refine:
            run_expand(store_path, generator="recolor", prompts="templates", masker="store", variants=4, seed=seed + 1,
                       name=queries, split="query", device="cpu", show_progress=True)
        store = open_store(store_path)
        timings["expand"] = timings.get("expand", 0.0) + time.perf_counter() - t
        models = {"baseline" if base == "baseline" else "cal": train_config(base, s, seed, base=base, workers=workers),
                  "+ expansion": train_config("progressive", s, seed, expansion, base, workers)}
        runs = out / "runs" / f"seed-{seed}"
        for step, (name, config) in enumerate(models.items(), start=3):
            echo(f"[{step}/5] {tag}: train {name}: {config['strategy']}{'/' + config.get('base', '') if config['strategy'] == 'progressive' else ''}, "
                 f"{s['backbone']} {s['height']}x{s['width']}, {s['epochs']} epochs")
            t = time.perf_counter()
            train_or_resume(store_path, config, runs / _slug(name))
            timings[f"train {name}"] = timings.get(f"train {name}", 0.0) + time.perf_counter() - t
        echo(f"[5/5] {tag}: evaluate (standard and clothes-changing)")
        t = time.perf_counter()
        results = {}
        for name in models:
            runner = load_reid_model(runs / _slug(name), "cpu")
            results[name] = evaluate_runner(runner, store, protocols=list(PROTOCOLS))
            if refine:
                results[f"{name} + refinement"] = evaluate_runner(runner, store, protocols=list(PROTOCOLS), refine_run=queries)
        timings["evaluate"] = timings.get("evaluate", 0.0) + time.perf_counter() - t
        per_seed[seed] = {n: {p: {k: r[p][k] for k in METRICS} for p in PROTOCOLS} for n, r in results.items()}
        if on_seed is not None:
            on_seed(seed, per_seed[seed], time.perf_counter() - t0)
    mean, spread = aggregate(per_seed)
    files = [contact_sheet(store, store.run(f"recolor-k{s['variants']}-s{seeds[0]}"), out / "contact_sheet.png", seed=seeds[0])]
    for protocol in PROTOCOLS:
        curves = {name: r[protocol] for name, r in mean.items()}
        title = f"synthetic world, {protocol}" + (f", mean of {len(seeds)} seeds" if len(seeds) > 1 else "")
        files.append(write_cmc_plot(curves, out / f"cmc_{protocol}.png", title=title))
    summary = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}, "seeds": seeds,
               "world_seed": WORLD_SEED, "base": base, "models": mean, "spread": spread,
               "per_seed": {str(k): v for k, v in per_seed.items()},
               "seconds": round(time.perf_counter() - t0, 1), "timings": {k: round(v, 1) for k, v in timings.items()},
               "files": [str(f) for f in files]}
    from reidkit.store.atomic import write_json_atomic

    write_json_atomic(out / "results.json", summary)
    return summary


def aggregate(per_seed: dict) -> tuple[dict, dict]:
    """Mean of every metric over seeds, and its spread: sample standard deviation (0 for one seed), min and max."""
    first = next(iter(per_seed.values()))
    mean, spread = {}, {}
    for name, protocols in first.items():
        mean[name], spread[name] = {}, {}
        for p, metrics in protocols.items():
            mean[name][p], spread[name][p] = {}, {}
            for k, v in metrics.items():
                values = np.array([per_seed[seed][name][p][k] for seed in per_seed], dtype=np.float64)
                if k == "cmc":
                    mean[name][p][k] = values.mean(0).tolist()
                    continue
                mean[name][p][k] = float(values.mean())
                spread[name][p][k] = {"std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                      "min": float(values.min()), "max": float(values.max())}
    return mean, spread


def _slug(name: str) -> str:
    return "expansion" if name.startswith("+") else name
