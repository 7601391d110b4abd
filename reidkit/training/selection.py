"""Model selection on the test set, kept beside the last epoch and labelled as such.

CAL and DLCR evaluate on the test set every few epochs and report the checkpoint with the best rank-1
(methods.md 1.6). Choosing on test data flatters a result, so reidkit reports the last epoch; with
``eval_every`` it also keeps the best epoch (strictly greater rank-1 of ``select_protocol``, so the earliest
wins ties, as CAL's ``rank1 > best_rank1``):

- ``RUN/best/``: ``model.safetensors`` (metadata ``epoch``, 0-based like the run's) and ``best.json`` (epoch,
  protocol, metrics of every evaluated protocol), replaced as one folder;
- ``RUN/selection.json``: the best epoch's metrics beside the last evaluated epoch's.

The record travels in every checkpoint's state (``selection``), so ``--resume`` knows the best so far. ``best/``
is published right after the checkpoint that first holds the record (the weights of a best epoch between two
checkpoints ride in that checkpoint as ``best.safetensors``), so ``best/`` never runs ahead of the checkpoint a
resume starts from, and a kill between the two is repaired from the checkpoint on resume.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from reidkit.errors import ReidkitError
from reidkit.training import checkpoint as ckpt

BEST_DIR, BEST_FILE, SELECTION_FILE = "best", "best.json", "selection.json"
CHECKPOINT_BEST = "best.safetensors"  # a best epoch's weights inside the next checkpoint folder (when not its own epoch)
CHOSEN_ON = "test set"
NOTE = ("best epoch chosen on the test set (as CAL and DLCR report it); choosing on test data flatters a result: "
        "the run's result is the last epoch")
METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP", "valid_queries", "queries", "gallery")


def selection_protocol(evaluated: list[str], config: dict, store_path) -> str:
    """The protocol whose rank-1 picks the best epoch among those ``evaluated`` during training: ``select_protocol``,
    else ``cc`` where evaluated (CAL's ``test()`` returns the clothes-changing rank-1 for LTCC and PRCC), else
    ``standard``, else the first evaluated."""
    chosen = config.get("select_protocol")
    if chosen is not None:
        if not isinstance(chosen, str) or chosen not in evaluated:
            where = "evaluated during training (eval_protocols)" if config.get("eval_protocols") else f"defined by store {store_path}"
            raise ReidkitError(f"setting 'select_protocol': {chosen!r} is not a protocol {where} (choose one of: {', '.join(evaluated)})")
        return chosen
    return next((name for name in ("cc", "standard") if name in evaluated), evaluated[0])


def metrics_of(results: dict) -> dict:
    """Plain numbers of every protocol's result (what best.json and checkpoints hold; no CMC curve)."""
    return {p: {k: (int(r[k]) if k in ("valid_queries", "queries", "gallery") else float(r[k])) for k in METRICS if k in r}
            for p, r in results.items()}


def best_dir(run_dir) -> Path | None:
    """The run's ``best/`` folder, or the previous one a kill left while swapping it in; None without one."""
    run_dir = Path(run_dir)
    for folder in (run_dir / BEST_DIR, run_dir / f".{BEST_DIR}.old"):
        if (folder / BEST_FILE).is_file():
            return folder
    return None


def read_best(run_dir) -> dict | None:
    """best.json of the run (epoch 1-based, protocol, rank1, metrics per protocol, chosen_on), or None."""
    folder = best_dir(run_dir)
    if folder is None:
        return None
    try:
        return json.loads((folder / BEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ReidkitError(f"{folder / BEST_FILE} is unreadable ({type(exc).__name__}); remove {folder} or retrain") from None


def write_best(run_dir, weights_file, record: dict):
    """Publish ``best/`` (the weights, hard-linked where possible, and best.json) as one folder: built hidden,
    then swapped in (the old one renamed aside first, so a kill leaves one of them whole)."""
    from reidkit.store import atomic

    run_dir = Path(run_dir)
    final, partial, old = run_dir / BEST_DIR, run_dir / f".{BEST_DIR}.partial", run_dir / f".{BEST_DIR}.old"
    shutil.rmtree(partial, ignore_errors=True)  # left by a kill: never read
    partial.mkdir()
    try:  # checkpoint files are only ever replaced, never edited: a link is a safe copy
        os.link(weights_file, partial / "model.safetensors")
    except OSError:
        shutil.copyfile(weights_file, partial / "model.safetensors")
    (partial / BEST_FILE).write_text(json.dumps({**record, "chosen_on": CHOSEN_ON, "note": NOTE}, indent=2, sort_keys=True))
    for f in (partial / "model.safetensors", partial / BEST_FILE, partial):
        atomic.fsync_path(f)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(partial, final)
    atomic.fsync_path(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_selection(run_dir, selection: dict):
    """``selection.json``: the best epoch's metrics beside the last evaluated epoch's, labelled."""
    from reidkit.store.atomic import write_json_atomic

    record, last = selection["record"], selection.get("last")
    write_json_atomic(Path(run_dir) / SELECTION_FILE, {
        "chosen_on": CHOSEN_ON, "note": NOTE, "select_protocol": record["protocol"],
        "criterion": "rank1 of select_protocol, strictly greater (the earliest epoch wins ties)",
        "best": {"epoch": record["epoch"], "metrics": record["metrics"], "folder": BEST_DIR},
        "last_evaluated": last})


class BestEpoch:
    """The best epoch so far during training (rank 0 keeps and writes it; other ranks only carry the protocol)."""

    def __init__(self, out, config: dict, store, main: bool, restored: dict | None = None, checkpoint=None,
                 evaluated: list[str] = ()):
        self.out, self.main = Path(out), main
        self.protocol = selection_protocol(list(evaluated), config, store.path) if config.get("eval_every") else None
        self.record = (restored or {}).get("record")  # {"epoch": 1-based, "protocol", "rank1", "metrics"}
        self.last = (restored or {}).get("last")
        self.pending = None  # CPU weights of a best epoch not yet handed to a checkpoint
        if self.protocol and self.record and self.record["protocol"] != self.protocol:
            raise ReidkitError(f"--resume: the best epoch so far was chosen on protocol '{self.record['protocol']}', now it would be "
                               f"'{self.protocol}' (set select_protocol: {self.record['protocol']}, and evaluate it)")
        if main:
            self._repair(checkpoint)

    def _repair(self, checkpoint):
        """Make best/ agree with the record of the checkpoint training starts from."""
        on_disk = read_best(self.out)
        if self.record is None:
            if on_disk is not None:  # a fresh start in a folder that held a run's best: it no longer describes this run
                for name in (BEST_DIR, f".{BEST_DIR}.old"):
                    shutil.rmtree(self.out / name, ignore_errors=True)
                (self.out / SELECTION_FILE).unlink(missing_ok=True)
            return
        if on_disk is not None and on_disk.get("epoch") == self.record["epoch"]:
            if best_dir(self.out).name != BEST_DIR:
                os.rename(best_dir(self.out), self.out / BEST_DIR)  # a kill mid-swap: the old one was still the right one
            return
        # a kill after the checkpoint was published and before best/ followed it: the checkpoint holds the weights
        source = Path(checkpoint) / CHECKPOINT_BEST
        if not source.is_file() and int(self.record["epoch"]) == _checkpoint_epoch(checkpoint):
            source = Path(checkpoint) / "model.safetensors"
        if not source.is_file():
            print(f"Warning: {self.out / BEST_DIR} does not hold the best epoch so far ({self.record['epoch']}) and "
                  f"{checkpoint} has no copy; it is replaced at the next better epoch", file=sys.stderr)
            return
        write_best(self.out, source, self.record)
        write_selection(self.out, {"record": self.record, "last": self.last})

    def update(self, epoch: int, results: dict, model):
        """After an evaluation (rank 0): a strictly greater rank-1 of the selection protocol makes ``epoch`` the best."""
        if not self.protocol or self.protocol not in results:
            return
        metrics = metrics_of(results)
        self.last = {"epoch": epoch + 1, "metrics": metrics}
        rank1 = float(results[self.protocol]["rank1"])
        if self.record is None or rank1 > float(self.record["rank1"]):
            self.record = {"epoch": epoch + 1, "protocol": self.protocol, "rank1": rank1, "metrics": metrics}
            self.pending = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}

    def attach(self, snap: dict):
        """Put the record (and a pending best's weights) into a checkpoint snapshot (rank 0, before it is written)."""
        if self.record is None:
            return
        snap["state"]["selection"] = {"record": dict(self.record), "last": self.last}
        if self.pending is not None:
            # the checkpoint's own weights otherwise (never those of one written inside an epoch)
            if int(self.record["epoch"]) != snap["epoch"] + 1 or snap.get("step") is not None:
                snap.setdefault("more_weights", {})[CHECKPOINT_BEST] = (self.pending, {"epoch": str(self.record["epoch"] - 1),
                                                                                      "format": "reidkit"})
            snap["best_changed"] = True
            self.pending = None

    def publish(self, snap: dict):
        """After the checkpoint is on disk (the writer thread): best/ from it when the best changed, selection.json."""
        selection = snap["state"].get("selection")
        if not selection:
            return
        if snap.get("best_changed"):
            folder = self.out / ckpt.CHECKPOINTS / ckpt.folder_name(snap["epoch"], snap.get("step"))
            source = folder / (CHECKPOINT_BEST if CHECKPOINT_BEST in snap.get("more_weights", {}) else "model.safetensors")
            write_best(self.out, source, selection["record"])
        write_selection(self.out, selection)


def _checkpoint_epoch(checkpoint) -> int:
    """1-based epoch of a checkpoint folder (``epoch-NNNN``), -1 for another folder."""
    name = Path(checkpoint).name if checkpoint is not None else ""
    return int(name[6:]) if name.startswith("epoch-") and name[6:].isdigit() else -1
