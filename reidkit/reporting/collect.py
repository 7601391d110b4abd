"""What a report shows about one training run, read from its folder (and its store, when it can be opened)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from reidkit.errors import ReidkitError

# log.csv columns that are not losses; evaluation columns end in _rank1 / _mAP
BOOKKEEPING = {"epoch", "lr", "images", "seconds", "images_per_s", "data_wait_share", "variant_pool"}
METRIC_SUFFIXES = ("_rank1", "_mAP")


@dataclass
class GeneratedSummary:
    """A generated run the model trained with: its provenance and a few originals beside their variants."""

    name: str
    info: dict
    items: int
    kept: int
    sheet: object = None  # RGB uint8 array (contact sheet) or None when the run has no kept items
    audit: dict | None = None  # 'reidkit audit' JSON in its default folder (STORE.parts/audits/NAME), when there is one
    audit_histogram: bytes | None = None  # that audit's identity histogram (PNG)


@dataclass
class RunSummary:
    name: str
    path: Path
    config: dict
    log: list[dict] = field(default_factory=list)
    results: dict | None = None  # protocol -> metrics (evaluation.evaluate_store's rows), the last epoch's weights
    best: dict | None = None  # the best epoch training kept on the test set (RUN/best/best.json), when eval_every was set
    generated: list[GeneratedSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be shown, and why
    ranked: object = None  # RGB uint8 array: ranked lists of the worst queries (evaluation.ranked_lists), or None

    def loss_columns(self) -> list[str]:
        columns = list(self.log[0]) if self.log else []
        return [c for c in columns if c not in BOOKKEEPING and not c.endswith(METRIC_SUFFIXES)]

    def metric_columns(self) -> list[str]:
        return [c for c in (list(self.log[0]) if self.log else []) if c.endswith(METRIC_SUFFIXES)]


def read_log(path: Path) -> list[dict]:
    """log.csv as rows of floats (an empty cell stays None)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))

    def number(v):
        try:
            return float(v) if v not in (None, "") else None
        except ValueError:
            return None

    return [{k: number(v) for k, v in row.items()} for row in rows]


def collect_run(run_dir, store_path=None, evaluate=True, device="cpu", sheet_rows=4, seed=0, echo=None) -> RunSummary:
    """Everything the page shows about ``run_dir``; the store comes from its config.yaml unless ``store_path`` is given."""
    from reidkit.training.checkpoint import read_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ReidkitError(f"{run_dir} is not a 'reidkit train' run folder (no config.yaml)")
    config = read_config(run_dir)
    from reidkit.training.selection import read_best

    summary = RunSummary(name=run_dir.resolve().name, path=run_dir, config=config, log=read_log(run_dir / "log.csv"),
                         best=read_best(run_dir))
    store = _open_store(store_path or config.get("store"), config, summary)
    if store is None:
        return summary
    if evaluate:
        if (run_dir / "model.safetensors").is_file():
            if echo:
                echo(f"evaluating {summary.name} on {store.path.name}")
            summary.results = evaluate_run(run_dir, store, device)
            summary.ranked = ranked_picture(store, summary.results)
        else:
            summary.notes.append("no model.safetensors yet: nothing to evaluate")
    for name in config.get("generated") or []:
        summary.generated.append(_generated(store, name, sheet_rows, seed, summary))
    return summary


def _open_store(path, config, summary):
    from reidkit.store import open_store

    if not path:
        summary.notes.append("config.yaml names no store: results and generated images are not shown")
        return None
    if not Path(path).is_file():
        summary.notes.append(f"store {path} not found (give --store): results and generated images are not shown")
        return None
    store = open_store(path)
    if config.get("store_fingerprint") and store.fingerprint != config["store_fingerprint"]:
        summary.notes.append(f"store {path} has fingerprint {store.fingerprint}, the run was trained on {config['store_fingerprint']}")
    return store


REPORT_RANKS = {"n": 5, "k": 10, "queries": None}  # the report's ranked lists: the 5 worst queries by AP, top 10


def evaluate_run(run_dir, store, device="cpu") -> dict:
    """The run's model on every protocol of the store (its test_flip, cosine: as 'reidkit eval --checkpoint'),
    with ranked lists of the worst queries (``REPORT_RANKS``)."""
    from reidkit.evaluation.inference import load_reid_model
    from reidkit.evaluation.runner import evaluate_runner

    return evaluate_runner(load_reid_model(run_dir, device), store, ranks=REPORT_RANKS)


def ranked_picture(store, results):
    """The ranked-lists picture of ``results`` (as 'reidkit eval --ranks 5 --ranks-out'), or None."""
    from reidkit.evaluation.ranked_lists import picture

    return picture(store, results or {}, REPORT_RANKS)


def _generated(store, name, rows, seed, summary) -> GeneratedSummary:
    from reidkit.generation.contact_sheet import kept_rows, render_sheet

    if name not in store.runs():
        summary.notes.append(f"generated run '{name}' is not in {store.path.name}")
        return GeneratedSummary(name, {}, 0, 0)
    run = store.run(name)
    kept = run.kept() if run.files else []
    grid = kept_rows(store, run, rows, seed)  # the demo's contact sheet, drawn smaller
    sheet = render_sheet(grid, height=128, width=64) if grid else None
    from reidkit.evaluation.audit import HISTOGRAM_PNG, find_audit

    found = find_audit(store, name)  # the audit written to its default folder, if any (docs/audit.md)
    audit, histogram = (found[0], _read_bytes(found[1] / HISTOGRAM_PNG)) if found else (None, None)
    return GeneratedSummary(name, dict(run.info), int(len(kept)), int(sum(kept)), sheet, audit, histogram)


def _read_bytes(path):
    try:
        return Path(path).read_bytes()
    except OSError:
        return None
