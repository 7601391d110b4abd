#!/usr/bin/env python
"""Mean and spread of the evaluated metrics of several training runs (their log.csv), one row per arm.

    python scripts/summarise_runs.py 'random=W/ft-random-s*' 'pre-trained=W/ft-pretrained-*-s*' [--epoch 10]

Each ARM=GLOB[|GLOB...] names an arm and the run folders of its seeds. For every epoch at which all runs of an arm
were evaluated (``--eval-every``), or only ``--epoch``, it prints rank-1 and mAP (in %) of the standard and
clothes-changing protocols as mean ± std (sample std, n-1) [min-max] over the runs, as a Markdown table. A glob may
also name ``reidkit eval --json`` outputs (``*.json``: one evaluation each, shown as epoch "eval"), e.g. a model
evaluated on a dataset it never trained on.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import statistics
import sys
from pathlib import Path

METRICS = [("standard_rank1", "standard R1"), ("standard_mAP", "standard mAP"), ("cc_rank1", "cc R1"), ("cc_mAP", "cc mAP")]


def evaluated_rows(run: Path) -> dict:
    """epoch -> log row, for the epochs that carry metrics; an eval --json file: {"eval": its metrics}."""
    if run.suffix == ".json":
        rows = json.loads(run.read_text())
        return {"eval": {f"{r['protocol']}_{k}": r[k] for r in rows for k in ("rank1", "mAP")}}
    with (run / "log.csv").open() as f:
        return {int(r["epoch"]): r for r in csv.DictReader(f) if r.get(METRICS[0][0])}


def train_loss(row: dict) -> float:
    """The row's identity (supervised) or contrastive (cluster-contrast) loss; nan for an evaluation alone."""
    value = row.get("id", row.get("contrast"))
    return float(value) if value not in (None, "") else float("nan")


def cell(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f} [{min(values):.1f}-{max(values):.1f}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="+", metavar="ARM=GLOB[|GLOB...]")
    parser.add_argument("--epoch", type=int, help="only this epoch (default: every epoch all runs of an arm evaluated)")
    args = parser.parse_args(argv)
    lines = ["| arm | epoch | runs | " + " | ".join(name for _, name in METRICS) + " | train loss |",
             "|---|---|---|" + "---|" * (len(METRICS) + 1)]
    for spec in args.arms:
        arm, _, pattern = spec.partition("=")
        runs = sorted({Path(p) for pat in pattern.split("|") for p in glob.glob(pat)
                       if (Path(p) / "log.csv").is_file() or (p.endswith(".json") and Path(p).is_file())})
        if not runs:
            print(f"{arm}: no run folder with a log.csv matches {pattern}", file=sys.stderr)
            return 2
        logs = [evaluated_rows(r) for r in runs]
        epochs = sorted(set.intersection(*(set(log) for log in logs)), key=str)
        if args.epoch is not None:
            epochs = [e for e in epochs if e == args.epoch]
        if not epochs:
            print(f"{arm}: no epoch evaluated in all of {', '.join(map(str, runs))}", file=sys.stderr)
            return 2
        for epoch in epochs:
            cells = [cell([100 * float(log[epoch][key]) for log in logs]) if all(key in log[epoch] for log in logs) else "-"
                     for key, _ in METRICS]
            loss = statistics.fmean(train_loss(log[epoch]) for log in logs)
            lines.append(f"| {arm} | {epoch} | {len(runs)} | " + " | ".join(cells) + f" | {loss:.2f} |")
        print(f"{arm}: {', '.join(r.name for r in runs)}", file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
