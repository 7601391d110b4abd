"""The ``reid-confidence`` filter: keep a generated image when a Re-ID model still sees the source person.

Score: p(source person | image), the softmax of the model's identity
classifier over its training identities; kept when p >= ``tau``. Any object
with ``identity_probs(images) -> N x C array`` and ``label_of_pid``
(person id -> column) works; from the CLI it is a ``reidkit train`` output
folder (``checkpoint``), loaded with reidkit.evaluation.inference.load_reid_model.

Also recorded (not used to decide): ``centroid_cos``, the cosine similarity
between the image's feature and the centroid of the source person's real
training features (mean of L2-normalised features of up to
``centroid_images`` images, the first in store order), when the model has
``features(images)``. methods.md section 2 asks for both scores.
"""
from __future__ import annotations

import numpy as np

from reidkit.contracts import Setting
from reidkit.errors import ReidkitError
from reidkit.generation.contracts import Verdict


class ReidConfidenceFilter:
    defaults = {"checkpoint": "", "tau": 0.5, "report_taus": [0.1, 0.3, 0.5, 0.7, 0.9], "batch_size": 64, "centroid_images": 32}
    settings_spec = {
        "checkpoint": Setting(str, "a 'reidkit train' output folder (required from the command line)"),
        "tau": Setting(float, "kept when p(source person) >= tau", min=0, max=1),
        "report_taus": Setting(list, "thresholds whose pass rates the summary reports", item=float, min=0),
        "batch_size": Setting(int, "images per model call", min=1),
        "centroid_images": Setting(int, "real images per person in the centroid of centroid_cos (0: no centroid score)", min=0),
    }

    def __init__(self, settings, device, store):
        self.settings = settings
        self.device = device
        self.store = store
        self.model = None  # a library caller may hand in a model object instead of a checkpoint
        self._centroids = {}

    def check(self, store):
        """Before anything is written: the checkpoint must be a finished training run (its model loads later)."""
        if self.model is not None:
            return
        if not self.settings["checkpoint"]:
            raise ReidkitError("filter 'reid-confidence' needs a model: --filter reid-confidence:checkpoint=TRAIN_OUTPUT_DIR")
        from pathlib import Path

        from reidkit.training.checkpoint import MODEL_FILE, read_config

        config = read_config(self.settings["checkpoint"])
        if not isinstance(config, dict) or "data" not in config:
            raise ReidkitError(f"{self.settings['checkpoint']}/config.yaml is not a training run's configuration (no 'data')")
        if not (Path(self.settings["checkpoint"]) / MODEL_FILE).is_file():
            raise ReidkitError(f"{self.settings['checkpoint']} has no {MODEL_FILE} yet (training has not finished an epoch)")

    def load(self):
        if self.model is not None:
            return self.model
        if not self.settings["checkpoint"]:
            raise ReidkitError("filter 'reid-confidence' needs a model: --filter reid-confidence:checkpoint=TRAIN_OUTPUT_DIR")
        from reidkit.devices import torch_device
        from reidkit.evaluation.inference import load_reid_model

        self.model = load_reid_model(self.settings["checkpoint"], torch_device(self.device))
        return self.model

    def judge(self, items, outputs, nonfinite):
        model = self.load()
        known = [int(it.pid) in model.label_of_pid for it in items]
        if not any(known):
            raise ReidkitError(f"filter 'reid-confidence': the model knows none of these persons (e.g. id {items[0].pid}); "
                               "it must be trained on the split being expanded")
        probs = np.asarray(model.identity_probs(list(outputs)))
        feats = None
        if int(self.settings["centroid_images"]) > 0 and hasattr(model, "features"):
            feats = _unit(np.asarray(model.features(list(outputs)), dtype=np.float64))
        tau = float(self.settings["tau"])
        verdicts = []
        for row, (it, ok) in enumerate(zip(items, known)):
            if not ok:
                verdicts.append(Verdict(False, "person unknown to the Re-ID model", {"p": None}))
                continue
            p = float(probs[row, model.label_of_pid[int(it.pid)]])
            top = int(np.argmax(probs[row]))
            scores = {"p": round(p, 6), "top1": top == model.label_of_pid[int(it.pid)]}
            if feats is not None:
                scores["centroid_cos"] = round(float(feats[row] @ self._centroid(model, int(it.pid))), 6)
            verdicts.append(Verdict(True, "", scores) if p >= tau else Verdict(False, f"p(source id) {p:.3f} < tau {tau}", scores))
        return verdicts

    def _centroid(self, model, pid: int) -> np.ndarray:
        """Unit mean of the unit features of the person's first real training images (cached per person)."""
        if pid not in self._centroids:
            train = self.store.split("train")
            idx = train[(self.store.pid[train] == pid) & ~self.store.junk[train]][: int(self.settings["centroid_images"])]
            feats = _unit(np.asarray(model.features([self.store.image(i) for i in idx]), dtype=np.float64))
            self._centroids[pid] = _unit(feats.mean(0, keepdims=True))[0]
        return self._centroids[pid]

    def pass_rates(self, all_scores) -> dict:
        """Share of scored items that each tau of ``report_taus`` would keep (``all_scores``: this filter's scores)."""
        ps = [s.get("p") for s in all_scores]
        ps = np.array([p for p in ps if p is not None], float)
        if len(ps) == 0:
            return {}
        return {str(t): float((ps >= float(t)).mean()) for t in self.settings["report_taus"]}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
