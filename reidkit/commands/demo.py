"""``reidkit demo``: the whole story on the synthetic world, with no downloads."""
from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", "out", type=click.Path(file_okay=False), default="demo-output", show_default=True,
              help="Folder for the store, runs, results.json, contact sheet and CMC plots (reused on rerun).")
@click.option("--quick", is_flag=True, help="Smoke test only: a 12-person world and 2 epochs per model, so its numbers mean nothing (used by the "
                                         "tests). Measured on 2 busy CPU cores: about 30 s with --seeds 0, about 75 s with the default 3 seeds.")
@click.option("--base", type=click.Choice(["baseline", "cal"]), default="cal", show_default=True,
              help="Model trained without and with the expansion (progressive learning on top of it).")
@click.option("--epochs", type=int, default=None, help="Training epochs of each model.")
@click.option("--variants", type=int, default=None, help="Generated images per training image.")
@click.option("--backbone", default=None, help="timm model name (default resnet10t).")
@click.option("--ids", type=int, default=None, help="Persons in the synthetic world.")
@click.option("--lr", type=float, default=None, help="Learning rate of both models (default 1e-3: training from scratch).")
@click.option("--no-refine", is_flag=True, help="Skip DLCR test-time refinement rows.")
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Comma-separated run seeds: each draws its own expansion, query variants and training; the table shows mean ± std.")
@click.option("--num-workers", type=int, default=0, show_default=True, help="Data-loading processes.")
def demo(out, quick, base, epochs, variants, backbone, ids, lr, no_refine, seeds, num_workers):
    """Adapt the synthetic world, expand it with recolor, train a model with and without the
    expansion, evaluate both (standard and clothes-changing) and print them side by side."""
    from reidkit.demo import run_demo

    overrides = {k: v for k, v in {"epochs": epochs, "variants": variants, "backbone": backbone, "ids": ids, "lr": lr}.items() if v is not None}
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, e.g. 0,1,2; got '{seeds}'", param_hint="--seeds") from None
    def first_seed(seed, models, seconds):  # its table at once; the mean over every seed follows when all are done
        if len(seed_list) > 1 and seed == seed_list[0]:
            print_comparison({"models": models, "seeds": [seed]})
            click.echo(f"(seed {seed} after {seconds:.0f} s; seeds {', '.join(map(str, seed_list[1:]))} follow, then the "
                       "mean ± std over all seeds)")

    summary = run_demo(out, quick=quick, seeds=seed_list, base=base, refine=not no_refine, workers=num_workers, overrides=overrides,
                       echo=lambda m: click.echo(m, err=True), on_seed=first_seed)
    print_comparison(summary)
    click.echo(f"results: {out}/results.json; contact sheet and CMC plots: " + ", ".join(summary["files"]))
    click.echo(f"total {summary['seconds']:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings"].items()) + ")")


def print_comparison(summary: dict):
    from rich.console import Console
    from rich.table import Table

    seeds = summary.get("seeds", [])
    protocols = list(next(iter(summary["models"].values())))
    several = len(seeds) > 1
    title = "synthetic world: without vs with generated data"
    title += f" (mean ± std over seeds {', '.join(map(str, seeds))})" if several else f" (seed {seeds[0]})" if seeds else ""
    table = Table(title=title)
    table.add_column("model")
    for p in protocols:
        table.add_column(f"{p} R1", justify="right")
        table.add_column(f"{p} mAP", justify="right")

    def cell(name, p, m):
        value = f"{100 * summary['models'][name][p][m]:.1f}"
        return value + (f" ± {100 * summary['spread'][name][p][m]['std']:.1f}" if several else "")

    for name in summary["models"]:
        table.add_row(name, *(cell(name, p, m) for p in protocols for m in ("rank1", "mAP")))
    Console().print(table)
