"""Test-time flip per method (the run's ``test_flip``) and model selection on the test set (``RUN/best``)."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from tests.helpers import one_error_line, run_cli, run_console
from tests.train_helpers import make_store, tiny_config

from reidkit import open_store
from reidkit.errors import ReidkitError
from tests.train_helpers import train

SELECT = dict(eval_every=1, epochs=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("flipsel"))


@pytest.fixture(scope="module")
def cal_run(world):
    out = world.parent / "cal"
    train(world, tiny_config("cal"), out, progress=False, max_steps=1)
    return out


@pytest.fixture(scope="module")
def selected_run(world):
    """BoT baseline (test_flip false), evaluated every epoch for 4 epochs: keeps best/."""
    out = world.parent / "sel"
    train(world, tiny_config("baseline", **SELECT), out, progress=False, max_steps=2)
    return out


def eval_json(world, run, *extra, tmp=None):
    args = ["eval", world, "--checkpoint", run, "--json", *extra]
    if tmp is not None:
        args += ["--save-features", tmp]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def reference_features(run, world, flip):
    from reidkit.evaluation.inference import load_reid_model
    from reidkit.evaluation.runner import eval_indices

    store = open_store(world)
    index = eval_indices(store)
    return load_reid_model(run, "cpu").extract_source(store, index, flip=flip), index


def saved(path):
    with np.load(path) as data:
        return data["features"], data["index"], bool(data["flip"])


def log_rows(run):
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- test-time flip ----------------------------------------------------------------------------------------------
def test_strategies_default_flip_follows_their_reference():
    assert tiny_config("cal")["test_flip"] is True  # CAL's image test averages with the mirror
    assert tiny_config("baseline")["test_flip"] is False  # BoT's test: the image alone
    assert tiny_config("pretrain")["test_flip"] is False


def test_runner_default_flip_is_the_runs(world, cal_run, selected_run):
    """On an asymmetric random model a mirrored image gives other features; with flip averaging it does not."""
    from reidkit.evaluation.inference import load_reid_model

    store = open_store(world)
    images = [store.image(i) for i in store.split("query")[:4]]
    mirrored = [im[:, ::-1] for im in images]
    cal, bot = load_reid_model(cal_run), load_reid_model(selected_run)
    assert cal.flip is True and bot.flip is False
    assert np.allclose(cal.features(mirrored), cal.features(images), atol=1e-4)
    assert not np.allclose(bot.features(mirrored), bot.features(images), atol=1e-3)
    assert np.allclose(bot.features(images), (bot.features(images, flip=False)))
    assert not np.allclose(load_reid_model(selected_run, flip=True).features(images), bot.features(images), atol=1e-3)


def test_eval_cal_run_flips_and_records_it(world, cal_run, tmp_path):
    rows = eval_json(world, cal_run, tmp=tmp_path / "f.npz")
    assert {r["flip"] for r in rows} == {True} and {r["weights"] for r in rows} == {"last"} and {r["epoch"] for r in rows} == {1}
    feats, index, flip = saved(tmp_path / "f.npz")
    flipped, ref_index = reference_features(cal_run, world, True)
    plain, _ = reference_features(cal_run, world, False)
    assert flip is True and np.array_equal(index, ref_index)
    assert np.allclose(feats, flipped, atol=1e-5) and not np.allclose(feats, plain, atol=1e-3)
    table = run_cli("eval", world, "--checkpoint", cal_run)
    assert table.exit_code == 0 and "flip-averaged, last epoch 1" in table.stdout


def test_eval_baseline_run_does_not_flip(world, selected_run, tmp_path):
    rows = eval_json(world, selected_run, tmp=tmp_path / "f.npz")
    assert {r["flip"] for r in rows} == {False}
    feats, _, flip = saved(tmp_path / "f.npz")
    plain, _ = reference_features(selected_run, world, False)
    flipped, _ = reference_features(selected_run, world, True)
    assert flip is False and np.allclose(feats, plain, atol=1e-5) and not np.allclose(feats, flipped, atol=1e-3)
    assert "no flip" in run_cli("eval", world, "--checkpoint", selected_run).stdout


def test_flip_options_override_the_run(world, cal_run, selected_run, tmp_path):
    rows = eval_json(world, cal_run, "--no-flip", tmp=tmp_path / "a.npz")
    feats, _, flip = saved(tmp_path / "a.npz")
    assert {r["flip"] for r in rows} == {False} and flip is False
    assert np.allclose(feats, reference_features(cal_run, world, False)[0], atol=1e-5)
    rows = eval_json(world, selected_run, "--flip", tmp=tmp_path / "b.npz")
    feats, _, flip = saved(tmp_path / "b.npz")
    assert {r["flip"] for r in rows} == {True} and flip is True
    assert np.allclose(feats, reference_features(selected_run, world, True)[0], atol=1e-5)


def test_a_run_made_before_the_setting_keeps_flip(world, selected_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    config = yaml.safe_load((selected_run / "config.yaml").read_text())
    del config["test_flip"]  # what runs written before test_flip existed hold
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(selected_run / "model.safetensors", old / "model.safetensors")
    rows = eval_json(world, old, tmp=tmp_path / "f.npz")
    feats, _, flip = saved(tmp_path / "f.npz")
    assert {r["flip"] for r in rows} == {True} and flip is True
    assert np.allclose(feats, reference_features(selected_run, world, True)[0], atol=1e-5)


def test_evaluation_during_training_and_report_follow_the_run(world, selected_run):
    """log.csv's last row is the no-flip evaluation of the last weights (a flipped one gives other numbers)."""
    from reidkit.reporting.collect import collect_run
    from reidkit.reporting.page import render

    last = log_rows(selected_run)[-1]
    plain = {r["protocol"]: r for r in eval_json(world, selected_run)}
    flipped = {r["protocol"]: r for r in eval_json(world, selected_run, "--flip")}
    for p, r in plain.items():
        assert float(last[f"{p}_rank1"]) == round(r["rank1"], 4) and float(last[f"{p}_mAP"]) == round(r["mAP"], 4)
    assert any(round(flipped[p]["mAP"], 4) != round(plain[p]["mAP"], 4) for p in plain)  # the flag matters here
    summary = collect_run(selected_run)
    assert {r["flip"] for r in summary.results.values()} == {False}
    assert all(summary.results[p]["mAP"] == pytest.approx(plain[p]["mAP"], abs=1e-6) for p in plain)
    assert "test features without flip" in render([summary])


