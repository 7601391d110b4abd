"""The trainer's seams: a strategy's own hooks see the run's events in order, a hook that only looks changes nothing,
and prepare_run / restore work as steps of their own."""
import pytest
import torch
from safetensors.torch import load_file
from tests.train_helpers import make_store, tiny_config

from reidkit.errors import ReidkitError
from reidkit.training import checkpoint as ckpt
from reidkit.training.distributed import Context
from reidkit.training.engine import train
from reidkit.training.hooks import Hook, build_hooks
from reidkit.training.model import build_model
from reidkit.training.trainer import Trainer, prepare_run, restore


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("world"))


class Recorder(Hook):
    """Writes down each event with what the trainer shows at that moment."""

    def __init__(self):
        self.events, self.steps = [], []

    def before_train(self):
        self.events.append(("before_train", self.trainer.start_epoch))

    def before_epoch(self, epoch):
        self.events.append(("before_epoch", epoch))

    def after_step(self):
        self.steps.append(self.trainer.stats.steps)

    def after_epoch(self, epoch):
        logged = (self.trainer.out / "log.csv").read_text().splitlines()
        # the engine's hooks ran first: the row is this epoch's and log.csv already holds it
        self.events.append(("after_epoch", epoch, self.trainer.row["epoch"], len(logged) - 1))

    def after_train(self):
        self.events.append(("after_train",))


class Onlooker(Hook):
    """Reads the model, the row and the batches' counters at every event and changes nothing."""

    def __init__(self):
        self.seen = []

    def before_epoch(self, epoch):
        self.seen.append(ckpt.parameter_checksum(self.trainer.model))

    def after_step(self):
        self.seen.append(float(sum(p.detach().sum() for p in self.trainer.model.parameters())))

    def after_epoch(self, epoch):
        self.seen.append(dict(self.trainer.row))


def _with_strategy_hooks(monkeypatch, *hooks):
    """The baseline strategy, for this test only, with a hooks(trainer) member returning ``hooks``."""
    from reidkit.plugins.strategies.baseline import BaselineStrategy

    monkeypatch.setattr(BaselineStrategy, "hooks", lambda self, trainer: list(hooks), raising=False)


def test_built_in_hooks_run_in_the_engine_order():
    names = [type(h).__name__ for h in build_hooks({"check_sync": True}, timings=[])]
    assert names == ["LRScheduler", "RankChecksums", "InTrainingEval", "WriteLog", "Checkpointer", "Timings"]
    assert [type(h).__name__ for h in build_hooks({})] == ["LRScheduler", "InTrainingEval", "WriteLog", "Checkpointer"]


def test_a_strategy_hook_sees_every_event_in_order(world, tmp_path, monkeypatch):
    recorder = Recorder()
    _with_strategy_hooks(monkeypatch, recorder)
    summary = train(world, tiny_config("baseline", epochs=2), tmp_path / "run", progress=False, max_steps=2)
    assert summary["epochs_run"] == 2
    assert recorder.events == [("before_train", 0), ("before_epoch", 0), ("after_epoch", 0, 1, 1),
                               ("before_epoch", 1), ("after_epoch", 1, 2, 2), ("after_train",)]
    assert recorder.steps == [1, 2, 1, 2]  # after_step follows each step, counted from 1 in each epoch


def test_a_resumed_run_starts_its_hooks_at_the_next_epoch(world, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(world, tiny_config("baseline", epochs=1), run, progress=False, max_steps=1)
    recorder = Recorder()
    _with_strategy_hooks(monkeypatch, recorder)
    train(world, tiny_config("baseline", epochs=2), run, resume=True, progress=False, max_steps=1)
    assert recorder.events == [("before_train", 1), ("before_epoch", 1), ("after_epoch", 1, 2, 2), ("after_train",)]


def test_a_hook_that_changes_nothing_leaves_the_weights_identical(world, tmp_path):
    config = dict(epochs=2, check_sync=True)
    plain = train(world, tiny_config("baseline", **config), tmp_path / "plain", progress=False, max_steps=2)
    onlooker = Onlooker()
    watched = Trainer(world, tiny_config("baseline", **config), tmp_path / "watched", progress=False, max_steps=2,
                      hooks=[onlooker]).train()
    assert len(onlooker.seen) == 2 * (1 + 2 + 1)  # it did look: before each epoch, after each step, after each epoch
    assert watched["checksum"] == plain["checksum"]
    assert [row["epoch"] for row in onlooker.seen if isinstance(row, dict)] == [1, 2]
    ranks = "ranks/rank-0.json"  # check_sync's per-epoch hashes (the RankChecksums hook): the same epoch by epoch
    assert (tmp_path / "watched" / ranks).read_text() == (tmp_path / "plain" / ranks).read_text()
    assert (tmp_path / "watched" / "model.safetensors").read_bytes() == (tmp_path / "plain" / "model.safetensors").read_bytes()
    # the checkpoint's training state too: the random stream (which the weights here never use) and the optimiser
    states = [ckpt.load_state(ckpt.latest_checkpoint(tmp_path / run)) for run in ("plain", "watched")]
    assert torch.equal(states[0]["torch_rng"], states[1]["torch_rng"])
    assert states[0]["scheduler"] == states[1]["scheduler"] and states[0]["optimizer"]["state"].keys() == states[1]["optimizer"]["state"].keys()


def test_a_strategy_hook_that_is_not_a_hook_is_refused(world, tmp_path, monkeypatch):
    _with_strategy_hooks(monkeypatch, object())
    with pytest.raises(ReidkitError, match=r"training hooks must be reidkit\.training\.hooks\.Hook objects \(got object\)"):
        train(world, tiny_config("baseline"), tmp_path / "run", progress=False, max_steps=1)


def test_prepare_run_and_restore_are_steps_of_their_own(world, tmp_path):
    out = tmp_path / "run"
    train(world, tiny_config("baseline", epochs=1), out, progress=False, max_steps=1)
    with pytest.raises(ReidkitError, match="already holds a training run: use --resume"):
        prepare_run(world, tiny_config("baseline", epochs=1), out)
    run = prepare_run(world, tiny_config("baseline", epochs=2), out, resume=True)
    assert run.checkpoint.name == "epoch-0001" and run.config["epochs"] == 2  # epochs may change on resume
    assert run.config["data"]["num_classes"] == run.items.num_classes and run.config["world_size"] == 1
    model, strategy = build_model(run.config, run.items.num_classes, run.items.num_clothes, run.items.clothes_of_class)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, strategy.lr_factor)
    start, state = restore(run, model, optimizer, scheduler, {}, Context())
    assert start == 1 and state["epoch"] == 0
    saved = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    fresh = prepare_run(world, tiny_config("baseline"), tmp_path / "fresh")
    assert fresh.checkpoint is None and restore(fresh, model, optimizer, scheduler, {}, Context()) == (0, None)
