import json
import subprocess
import sys

import h5py
import pytest

from tests.helpers import make_world, run_cli, run_console


def test_version_and_help():
    import reidkit

    result = run_cli("--version")
    assert result.exit_code == 0 and reidkit.__version__ in result.output
    result = run_cli("--help")
    assert result.exit_code == 0
    for name in ("adapt", "info", "plugins"):
        assert name in result.output
    result = run_cli("adapt", "--help")
    assert result.exit_code == 0 and "synthetic" in result.output
    result = run_cli("adapt", "synthetic", "--help")
    assert "--ids" in result.output and "--out" in result.output


def test_help_imports_no_heavy_library(tmp_path):
    code = (
        "import sys; from reidkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['adapt', 'synthetic', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'timm', 'h5py') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "HEAVY=\n" in out or out.strip().endswith("HEAVY=")


def test_console_script_end_to_end(tmp_path):
    out = tmp_path / "w.h5"
    made = run_console("adapt", "synthetic", "--out", out, "--ids", "6", "--shots", "1")
    assert made.returncode == 0, made.stderr
    info = run_console("info", out, "--json")
    assert info.returncode == 0
    data = json.loads(info.stdout)
    assert set(data["splits"]) == {"train", "query", "gallery"}
    for split in data["splits"].values():
        assert {"ids", "images", "cameras", "outfits"} <= set(split)
    assert data["splits"]["train"]["ids"] == 3
    assert data["splits"]["train"]["images"] == 3 * 3 * 4
    assert data["splits"]["query"]["images"] == 3 * 3  # one per person and outfit


def _one_line_error(result, *needles):
    assert result.returncode != 0
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_input_gets_one_line_and_exit_code(tmp_path):
    world = make_world(tmp_path / "w.h5")
    before = world.read_bytes()
    # existing output refused without --force, untouched
    r = run_console("adapt", "synthetic", "--out", world)
    _one_line_error(r, "already exists", "--force")
    assert r.returncode == 1 and world.read_bytes() == before
    # unknown adapter names the known ones
    _one_line_error(run_console("adapt", "nosuch", "--out", tmp_path / "x.h5"), "unknown adapter 'nosuch'", "synthetic")
    # --out in a missing folder
    _one_line_error(run_console("adapt", "synthetic", "--out", tmp_path / "no" / "x.h5"), "does not exist")
    # --root given to a generated world
    _one_line_error(run_console("adapt", "synthetic", "--root", tmp_path, "--out", tmp_path / "y.h5"), "takes no --root")
    assert not (tmp_path / "y.h5").exists()
    # store problems
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    _one_line_error(run_console("info", junk), "not a reidkit store")
    _one_line_error(run_console("info", tmp_path / "missing.h5"), "does not exist")
    old = tmp_path / "old.h5"
    old.write_bytes(before)
    with h5py.File(old, "a") as h5:
        h5.attrs["schema_version"] = 0
    _one_line_error(run_console("info", old), "schema version 0")
    # usage errors exit 2
    r = run_console("adapt", "synthetic")
    assert r.returncode == 2 and "--out" in r.stderr
    r = run_console("frobnicate")
    assert r.returncode == 2 and "No such command 'frobnicate'" in r.stderr


def test_force_replaces_store(tmp_path):
    world = make_world(tmp_path / "w.h5", ids=6)
    r = run_console("adapt", "synthetic", "--out", world, "--ids", "8", "--force")
    assert r.returncode == 0, r.stderr
    import reidkit

    assert reidkit.open_store(world).settings["ids"] == 8


def test_debug_shows_traceback(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    r = run_console("--debug", "info", junk)
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = run_console("info", junk, env={"REIDKIT_DEBUG": "1"})
    assert "Traceback" in r.stderr


def test_info_preview_writes_png(tmp_path):
    import cv2

    world = make_world(tmp_path / "w.h5", ids=6)
    result = run_cli("info", world, "--preview", tmp_path / "p.png", "--preview-ids", "3")
    assert result.exit_code == 0
    img = cv2.imread(str(tmp_path / "p.png"))
    assert img is not None and img.shape[0] > 3 * 128  # three rows of 128-pixel crops plus padding


def test_shell_completion():
    r = run_console(env={"_REIDKIT_COMPLETE": "bash_source"})
    assert r.returncode == 0 and "complete" in r.stdout and "_REIDKIT_COMPLETE" in r.stdout
    r = run_console(env={"_REIDKIT_COMPLETE": "bash_complete", "COMP_WORDS": "reidkit ad", "COMP_CWORD": "1"})
    assert "adapt" in r.stdout
    r = run_console(env={"_REIDKIT_COMPLETE": "bash_complete", "COMP_WORDS": "reidkit adapt syn", "COMP_CWORD": "2"})
    assert "synthetic" in r.stdout


def test_no_bare_top_level_packages_installed(tmp_path):
    code = "import importlib.util as u; print([n for n in ('plugins', 'adapters') if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert out.strip() == "[]"
    code = "import reidkit.adapters, reidkit.plugins; print(reidkit.adapters.__name__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path).stdout.strip() == "reidkit.adapters"


@pytest.mark.parametrize("option", ["--strategy", "--plugin"])
def test_train_strategy_option_and_its_plugin_alias(tmp_path, option):
    store = make_world(tmp_path / "w.h5", ids=4, outfits=2, cameras=2, shots=1)
    # the value reaches the strategy lookup: progressive needs a generated run, an unknown name lists the known ones
    r = run_console("train", store, option, "progressive", "--out", tmp_path / "run")
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "strategy 'progressive' trains with generated images" in r.stderr
    r = run_console("train", store, option, "nope", "--out", tmp_path / "run")
    assert r.returncode == 1 and "unknown strategy 'nope' (known: baseline, cal, cluster-contrast, pretrain, progressive" in r.stderr
    assert not (tmp_path / "run").exists()
    shown = " ".join(run_console("train", "--help").stdout.split())
    assert "--strategy, --plugin TEXT" in shown and "--plugin is an alias" in shown