def test_flip_usage_errors(world, cal_run):
    store = open_store(world)
    from reidkit.evaluation import save_features

    feats_file = world.parent / "any.npz"
    save_features(feats_file, np.ones((len(store.pid), 4), np.float32), np.arange(len(store.pid)))
    assert run_cli("eval", world, "--features", feats_file, "--no-flip").exit_code == 2
    assert run_cli("eval", world, "--features", feats_file, "--select", "best").exit_code == 2
    assert run_cli("eval", world, "--checkpoint", cal_run, "--refine", "q", "--flip").exit_code == 2


# -- model selection ------------------------------------------------------------------------------------------
def best_row(run, protocol="cc"):
    """The first log.csv row with the highest rank-1 of ``protocol`` (CAL: strictly greater replaces)."""
    rows = log_rows(run)
    top = max(float(r[f"{protocol}_rank1"]) for r in rows)
    return next(r for r in rows if float(r[f"{protocol}_rank1"]) == top)


def test_best_epoch_is_kept_with_its_metrics_and_weights(world, selected_run):
    best = json.loads((selected_run / "best" / "best.json").read_text())
    row = best_row(selected_run)  # the synthetic store has a cc protocol: it selects
    assert best["protocol"] == "cc" and best["chosen_on"] == "test set" and best["epoch"] == int(row["epoch"])
    for p, m in best["metrics"].items():
        assert round(m["rank1"], 4) == float(row[f"{p}_rank1"]) and round(m["mAP"], 4) == float(row[f"{p}_mAP"])
    with safe_open(str(selected_run / "best" / "model.safetensors"), "pt") as f:
        assert int(f.metadata()["epoch"]) == best["epoch"] - 1
    selection = json.loads((selected_run / "selection.json").read_text())
    assert selection["chosen_on"] == "test set" and selection["best"]["epoch"] == best["epoch"]
    assert selection["last_evaluated"]["epoch"] == 4 and selection["select_protocol"] == "cc"
    # its weights, evaluated by 'reidkit eval --select best', give the recorded metrics
    rows = eval_json(world, selected_run, "--select", "best")
    for r in rows:
        assert r["weights"] == "best" and r["epoch"] == best["epoch"] and r["flip"] is False
        for k in ("rank1", "rank5", "rank10", "mAP", "mINP"):
            assert r[k] == pytest.approx(best["metrics"][r["protocol"]][k], abs=1e-6), (r["protocol"], k)
    # the last epoch stays the result; the recorded best is shown beside it, labelled
    rows = eval_json(world, selected_run)
    assert {r["epoch"] for r in rows} == {4}
    assert all(r["recorded_best"]["epoch"] == best["epoch"] and r["recorded_best"]["chosen_on"] == "test set" for r in rows)
    table = run_cli("eval", world, "--checkpoint", selected_run).stdout
    assert f"best epoch {best['epoch']}, chosen on the test set" in table
    from reidkit.reporting.collect import collect_run
    from reidkit.reporting.page import render

    page = render([collect_run(selected_run, evaluate=False)])
    assert f"Best epoch {best['epoch']}, chosen on the test set" in page


