"""Messages and help (issue 17): defaults in help, did-you-mean, settings diffs, no empty runs, plain progress lines."""
import json
import re
import shutil

import click
import pytest

import reidkit
from reidkit.errors import StoreError
from reidkit.generation import run_expand
from reidkit.progress import PlainProgress
from reidkit.store import chunks
from tests.helpers import make_world, run_cli, run_console

BOX_ART = re.compile(r"[\u2500-\u259f]")  # box drawing and block elements: rich's bars and tables


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("msg") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)


def fresh(world, tmp_path, name="w.h5"):
    dest = tmp_path / name
    shutil.copy(world, dest)
    return dest


def one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- help ------------------------------------------------------------------------------------------------------

def test_every_train_option_has_help_and_its_default():
    from reidkit.commands.train import train

    for param in train.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.help, f"--{param.name} has no help"
        assert param.show_default or "[default:" in param.help, f"--{param.name} does not show its default"
    plugin_help = next(p.help for p in train.params if p.name == "plugin")
    assert "pretrain" in plugin_help
    shown = " ".join(run_cli("train", "--help").output.split())
    assert "pretrain" in shown and "strategy's: baseline 120" in shown


def test_demo_quick_help_says_smoke_test_and_duration():
    text = " ".join(run_cli("demo", "--help").output.split())
    assert "Smoke test" in text and "numbers mean nothing" in text
    assert re.search(r"about \d+ s with --seeds 0", text) and "default 3 seeds" in text


def test_strategy_table_and_eval_docs_are_current():
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    training = (docs / "training.md").read_text()
    assert re.search(r"^\| `pretrain` \|.*backbone\.safetensors.*60 epochs, x0\.1 at 30 and 50", training, re.M)
    assert "meant to plug in" not in training
    assert "later, from a checkpoint" not in (docs / "eval.md").read_text()


# -- mistyped commands -----------------------------------------------------------------------------------------

def test_mistyped_command_suggests_the_closest():
    r = run_console("evl")
    assert r.returncode == 2 and "No such command 'evl'. Did you mean 'eval'?" in r.stderr and "Traceback" not in r.stderr
    r = run_console("frobnicate")  # nothing close: the commands are listed
    assert r.returncode == 2 and "No such command 'frobnicate'" in r.stderr and "Did you mean" not in r.stderr
    assert "eval" in r.stderr and "expand" in r.stderr
    one_line_error(run_console("adapt", "ltc"), "unknown adapter 'ltc'", "Did you mean 'ltcc'?")


# -- a rerun with other settings names them --------------------------------------------------------------------

def test_rerun_with_other_settings_names_what_differs(world, tmp_path):
    store = fresh(world, tmp_path)
    assert run_cli("expand", store, "--variants", "1", "--name", "x", "--json").exit_code == 0
    line = one_line_error(run_console("expand", store, "--variants", "1", "--name", "x", "--seed", "9", "--set", "jitter=2"),
                          "run 'x' exists with other settings", "seed: 0 -> 9", "generator_settings.jitter: 6.0 -> 2")
    assert "{" not in line and "generator_settings\":" not in line  # no settings JSON dumped
    assert "variants:" not in line  # only what differs


def test_bank_or_mask_set_refusing_reuse_names_what_differs(world, tmp_path):
    store = reidkit.open_store(fresh(world, tmp_path))
    chunks.create_part(store, "prompts", "b", {"source": "templates", "settings": {"seed": 1, "items": 3}},
                       must_match=("source", "settings"))
    with pytest.raises(StoreError) as exc:
        chunks.create_part(store, "prompts", "b", {"source": "templates", "settings": {"seed": 2, "items": 3, "extra": "x"}},
                           must_match=("source", "settings"))
    assert str(exc.value).startswith("prompt 'b' exists with other settings: extra: unset -> \"x\"; seed: 1 -> 2 (")
    assert chunks.describe_changes({"a": 1}, {"a": 1}) == "(none that can be named)"
    many = chunks.describe_changes({f"k{i}": 0 for i in range(9)}, {f"k{i}": 1 for i in range(9)})
    assert many.count("->") == 6 and many.endswith("and 3 more")


# -- a failure before the first item leaves no empty run ------------------------------------------------------

