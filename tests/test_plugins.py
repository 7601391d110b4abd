"""Plugin discovery through real entry-point metadata: built-ins and example third-party packages."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_console

PACKAGES = Path(__file__).parent / "plugin_packages"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example distributions, pip-installed into a folder (real dist-info, real entry points)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), *(str(PACKAGES / name) for name in ("reidkit-example", "reidkit-broken", "reidkit-collide", "reidkit-abrupt"))],
        check=True,
        capture_output=True,
    )
    return target


def _env(site, load):
    env = {"PYTHONPATH": str(site)}
    if load is not None:
        env["REIDKIT_LOAD_PLUGINS"] = load
    return env


def test_builtins_listed_without_third_party():
    r = run_console("plugins", "--json")
    assert r.returncode == 0, r.stderr
    plugins = json.loads(r.stdout)
    by_name = {p["name"]: p for p in plugins}
    assert by_name["adapters"]["distribution"] == "reidkit" and by_name["adapters"]["builtin"]
    assert "synthetic" in by_name["adapters"]["registers"]["adapters"]
    for p in plugins:
        assert {"name", "version", "registers"} <= set(p)
        assert set(p["registers"]) == {"adapters", "maskers", "prompt_sources", "generators", "filters", "backbones", "strategies", "commands"}


def test_third_party_plugin_discovered_and_used(site, tmp_path):
    env = _env(site, "example")
    r = run_console("plugins", "--json", env=env)
    assert r.returncode == 0, r.stderr
    example = next(p for p in json.loads(r.stdout) if p["name"] == "example")
    assert example["distribution"] == "reidkit-example" and example["version"] == "0.3.0" and not example["builtin"]
    assert example["registers"]["adapters"] == ["flat-folder"]
    assert example["registers"]["commands"] == ["hello-example"]
    # its command runs
    r = run_console("hello-example", "reid", env=env)
    assert r.returncode == 0 and "hello reid from reidkit-example" in r.stdout
    # its adapter runs, with its own option, and writes a real store
    import cv2

    root = tmp_path / "flat"
    for split, names in {"train": ["1_1_a.jpg", "1_2_b.jpg", "2_1_a.jpg"], "query": ["3_1_a.jpg"], "gallery": ["3_2_a.jpg", "4_1_a.jpg"]}.items():
        (root / split).mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(root / split / name), np.full((16, 8, 3), 7 * len(name), np.uint8))
    out = tmp_path / "flat.h5"
    r = run_console("adapt", "flat-folder", "--root", root, "--out", out, "--min-camera", "1", env=env)
    assert r.returncode == 0, r.stderr
    import reidkit

    store = reidkit.open_store(out)
    assert store.dataset == "flat-folder" and len(store) == 6
    i = list(store.image_paths).index("train/1_2_b.jpg")
    assert store.pid[i] == 1 and store.camera[i] == 1 and store.label[i] == 0


def test_table_reports_import_failure_and_others_still_load(site):
    r = run_console("plugins", "--json", env=_env(site, "example,broken"))
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    assert "a_module_that_does_not_exist" in plugins["broken"]["error"]
    assert plugins["example"]["error"] is None and plugins["adapters"]["error"] is None
    table = run_console("plugins", env=_env(site, "example,broken"))
    assert table.returncode == 0 and "failed to load" in table.stdout and "reidkit-broken" in table.stdout
    # a failed plugin does not stop real work
    assert run_console("adapt", "--help", env=_env(site, "example,broken")).returncode == 0


@pytest.mark.parametrize("name, raised, message", [
    ("exits", "SystemExit", "reidkit-abrupt exits at import"),
    ("interrupts", "KeyboardInterrupt", "reidkit-abrupt interrupts at import"),
])
def test_plugin_raising_systemexit_or_keyboardinterrupt_at_import_is_skipped(site, name, raised, message):
    env = _env(site, f"example,{name}")
    # the CLI stays up: help works and lists the other plugin's command
    r = run_console("--help", env=env)
    assert r.returncode == 0, r.stderr
    assert "hello-example" in r.stdout and message not in r.stdout + r.stderr
    # the broken plugin is reported, the others load
    r = run_console("plugins", "--json", env=env)
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    assert plugins[name]["error"] == f"{raised}: {message}"
    assert plugins["example"]["error"] is None
    table = run_console("plugins", env=env)
    assert table.returncode == 0 and "failed to load" in table.stdout and "reidkit-abrupt" in table.stdout
    assert run_console("hello-example", "reid", env=env).returncode == 0


def test_load_plugins_filter(site):
    r = run_console("plugins", "--json", env=_env(site, "reidkit-example"))  # distribution names work too
    names = {p["name"] for p in json.loads(r.stdout)}
    assert "example" in names and "broken" not in names and "collide" not in names
    assert {"adapters", "generators"} <= names  # built-ins always load
    r = run_console("plugins", "--json", env=_env(site, ""))
    assert {p["name"] for p in json.loads(r.stdout)} & {"example", "broken", "collide", "exits", "interrupts"} == set()


def test_name_collision_names_both_plugins(site):
    r = run_console("plugins", env=_env(site, "collide"))
    assert r.returncode == 1
    line = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(line.splitlines()) == 1
    assert "'synthetic'" in line and "reidkit-collide" in line and "(reidkit)" in line


def test_unknown_plugin_lists_known_names():
    from reidkit.errors import PluginError
    from reidkit.plugin_manager import get_plugins

    with pytest.raises(PluginError, match=r"unknown adapter 'nope' \(known: .*synthetic"):
        get_plugins().get("adapters", "nope")
