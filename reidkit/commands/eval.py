"""``reidkit eval STORE --features FILE``: CMC / mAP / mINP under the store's protocols.

Feature sources are pluggable in one place: ``resolve_features`` turns the
command's options into (features, index); a later option such as
``--checkpoint`` adds a branch there and an option below, the rest (checks,
evaluation, table, JSON, plot) stays as it is.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

METRIC_COLUMNS = (("rank1", "R1"), ("rank5", "R5"), ("rank10", "R10"), ("mAP", "mAP"), ("mINP", "mINP"))


def resolve_features(store, features_path=None, **_sources):
    """(features N x D, index N) from whichever source the options name."""
    checkpoint = _sources.get("checkpoint")
    if features_path is not None and checkpoint is not None:
        raise click.UsageError("give --features FILE or --checkpoint DIR, not both")
    if checkpoint is not None:  # the one path of every evaluation of a model (reidkit.evaluation.runner)
        from reidkit.evaluation.runner import checkpoint_features

        return checkpoint_features(_sources["model"], store, _sources.get("protocols"), _sources.get("flip", True))
    if features_path is None:
        raise click.UsageError("give --features FILE (an .npz or .h5 with 'features' and 'index') or --checkpoint DIR (a 'reidkit train' run)")
    from reidkit.evaluation.features import load_features

    return load_features(features_path)


def json_rows(results: dict) -> list[dict]:
    keys = ("protocol", "rank1", "rank5", "rank10", "mAP", "mINP", "valid_queries", "queries", "gallery", "rule", "unit",
            "gallery_sampling", "trials", "seed", "distance", "rerank", "refine", "refine_settings", "variants", "refined_queries",
            "flip", "weights", "epoch", "evaluated_on", "trained_on", "recorded_best", "aqe", "tpr_at_fpr", "fpr_thresholds", "verification_pairs", "cmc",
            "ranked_lists")
    return [{k: r[k] for k in keys if k in r} for r in results.values()]


def print_table(results: dict, title: str):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("protocol", "query", "gallery", "valid", *(c for _, c in METRIC_COLUMNS)):
        table.add_column(col, justify="left" if col == "protocol" else "right", no_wrap=True)
    for name, r in results.items():
        sampling = f", 1-shot x{r['trials']}" if r.get("gallery_sampling") == "single_shot" else ""
        label = name if r["rule"] == name and not sampling else f"{name} ({r['rule']}{sampling})"
        table.add_row(label, f"{r['queries']:,}", f"{r['gallery']:,}", f"{r['valid_queries']:,}",
                      *(f"{100 * r[k]:.1f}" for k, _ in METRIC_COLUMNS))
    Console().print(table)


def print_verification(results: dict):
    """TPR at FPR per protocol (results that have them), under the metrics table."""
    from rich.console import Console
    from rich.table import Table

    from reidkit.evaluation.verification import FPR_KEYS

    rows = [(name, r) for name, r in results.items() if r.get("tpr_at_fpr")]
    if not rows:
        return
    table = Table(title="Verification: TPR at FPR, %")
    for col in ("protocol", "same pairs", "other pairs", *(f"TPR@{k}" for k in FPR_KEYS)):
        table.add_column(col, justify="left" if col == "protocol" else "right", no_wrap=True)
    for name, r in rows:
        pairs = r["verification_pairs"]
        table.add_row(name, f"{pairs['same']:,}", f"{pairs['different']:,}",
                      *("-" if r["tpr_at_fpr"][k] is None else f"{100 * r['tpr_at_fpr'][k]:.1f}" for k in FPR_KEYS))
    Console().print(table)


def scoring_words(distance, rerank=None, aqe=None) -> str:
    """The table title's words for how distances were made: metric, query expansion, re-ranking."""
    words = f"{distance}"
    if aqe:
        words += f", AQE k={aqe['k']} alpha={aqe['alpha']:g}"
    if rerank:
        words += f", re-ranked k1={rerank['k1']} k2={rerank['k2']} lambda={rerank['lambda']}"
    return words


