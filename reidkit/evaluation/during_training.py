"""Evaluation as training asks for it: the trainer (reidkit.training) never imports evaluation; the command that
starts a run hands it a :class:`TestSetEvaluator`, which its InTrainingEval hook calls every ``eval_every`` epochs."""
from __future__ import annotations

from reidkit.evaluation.inference import ReidModelRunner
from reidkit.evaluation.protocols import select_protocols
from reidkit.evaluation.runner import evaluate_runner
from reidkit.training.config import default_workers


class TestSetEvaluator:
    """Every protocol of the store's test split with the current weights, test features flipped as the run's
    ``test_flip`` says; the protocols evaluated are ``eval_protocols`` (null: all the store defines)."""

    def protocols(self, store, config: dict) -> list[str]:
        """The names of the protocols evaluated during this run (the best epoch is chosen among them)."""
        return [p.name for p in select_protocols(store, config.get("eval_protocols"))]

    def __call__(self, model, store, config: dict, device: str) -> dict:
        """Protocol name -> its results, the model left in training mode and training's random stream untouched."""
        import torch

        rng = torch.get_rng_state()  # evaluating must not move training's random stream (exact resume)
        model.eval()
        try:
            runner = ReidModelRunner(model, config, device)
            workers = default_workers() if config.get("num_workers") is None else int(config["num_workers"])
            return evaluate_runner(runner, store, protocols=config.get("eval_protocols"), batch_size=config["eval_batch_size"],
                                   num_workers=workers)  # decoding in workers, like training's loader
        finally:
            model.train()
            torch.set_rng_state(rng)
