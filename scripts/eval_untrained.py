#!/usr/bin/env python
"""The floor of a study: a run's network with fresh initial weights (never trained), evaluated on a store.

    python scripts/eval_untrained.py STORE RUN [--seed S] [--flip/--no-flip]

Builds RUN's network from its config.yaml with torch seeded by S (no weights loaded: what training would start
from without --init-from) and prints ``reidkit eval --json``'s rows, so scripts/summarise_runs.py reads it like
any evaluation.
"""
from __future__ import annotations

import click


@click.command()
@click.argument("store")
@click.argument("run")
@click.option("--seed", default=0, show_default=True)
@click.option("--flip/--no-flip", default=False, show_default=True)
def main(store, run, seed, flip):
    import torch

    from reidkit.commands.eval import annotate, json_rows
    from reidkit.evaluation.inference import load_reid_model
    from reidkit.evaluation.runner import evaluate_runner
    from reidkit.store import open_store
    from reidkit.training.model import build_model

    runner = load_reid_model(run, "cpu", flip=flip)
    data = runner.config["data"]
    torch.manual_seed(seed)
    runner.model, _ = build_model(runner.config, data["num_classes"], data["num_clothes"], data["clothes_of_class"])
    runner.model.eval()
    runner.weights, runner.epoch = "untrained", None
    with open_store(store) as s:
        results = evaluate_runner(runner, s)
        annotate(results, runner, None, s)
    click.echo(__import__("json").dumps(json_rows(results), indent=2))


if __name__ == "__main__":
    main()