def run_evaluation(store, features, index, protocols=(), distance="cosine", rerank=None, device="cpu", seed=0,
                   as_json=False, plot=None, show_progress=True, source=None, model=None, recorded_best=None,
                   aqe=None, verification=False, ranks=None, ranks_out=None) -> dict:
    """Evaluate, then report (table or JSON, optional CMC plot and ranked-lists picture); shared by every feature source.

    ``source`` names where the features came from (e.g. the checkpoint) in the plot's title. ``model`` (a loaded
    run): its flip and which weights are recorded in the results; ``recorded_best``: the best epoch training
    kept (best.json), shown beside the results. ``aqe``, ``verification``, ``ranks``: see
    ``reidkit.evaluation.runner.evaluate_features``; ``ranks_out``: the PNG the ranked lists are drawn to.
    """
    from reidkit.evaluation.protocols import validate_inputs
    from reidkit.evaluation.runner import evaluate_features, evaluation_rows
    from reidkit.progress import progress_bar

    _, _, selected = validate_inputs(store, features, index, protocols, distance)
    total = evaluation_rows(store, selected, rerank, aqe, verification, ranks)
    with progress_bar(total if show_progress else 0, "evaluating", unit="row") as update:
        results = evaluate_features(store, features, index, [p.name for p in selected], distance, rerank, aqe, verification,
                                    ranks, device, seed, on_rows=lambda n: update(advance=n))
    annotate(results, model, recorded_best, store)
    if ranks and ranks_out:
        from reidkit.evaluation.ranked_lists import draw, normalise_ranks, title_line

        settings = normalise_ranks(ranks)
        draw(store, [(title_line(r, settings), r["ranked_lists"]) for r in results.values()], ranks_out)
        click.echo(f"Wrote ranked lists {ranks_out}", err=True)
    if as_json:
        click.echo(json.dumps(json_rows(results), indent=2))
    else:
        print_table(results, f"{store.path.name} ({store.dataset}): {scoring_words(distance, rerank, aqe)}{model_setting(model)}")
        print_verification(results)
        print_recorded_best(recorded_best, list(results))
    if plot:
        from reidkit.evaluation.plots import write_cmc_plot

        write_cmc_plot(results, plot, title=plot_title(store, f"{distance}" + (" + AQE" if aqe else "") + (" + re-ranking" if rerank else "")
                                                       + model_setting(model), source))
        click.echo(f"Wrote CMC plot {plot}", err=True)
    return results


def leave_group():
    """At exit: wait for every rank (rank 0 still scores after the others have returned), then leave the group.
    A rank that tore its group down while rank 0 was still in it was seen to abort (SIGABRT) on a loaded machine."""
    import torch.distributed as dist

    from reidkit.training.distributed import leave_group as leave

    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            leave()


def annotate(results: dict, model=None, recorded_best=None, store=None):
    """Record in every result which test features were used (flip, weights, epoch), the training-recorded best, the
    store evaluated and the store(s) the run trained on."""
    for name, r in results.items():
        if store is not None:
            r["evaluated_on"] = str(Path(store.path).resolve())
        if model is not None:
            r.update(flip=bool(model.flip), weights=model.weights, epoch=model.epoch)
            # the store(s) the run trained on, beside the one evaluated (``store``): a cross-dataset test says so
            stores = model.config.get("store")
            r["trained_on"] = stores if isinstance(stores, list) else [stores]
        if recorded_best and name in recorded_best.get("metrics", {}):
            r["recorded_best"] = {"epoch": recorded_best["epoch"], "chosen_on": recorded_best.get("chosen_on", "test set"),
                                  "select_protocol": recorded_best["protocol"], **recorded_best["metrics"][name]}


def model_setting(model, flip=None) -> str:
    """The table title's words for a checkpoint's features: flip, and which epoch's weights."""
    if model is None:
        return ""
    flip = model.flip if flip is None else flip
    epoch = f" {model.epoch}" if model.epoch else ""
    which = f"best epoch{epoch} (chosen on the test set)" if model.weights == "best" else f"last epoch{epoch}"
    return f", {'flip-averaged' if flip else 'no flip'}, {which}"