def test_missing_hub_model_offline_is_one_line_and_leaves_no_run(world, tmp_path):
    pytest.importorskip("diffusers")
    store = fresh(world, tmp_path)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "no-cache"), "HF_HOME": str(tmp_path / "no-home")}
    proc = run_console("expand", store, "--generator", "dlcr", "--prompts", "templates", "--masker", "store",
                       "--model", "no/such-model", "--name", "dlcr-try", "--variants", "1", "--limit", "1", "--device", "cpu",
                       env=env)
    errors = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("prompts templates:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    assert errors[0].startswith("Error: cannot load inpainting model 'no/such-model'") and "pass a local folder with --model" in errors[0]
    assert "in the Hugging Face cache" in errors[0] and "HF_HUB_OFFLINE forbids downloading" in errors[0]
    assert "stacktrace" not in proc.stderr.lower() and "traceback" not in proc.stderr.lower()
    assert "Couldn't connect to the Hub" not in proc.stderr
    # offline means no attempt at all (no hub retries): nothing was fetched, not even a partial download
    assert not [p for p in (tmp_path / "no-cache").rglob("*") if p.is_file()]
    assert not [p for p in (tmp_path / "no-home").rglob("*") if p.is_file() and "hub" in p.parts]
    assert json.loads(run_console("info", store, "--json").stdout)["runs"] == {}
    assert not (store.parent / f"{store.name}.parts" / "runs" / "dlcr-try").exists()


def test_failed_first_batch_leaves_no_run_and_a_rerun_starts_clean(world, tmp_path, monkeypatch):
    from reidkit.plugins.generators.recolor import RecolorGenerator

    store = fresh(world, tmp_path)

    def broken(self, items):
        raise RuntimeError("generator broke")

    monkeypatch.setattr(RecolorGenerator, "generate", broken)
    with pytest.raises(RuntimeError, match="generator broke"):
        run_expand(store, variants=1, name="r", show_progress=False)
    assert reidkit.open_store(store).runs() == {}
    monkeypatch.undo()
    # the same name then takes other settings: nothing was made under the first ones
    summary = run_expand(store, variants=1, seed=5, name="r", show_progress=False)
    assert summary["generated"] == summary["planned"] > 0
    assert reidkit.open_store(store).run("r").info["seed"] == 5


def test_failed_masker_leaves_no_empty_mask_set(world, tmp_path, monkeypatch):
    from reidkit.plugins.maskers.heuristic import HeuristicMasker

    store = fresh(world, tmp_path)

    def broken(self, images):
        raise RuntimeError("masker broke")

    monkeypatch.setattr(HeuristicMasker, "label_maps", broken)
    with pytest.raises(RuntimeError, match="masker broke"):
        run_expand(store, variants=1, name="r", masker="heuristic", show_progress=False)
    opened = reidkit.open_store(store)
    assert "heuristic" not in opened.mask_sets() and opened.runs() == {}
    monkeypatch.undo()
    run_expand(store, variants=1, name="r", masker="heuristic", show_progress=False, limit=2)
    assert len(reidkit.open_store(store).mask_sets()["heuristic"]) == 2


def test_rerun_of_a_finished_run_keeps_it(world, tmp_path):
    store = fresh(world, tmp_path)
    first = run_expand(store, variants=1, name="r", show_progress=False)
    again = run_expand(store, variants=1, name="r", show_progress=False)
    assert again["skipped"] == first["generated"] and again["generated"] == 0


# -- template prompts report no parse failures -----------------------------------------------------------------

def test_templates_report_no_parse_failures(world, tmp_path):
    store = fresh(world, tmp_path)
    proc = run_console("expand", store, "--variants", "1", "--name", "t")
    assert proc.returncode == 0 and "did not parse" not in proc.stderr + proc.stdout
    from reidkit.commands.expand import print_summary

    summary = json.loads(run_cli("expand", store, "--variants", "1", "--name", "t", "--json").stdout)
    summary["bank_parse_failures"] = 3
    proc_out = run_cli_summary(print_summary, summary)
    assert "3 outfits whose model reply did not parse" in proc_out


def run_cli_summary(print_summary, summary):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        print_summary(summary)
    return buffer.getvalue()


# -- progress on a file or a pipe -------------------------------------------------------------------------------

def test_progress_to_a_pipe_is_plain_lines(world, tmp_path):
    store = fresh(world, tmp_path)
    proc = run_console("expand", store, "--variants", "3", "--batch-size", "2", "--name", "p", "--json",
                       env={"REIDKIT_PROGRESS_SECONDS": "0"})
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # stdout stays clean JSON
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr and not BOX_ART.search(proc.stderr), proc.stderr
    lines = proc.stderr.strip().splitlines()
    pattern = re.compile(r"^(prompts templates|expand p): \d+/\d+ (img|outfit) \(\d+%\), [\d,.]+ (img|outfit)/s, elapsed \d:\d\d:\d\d")
    assert lines and all(pattern.match(l) for l in lines), lines
    expand_lines = [l for l in lines if l.startswith("expand p:")]
    total = json.loads(proc.stdout)["planned"]
    assert len(expand_lines) > 2 and expand_lines[-1].startswith(f"expand p: {total}/{total} img (100%)")
    assert all("ETA" in l for l in expand_lines[:-1]) and "ETA" not in expand_lines[-1]
    # a run shorter than the interval is one final line, not one per batch
    quiet = run_console("expand", store, "--variants", "3", "--batch-size", "2", "--name", "p2", "--json",
                        env={"REIDKIT_PROGRESS_SECONDS": "600"})
    assert [l.split(":")[0] for l in quiet.stderr.strip().splitlines()] == ["expand p2"], quiet.stderr


def test_plain_progress_rate_limit_and_stopped_line(capsys):
    bar = PlainProgress(10, "work", "img", interval=3600)
    for _ in range(9):
        bar.update(advance=1, status="0 rejected")
    assert capsys.readouterr().err == ""  # nothing before the interval
    bar.update(advance=1)
    bar.finish()
    out = capsys.readouterr().err.splitlines()
    assert len(out) == 1 and out[0].startswith("work: 10/10 img (100%), ") and out[0].endswith("0 rejected")
    stopped = PlainProgress(None, "work", "img", interval=3600)
    stopped.update(completed=4)
    stopped.finish(stopped=True)
    line = capsys.readouterr().err.strip()
    assert line.startswith("work: 4 img, ") and line.endswith("(stopped)") and "ETA" not in line
