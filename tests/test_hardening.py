"""Issue 14 regressions: bad training settings, long store names, and what Ctrl-C says per command."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import reidkit
from reidkit.errors import ReidkitError
from tests.helpers import reidkit_exe, run_console
from tests.train_helpers import make_store

QUICK = ("--batch", "2,2", "--height", "64", "--width", "32", "--num-workers", "0", "--device", "cpu",
         "--backbone", "resnet18", "--weights", "none", "--amp", "none")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("hardening"), ids=6, outfits=2)


def _one_line(r, *needles):
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- item: numeric training settings are checked before anything is written -------------------------------------
@pytest.mark.parametrize("option, value", [("--epochs", "-2"), ("--epochs", "0"), ("--height", "0"), ("--width", "4"),
                                           ("--ids-per-batch", "1"), ("--images-per-id", "0"), ("--lr", "-1e-3"),
                                           ("--num-workers", "-1"), ("--steps-per-epoch", "0")])
def test_train_option_out_of_range_is_a_usage_error(store, tmp_path, option, value):
    out = tmp_path / "run"
    args = [a for a in QUICK]
    if option in ("--height", "--width", "--num-workers"):
        i = args.index(option)
        del args[i:i + 2]
    if option in ("--ids-per-batch", "--images-per-id"):
        i = args.index("--batch")
        del args[i:i + 2]
    r = run_console("train", store, *args, option, value, "--out", out)
    assert r.returncode == 2, r.stdout + r.stderr
    assert option in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("yaml_text, key, expected", [
    ("epochs: abc\n", "epochs", "an integer >= 1"),
    ("epochs: -2\n", "epochs", "an integer >= 1"),
    ("ids_per_batch: [1, 2]\n", "ids_per_batch", "an integer >= 2"),
    ("height: 0\n", "height", "an integer >= 8"),
    ("lr: fast\n", "lr", "a number >= 0"),
    ("num_workers: -1\n", "num_workers", "an integer >= 0"),
    ("milestones: [10, x]\n", "milestones", "a list of integers"),
    ("scale_schedule: maybe\n", "scale_schedule", "true or false"),
])
def test_train_yaml_setting_of_wrong_type_or_range_names_key_and_file(store, tmp_path, yaml_text, key, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    out = tmp_path / "run"
    r = run_console("train", store, "--config", config, "--out", out, timeout=120)  # no option overrides the key
    assert r.returncode == 1, r.stdout + r.stderr
    _one_line(r, f"'{key}'", str(config), expected)
    assert not out.exists()  # no config.yaml left behind


def test_resolve_config_checks_options_and_accepts_good_values():
    from reidkit.training.config import resolve_config

    with pytest.raises(ReidkitError, match=r"setting 'epochs' from option --epochs: expected an integer >= 1, got -2"):
        resolve_config("baseline", {}, {"epochs": -2})
    with pytest.raises(ReidkitError, match=r"'max_steps_per_epoch' from option --steps-per-epoch"):
        resolve_config("baseline", {}, {"max_steps_per_epoch": 0})
    with pytest.raises(ReidkitError, match=r"'epochs' from strategy 'baseline' defaults|'epochs' from x.yaml"):
        resolve_config("baseline", {"epochs": True}, {}, file_source="x.yaml")  # a bool is not an integer
    good = resolve_config("cal", {"lr": "1e-3", "milestones": [2, 4]}, {"epochs": 5, "max_steps_per_epoch": None})
    assert good["lr"] == "1e-3" and good["epochs"] == 5  # YAML 1.1 reads 1e-3 as a string; the engine takes float()
    for plugin in ("baseline", "cal", "pretrain"):
        resolve_config(plugin, {}, {})  # every strategy's own defaults pass
    resolve_config("progressive", {}, {"generated": ["gen"]})


# -- item: a long (legal) store name -----------------------------------------------------------------------------
def test_partial_names_stay_within_255_bytes_and_unique():
    from reidkit.store.atomic import partial_path

    for name in ("a.h5", "x" * 235, "x" * 236, "x" * 252 + ".h5", "\u00e9" * 127):
        p = partial_path(Path("/tmp") / name)
        assert len(os.fsencode(p.name)) <= 255 - (10 - len(str(os.getpid())))
    assert partial_path(Path("/tmp") / ("x" * 250 + "a")) != partial_path(Path("/tmp") / ("x" * 250 + "b"))
    assert partial_path(Path("/tmp/world.h5")).name == f".world.h5.partial-{os.getpid()}"  # short names as before


def test_adapt_with_a_long_out_name(tmp_path):
    name = "s" * 246 + ".h5"  # 249 bytes: the longest whose sidecar folder NAME.parts still fits in 255
    out = tmp_path / name
    r = run_console("adapt", "synthetic", "--out", out, "--ids", "4", "--outfits", "2", "--cameras", "2", "--height", "32",
                    "--width", "16")
    assert r.returncode == 0, r.stderr
    assert len(reidkit.open_store(out)) > 0
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no partial left
    r = run_console("expand", out, "--variants", "1", "--limit", "2")  # its sidecar folder works
    assert r.returncode == 0, r.stderr


def test_adapt_with_an_out_name_too_long_for_its_sidecar_is_refused(tmp_path):
    out = tmp_path / ("s" * 247 + ".h5")  # 250 bytes: legal, but NAME.parts would be 256
    r = run_console("adapt", "synthetic", "--out", out, "--ids", "4")
    assert r.returncode == 1
    _one_line(r, "--out name is 250 bytes long", "at most 249 bytes")
    assert list(tmp_path.iterdir()) == []


# -- item: what Ctrl-C says, per command -------------------------------------------------------------------------
def test_interrupted_train_says_resume(store, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([reidkit_exe(), "train", str(store), *QUICK, "--epochs", "500", "--steps-per-epoch", "1",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (out / "log.csv").exists():
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]
        assert (out / "log.csv").exists(), "training did not start in time"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Interrupted") and "--resume" in last, last


def test_interrupted_adapt_says_nothing_is_kept(tmp_path, monkeypatch, capsys):
    import reidkit.store.writer as writer
    from reidkit.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "write_store", interrupted)
    with pytest.raises(SystemExit) as stop:
        main(["adapt", "synthetic", "--out", str(tmp_path / "w.h5")])
    assert stop.value.code == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no store was written" in last and "resume" not in last, last


def test_interrupted_message_per_command():
    from reidkit.cli import interrupted_message

    assert "--resume" in interrupted_message(["--debug", "train", "s.h5"])
    assert "rerun the same command to resume" in interrupted_message(["expand", "s.h5"])
    assert interrupted_message(["eval", "s.h5"]) == "Interrupted."
    assert interrupted_message([]) == "Interrupted."