def print_recorded_best(recorded_best, order=()):
    """The best epoch's metrics as training recorded them, labelled as chosen on the test set (protocols in ``order`` first)."""
    if not recorded_best:
        return
    from rich.console import Console
    from rich.table import Table

    # a plain line, not a table title: the label must not be wrapped or cut on a narrow terminal
    click.echo(f"Recorded by training: best epoch {recorded_best['epoch']}, chosen on the test set "
               f"({recorded_best['protocol']} rank-1); the run's result is the last epoch")
    table = Table()
    for col in ("protocol", *(c for _, c in METRIC_COLUMNS)):
        table.add_column(col, justify="left" if col == "protocol" else "right", no_wrap=True)
    metrics = recorded_best.get("metrics", {})
    for name in [*(n for n in order if n in metrics), *(n for n in metrics if n not in order)]:
        table.add_row(name, *(f"{100 * metrics[name][k]:.1f}" if k in metrics[name] else "-" for k, _ in METRIC_COLUMNS))
    Console().print(table)


@click.command("eval")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--features", "features_path", type=click.Path(path_type=Path),
              help="Features file: .npz or .h5 with 'features' (N x D) and 'index' (store image index per row).")
@click.option("--protocol", "protocols", multiple=True,
              help="Protocol(s) to run, repeatable or comma-separated (default: all the store defines).")
@click.option("--distance", type=click.Choice(["cosine", "euclidean"]), default="cosine", show_default=True,
              help="cosine on L2-normalised features, or Euclidean.")
