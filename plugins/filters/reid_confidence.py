"""The ``reid-confidence`` filter: keep a generated image when a Re-ID model still sees the source person.

Score: p(source person | image), the softmax of the model's identity
classifier over its training identities; kept when p >= ``tau``. Any object
with ``identity_probs(images) -> N x C array`` and ``label_of_pid``
(person id -> column) works; from the CLI it is a ``reidkit train`` output
folder (``checkpoint``), loaded with reidkit.training.inference.load_reid_model.
"""
from __future__ import annotations

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.generation.contracts import Verdict


class ReidConfidenceFilter:
    defaults = {"checkpoint": "", "tau": 0.5, "report_taus": [0.1, 0.3, 0.5, 0.7, 0.9], "batch_size": 64}

    def __init__(self, settings, device, store):
        self.settings = settings
        self.device = device
        self.model = None  # a library caller may hand in a model object instead of a checkpoint

    def load(self):
        if self.model is not None:
            return self.model
        if not self.settings["checkpoint"]:
            raise ReidkitError("filter 'reid-confidence' needs a model: --filter reid-confidence:checkpoint=TRAIN_OUTPUT_DIR")
        from reidkit.generation.devices import torch_device
        from reidkit.training.inference import load_reid_model

        self.model = load_reid_model(self.settings["checkpoint"], torch_device(self.device))
        return self.model

    def judge(self, items, outputs, nonfinite):
        model = self.load()
        known = [int(it.pid) in model.label_of_pid for it in items]
        if not any(known):
            raise ReidkitError(f"filter 'reid-confidence': the model knows none of these persons (e.g. id {items[0].pid}); "
                               "it must be trained on the split being expanded")
        probs = np.asarray(model.identity_probs(list(outputs)))
        tau = float(self.settings["tau"])
        verdicts = []
        for row, (it, ok) in enumerate(zip(items, known)):
            if not ok:
                verdicts.append(Verdict(False, "person unknown to the Re-ID model", {"p": None}))
                continue
            p = float(probs[row, model.label_of_pid[int(it.pid)]])
            top = int(np.argmax(probs[row]))
            scores = {"p": round(p, 6), "top1": top == model.label_of_pid[int(it.pid)]}
            verdicts.append(Verdict(True, "", scores) if p >= tau else Verdict(False, f"p(source id) {p:.3f} < tau {tau}", scores))
        return verdicts

    def pass_rates(self, all_scores) -> dict:
        """Share of scored items that each tau of ``report_taus`` would keep (``all_scores``: this filter's scores)."""
        ps = [s.get("p") for s in all_scores]
        ps = np.array([p for p in ps if p is not None], float)
        if len(ps) == 0:
            return {}
        return {str(t): float((ps >= float(t)).mean()) for t in self.settings["report_taus"]}