def test_no_eval_every_keeps_no_best(world, cal_run):
    assert not (cal_run / "best").exists() and not (cal_run / "selection.json").exists()
    line = one_error_line(run_console("eval", world, "--checkpoint", cal_run, "--select", "best"))
    assert "keeps no best epoch" in line and "--eval-every" in line
    assert "recorded_best" not in eval_json(world, cal_run)[0]


def first_best(rows, protocol):
    top = max(float(r[f"{protocol}_rank1"]) for r in rows)
    return next(int(r["epoch"]) for r in rows if float(r[f"{protocol}_rank1"]) == top)


def test_resume_keeps_the_best_so_far(world, selected_run, tmp_path):
    """Stop at a protocol's best epoch b, then --resume to 4: best/ stays epoch b (a resume that forgot it would take a
    later epoch), with b's metrics and weights."""
    rows = log_rows(selected_run)  # training is deterministic: a resumed run's log is the same
    choices = [(p, first_best(rows, p)) for p in ("cc", "standard", "sc") if first_best(rows, p) < SELECT["epochs"]]
    if not choices:
        pytest.skip("every protocol peaks at the last epoch: nothing for a resume to remember")
    protocol, b = choices[0]
    out, settings = tmp_path / "resumed", {**SELECT, "select_protocol": protocol}
    train(world, tiny_config("baseline", **{**settings, "epochs": b}), out, progress=False, max_steps=2)
    state = torch.load(out / "checkpoints" / f"epoch-{b:04d}" / "state.pt", weights_only=True)
    assert state["selection"]["record"]["epoch"] == b  # the record travels with the checkpoint
    weights_b = (out / "checkpoints" / f"epoch-{b:04d}" / "model.safetensors").read_bytes()
    train(world, tiny_config("baseline", **settings), out, resume=True, progress=False, max_steps=2)
    resumed_rows = log_rows(out)
    assert len(resumed_rows) == SELECT["epochs"] and first_best(resumed_rows, protocol) == b
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["epoch"] == b and best["protocol"] == protocol
    assert round(best["rank1"], 4) == float(resumed_rows[b - 1][f"{protocol}_rank1"])
    assert (out / "best" / "model.safetensors").read_bytes() == weights_b