@click.option("--rerank", is_flag=True, help="k-reciprocal re-ranking (Zhong et al. 2017).")
@click.option("--k1", default=20, show_default=True, type=click.IntRange(1), help="Re-ranking: k-reciprocal neighbours.")
@click.option("--k2", default=6, show_default=True, type=click.IntRange(1), help="Re-ranking: query-expansion neighbours.")
@click.option("--lambda", "lambda_", default=0.3, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Re-ranking: weight of the original distance.")
@click.option("--aqe", is_flag=True, help="Alpha-weighted query expansion (fast-reid's AQE) of query and gallery features, before "
                                          "re-ranking.")
@click.option("--aqe-k", default=5, show_default=True, type=click.IntRange(1),
              help="AQE: items averaged per feature, the item itself included (fast-reid's QE_K).")
@click.option("--aqe-alpha", default=3.0, show_default=True, type=click.FloatRange(0.0),
              help="AQE: each item weighted by its cosine similarity to the power alpha.")
@click.option("--verification/--no-verification", default=True, show_default=True,
              help="TPR at FPR 1e-4, 1e-3, 1e-2 per protocol (a second pass over the distances).")
@click.option("--ranks", type=click.IntRange(1), default=None,
              help="Draw ranked lists of this many queries (the worst by AP) to --ranks-out.")
@click.option("--ranks-queries", default=None, help="Ranked lists of these queries instead (0-based indices, e.g. 0,7,12).")
@click.option("--ranks-k", default=10, show_default=True, type=click.IntRange(1), help="Ranked lists: gallery items per query.")
@click.option("--ranks-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="PNG the ranked lists are drawn to (needed by --ranks / --ranks-queries).")
@click.option("--device", default="cpu", show_default=True, help="torch device of the evaluation: distances, ranking, scoring, re-ranking's k-NN pass (cpu, cuda).")
@click.option("--seed", default=0, show_default=True, help="Seed of single-shot gallery sampling (trial t uses [seed, t]).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list: one object per protocol.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write CMC curves to this PNG.")
@click.option("--checkpoint", type=click.Path(path_type=Path, file_okay=False),
              help="A 'reidkit train' run folder: extract features with its model (on --device; flip: see --flip; with --refine: "
                   "see --refine-flip).")
@click.option("--flip/--no-flip", "flip", default=None,
              help="With --checkpoint: average each image's features with its mirror's. [default: the run's test_flip: cal yes, "
                   "baseline / pretrain / video no; runs made before the setting: yes]")
@click.option("--select", "select", type=click.Choice(["last", "best"]), default="last", show_default=True,
              help="With --checkpoint: the last epoch's weights, or best/ (the best epoch on the test set, kept by --eval-every).")
@click.option("--save-features", type=click.Path(path_type=Path, dir_okay=False),
              help="With --checkpoint: keep the extracted features (.npz or .h5, 'features' + 'index').")
@click.option("--refine", "refine_run", default=None,
              help="With --checkpoint: DLCR test-time refinement using query variants of this run ('reidkit expand --split query').")
@click.option("--refine-variants", default=4, show_default=True, type=click.IntRange(1),
              help="Refinement: variants used per query (DLCR: 4; the run's first ones by variant number).")
@click.option("--refine-top", default=5, show_default=True, type=click.IntRange(1), help="Refinement: gallery items re-scored per query (DLCR: 5).")
@click.option("--refine-flip/--no-refine-flip", default=False, show_default=True,
              help="Refinement: average features with the mirrored image (DLCR: no; plain evaluation: see --flip).")
def eval_command(store, features_path, protocols, distance, rerank, k1, k2, lambda_, aqe, aqe_k, aqe_alpha, verification,
                 ranks, ranks_queries, ranks_k, ranks_out, device, seed, as_json, plot,
                 checkpoint, flip, select, save_features, refine_run, refine_variants, refine_top, refine_flip):
    """Evaluate features of STORE's query and gallery images with the store's protocols."""
    from reidkit.store import open_store

    rank_settings = check_rank_options(ranks, ranks_queries, ranks_k, ranks_out, refine_run)
    if refine_run and aqe:
        raise click.UsageError("--refine scores with cosine similarity and no query expansion")
    opened = open_store(store)
    aqe_settings = {"k": aqe_k, "alpha": aqe_alpha} if aqe else None
    if aqe or rank_settings:  # before any model is loaded or feature extracted
        from reidkit.evaluation.query_expansion import check_protocol
        from reidkit.evaluation.ranked_lists import check_queries

        for p in _selected(opened, protocols):
            if aqe:
                check_protocol(p)
        if rank_settings:
            check_queries(opened, _selected(opened, protocols), rank_settings["queries"])
    if device != "cpu":
        from reidkit.devices import check_device

        check_device(device)  # before any model is loaded on it
    if (save_features or refine_run or flip is not None or select != "last") and checkpoint is None:
        raise click.UsageError("--save-features, --refine, --flip/--no-flip and --select need --checkpoint DIR")
    if refine_run and flip is not None:
        raise click.UsageError("with --refine the features' flip is --refine-flip/--no-refine-flip (DLCR: no flip)")
    if refine_run and (rerank or distance != "cosine"):
        raise click.UsageError("--refine scores with cosine similarity and no re-ranking")
    model = recorded = None
    if checkpoint is not None:
        from reidkit.evaluation.inference import load_reid_model
        from reidkit.training.selection import read_best

        recorded = read_best(checkpoint)  # training's best epoch on the test set, shown beside the results

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun/accelerate: join the group, each rank on its own device
            import atexit

            from reidkit.training.distributed import setup

            device = setup(device).device
            atexit.register(leave_group)
        model = load_reid_model(checkpoint, device, flip=flip, select=select)
        if model.config.get("store_fingerprint") != opened.fingerprint:
            click.echo(f"Note: {checkpoint} was trained on another store (fingerprint {model.config.get('store_fingerprint')})", err=True)
    if refine_run:
        from reidkit.evaluation.refinement import check_refinable

        check_refinable(opened, protocols)  # before extracting anything
    features, index = resolve_features(opened, features_path=features_path, checkpoint=checkpoint, model=model,
                                       protocols=[p.name for p in _selected(opened, protocols)],
                                       flip=refine_flip if refine_run else model.flip if model is not None else None)
    from reidkit.evaluation.sharded import rank_and_world

    if rank_and_world()[0] != 0:
        return  # rank 0 ranks, scores and reports for everyone
    if save_features:
        from reidkit.evaluation.features import save_features as write_features

        write_features(save_features, features, index, flip=refine_flip if refine_run else model.flip)
        click.echo(f"Wrote features {save_features}", err=True)
    if refine_run:
        from reidkit.evaluation.refinement import evaluate_refined

        results = evaluate_refined(model, opened, features, index, refine_run, [p.name for p in _selected(opened, protocols)],
                                   variants=refine_variants, top=refine_top, flip=refine_flip)
        annotate(results, model, recorded, opened)
        for r in results.values():
            r["flip"] = bool(refine_flip)  # refinement's own flip, for query, gallery and variants
        if as_json:
            click.echo(json.dumps(json_rows(results), indent=2))
        else:
            print_table(results, f"{opened.path.name} ({opened.dataset}): cosine, DLCR refinement with '{refine_run}' "
                                 f"(K={refine_variants}, top {refine_top}){model_setting(model, refine_flip)}")
            print_recorded_best(recorded, list(results))
        if plot:
            from reidkit.evaluation.plots import write_cmc_plot

            write_cmc_plot(results, plot, title=plot_title(opened, f"refined with {refine_run}", feature_source(checkpoint, features_path)))
        return
    settings = {"k1": k1, "k2": k2, "lambda": lambda_} if rerank else None
    run_evaluation(opened, features, index, protocols, distance, settings, device, seed, as_json, plot,
                   source=feature_source(checkpoint, features_path), model=model, recorded_best=recorded,
                   aqe=aqe_settings, verification=verification, ranks=rank_settings, ranks_out=ranks_out)


def check_rank_options(ranks, ranks_queries, ranks_k, ranks_out, refine_run=None) -> dict | None:
    """The ranked-list settings ({n, k, queries}) or None; usage errors for inconsistent options."""
    from reidkit.errors import ReidkitError
    from reidkit.evaluation.ranked_lists import parse_queries

    try:
        queries = parse_queries(ranks_queries)
    except ReidkitError as exc:
        raise click.UsageError(str(exc)) from None
    wanted = ranks is not None or queries is not None
    if wanted and ranks_out is None:
        raise click.UsageError("--ranks / --ranks-queries need --ranks-out FILE.png (where the ranked lists are drawn)")
    if ranks_out is not None and not wanted:
        raise click.UsageError("--ranks-out needs --ranks N (the worst N queries by AP) or --ranks-queries i,j,k")
    if not wanted:
        return None
    if refine_run:
        raise click.UsageError("--ranks / --ranks-queries are not available with --refine")
    if ranks is not None and queries is not None and ranks != len(queries):
        raise click.UsageError(f"--ranks {ranks} but --ranks-queries names {len(queries)} queries: give one, or make them agree")
    if not Path(ranks_out).parent.is_dir():
        raise click.UsageError(f"the folder of --ranks-out does not exist: {Path(ranks_out).parent}")
    return {"n": len(queries) if queries is not None else ranks, "k": ranks_k, "queries": queries}


def feature_source(checkpoint=None, features_path=None) -> str | None:
    """What the plot title names as the features' origin: the checkpoint folder's name, else the features file's."""
    if checkpoint is not None:
        return f"checkpoint {Path(checkpoint).resolve().name}"
    return f"features {Path(features_path).name}" if features_path is not None else None


def plot_title(store, setting: str, source=None) -> str:
    """CMC plot title: the model (checkpoint) or features plotted, the dataset, the scoring."""
    return f"{source} on {store.dataset}: {setting}" if source else f"{store.dataset}: {setting}"


def _selected(store, protocols):
    from reidkit.evaluation.protocols import select_protocols

    return select_protocols(store, protocols)