def test_a_kill_before_best_follows_its_checkpoint_is_repaired_on_resume(world, selected_run, tmp_path, monkeypatch):
    """best/ is written right after the checkpoint that holds it; a kill in between is repaired from the checkpoint."""
    import reidkit.training.selection as selection

    real, calls = selection.write_best, {"n": 0}

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "write_best", killed)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(world, tiny_config("baseline", **SELECT), out, progress=False, max_steps=2)
    monkeypatch.undo()
    assert not (out / "best").exists() and [d.name for d in (out / "checkpoints").iterdir()] == ["epoch-0001"]
    # a resume with nothing left to train still repairs best/ from the checkpoint
    train(world, tiny_config("baseline", **{**SELECT, "epochs": 1}), out, resume=True, progress=False, max_steps=2)
    assert json.loads((out / "best" / "best.json").read_text())["epoch"] == 1
    assert (out / "best" / "model.safetensors").read_bytes() == (out / "checkpoints" / "epoch-0001" / "model.safetensors").read_bytes()
    train(world, tiny_config("baseline", **SELECT), out, resume=True, progress=False, max_steps=2)
    assert json.loads((out / "best" / "best.json").read_text()) == json.loads((selected_run / "best" / "best.json").read_text())
    assert (out / "best" / "model.safetensors").read_bytes() == (selected_run / "best" / "model.safetensors").read_bytes()


def test_ties_go_to_the_earliest_and_a_best_between_checkpoints_rides_in_the_next(world, tmp_path):
    """CAL's rule, rank1 > best_rank1: an equal later rank-1 does not replace; a best epoch that has no checkpoint
    of its own is written into the next checkpoint folder and published as best/ from there."""
    from reidkit.training import checkpoint as ckpt
    from reidkit.training.selection import BestEpoch

    store = open_store(world)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    best = BestEpoch(tmp_path, {"eval_every": 1}, store, main=True, evaluated=["standard", "cc", "sc"])
    assert best.protocol == "cc"
    weights = {}
    for epoch, rank1 in enumerate([0.0, 0.5, 0.5, 0.25]):  # the first evaluation is a best even at 0 (CAL: -inf)
        with torch.no_grad():
            model.weight.fill_(epoch)
        weights[epoch + 1] = model.weight.clone()
        results = {"cc": {"rank1": rank1, "mAP": rank1 / 2}, "standard": {"rank1": 1.0, "mAP": 0.9}}
        best.update(epoch, results, model)
    assert best.record["epoch"] == 2 and best.record["rank1"] == 0.5
    snap = ckpt.snapshot(tmp_path, model, optimizer, scheduler, 3)  # the checkpoint of epoch 4 (0-based 3)
    best.attach(snap)
    ckpt.write_snapshot(tmp_path, snap)
    best.publish(snap)
    assert (tmp_path / "checkpoints" / "epoch-0004" / "best.safetensors").is_file()
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(tmp_path / "best" / "model.safetensors"))["weight"], weights[2])
    assert json.loads((tmp_path / "best" / "best.json").read_text())["epoch"] == 2
    assert json.loads((tmp_path / "selection.json").read_text())["last_evaluated"]["epoch"] == 4


def test_select_protocol_setting(world, tmp_path):
    from reidkit.evaluation.during_training import TestSetEvaluator
    from reidkit.training.selection import selection_protocol as chosen

    store = open_store(world)

    def selection_protocol(store, config):  # the protocols the trainer's evaluator evaluates, then the choice among them
        return chosen(TestSetEvaluator().protocols(store, config), config, store.path)

    assert selection_protocol(store, {}) == "cc"
    assert selection_protocol(store, {"eval_protocols": ["standard", "sc"]}) == "standard"
    assert selection_protocol(store, {"eval_protocols": ["sc"]}) == "sc"
    assert selection_protocol(store, {"select_protocol": "sc"}) == "sc"
    with pytest.raises(ReidkitError, match="'select_protocol': 'nope' is not a protocol .*standard, cc, sc"):
        train(world, tiny_config("baseline", eval_every=1, select_protocol="nope"), tmp_path / "x", progress=False, max_steps=1)
    with pytest.raises(ReidkitError, match="evaluated during training"):
        selection_protocol(store, {"eval_protocols": ["standard"], "select_protocol": "cc"})
