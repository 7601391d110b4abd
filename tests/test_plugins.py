"""Plugin discovery through real entry-point metadata: built-ins and example third-party packages."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import make_world, one_error_line, run_console

PACKAGES = Path(__file__).parent / "plugin_packages"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example distributions, pip-installed into a folder (real dist-info, real entry points)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), *(str(PACKAGES / name) for name in ("reidkit-example", "reidkit-broken", "reidkit-collide", "reidkit-abrupt", "reidkit-incomplete"))],
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
    assert {p["name"] for p in json.loads(r.stdout)} & {"example", "broken", "collide", "exits", "interrupts", "incomplete"} == set()


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


def test_contract_breaking_registrations_refused_in_one_line_the_rest_load(site, tmp_path):
    env = _env(site, "incomplete,example")
    r = run_console("plugins", "--json", env=env)
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    incomplete = plugins["incomplete"]
    assert incomplete["error"] is None
    assert incomplete["registers"]["generators"] == [] and incomplete["registers"]["filters"] == ["keep-all"]
    refused = sorted(incomplete["refused"])
    assert len(refused) == 2
    assert "plugin 'incomplete' (reidkit-incomplete)" in refused[0] and "filter 'mistyped'" in refused[0] and "'tau'" in refused[0]
    assert "generator 'half' lacks required method 'generate'" in refused[1]
    assert plugins["example"]["refused"] == [] and plugins["generators"]["refused"] == []
    # the table shows it; the count line on stderr says so
    table = run_console("plugins", env=env)
    assert table.returncode == 0 and "refused" in table.stdout and "refused" in table.stderr
    # naming the refused generator says why, in one line, and writes nothing
    store = make_world(tmp_path / "w.h5", ids=4, outfits=2, cameras=2, shots=1)
    line = one_error_line(run_console("expand", store, "--generator", "half", env=env))
    assert "generator 'half' was refused at registration" in line and "'generate'" in line
    assert not Path(str(store) + ".parts").exists()
    # the same plugin's valid filter works
    r = run_console("expand", store, "--variants", "1", "--filter", "keep-all", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kept"] == json.loads(r.stdout)["generated"] > 0


def test_registration_contract_checked_in_process():
    """The same checks on plugin objects registered directly (what register() receives)."""
    import types

    from reidkit import hookimpl
    from reidkit.plugin_manager import PluginRecord, PluginSet

    class NoJudge:
        defaults = {}

    class Fine:
        defaults = {"k": 3}

        def __init__(self, settings, device, store):
            pass

        def judge(self, items, outputs, nonfinite):
            return []

    class NotCallableGenerate:
        generate = "not a method"

    module = types.ModuleType("inproc")
    module.register_filters = hookimpl(lambda register: (register("no-judge", NoJudge), register("fine", Fine)))
    module.register_generators = hookimpl(lambda register: register("odd", NotCallableGenerate))
    module.register_strategies = hookimpl(lambda register: register("instance", Fine({}, "cpu", None)))
    plugins = PluginSet()
    record = PluginRecord("inproc", "inproc-dist", "1", False)
    plugins.add(module, record)
    assert plugins.names("filters") == ["fine"] and plugins.names("generators") == [] and plugins.names("strategies") == []
    assert any("filter 'no-judge' lacks required method 'judge'" in line for line in record.refused)
    assert any("generator 'odd' lacks required method 'generate'" in line for line in record.refused)
    assert any("strategy 'instance' is not a class or factory" in line for line in record.refused)
    assert all(line.startswith("plugin 'inproc' (inproc-dist): ") for line in record.refused)


def test_example_plugin_declares_typed_settings_shown_by_plugins_name(site):
    env = _env(site, "example")
    r = run_console("plugins", "example", env=env)
    assert r.returncode == 0, r.stderr
    assert "generator 'tint'" in r.stdout
    assert 'colour: str = "red" (one of red, green, blue)' in r.stdout
    assert "amount: float = 0.5 (>= 0, <= 1)  0: the source, 1: flat colour" in r.stdout
    assert "noise: int = 0" in r.stdout  # undeclared: typed from its default
    # a registered name shows that registration only
    r = run_console("plugins", "tint", env=env)
    assert r.returncode == 0 and "generator 'tint'" in r.stdout and "flat-folder" not in r.stdout
    r = run_console("plugins", "example", "--json", env=env)
    data = json.loads(r.stdout)
    tint = data["settings"]["generators"]["tint"]
    assert tint["colour"] == {**tint["colour"], "default": "red", "type": "str", "choices": ["red", "green", "blue"]}
    assert (tint["amount"]["min"], tint["amount"]["max"], tint["amount"]["type"]) == (0, 1, "float")
    assert tint["noise"]["type"] == "int" and tint["noise"]["help"] == ""
    assert "commands" not in data["settings"] and "adapters" not in data["settings"]


@pytest.mark.parametrize("sets, message", [
    (["--set", "amount=abc"], "generator 'tint': setting 'amount' must be a number >= 0 and <= 1, got 'abc'"),
    (["--set", "amount=1.5"], "generator 'tint': setting 'amount' must be a number >= 0 and <= 1, got 1.5"),
    (["--set", "colour=purple"], "generator 'tint': setting 'colour' must be one of red, green, blue, got 'purple'"),
    (["--set", "keep_shading=maybe"], "generator 'tint': setting 'keep_shading' must be true or false, got 'maybe'"),
    (["--set", "noise=2.5"], "generator 'tint': setting 'noise' must be an integer, got 2.5"),
])
def test_installed_example_plugin_bad_setting_refused_in_one_line(site, tmp_path, sets, message):
    env = _env(site, "example")
    store = make_world(tmp_path / "w.h5", ids=4, outfits=2, cameras=2, shots=1)
    line = one_error_line(run_console("expand", store, "--generator", "tint", *sets, env=env))
    assert line == f"Error: {message}"
    assert not Path(str(store) + ".parts").exists()  # nothing written


def test_installed_example_plugin_settings_from_yaml_checked_and_good_ones_used(site, tmp_path):
    env = _env(site, "example")
    store = make_world(tmp_path / "w.h5", ids=4, outfits=2, cameras=2, shots=1)
    config = tmp_path / "bad.yaml"
    config.write_text("generator: tint\ngenerator_settings: {amount: [1, 2]}\n")
    line = one_error_line(run_console("expand", store, "--config", config, env=env))
    assert line == "Error: generator 'tint': setting 'amount' must be a number >= 0 and <= 1, got [1, 2]"
    assert not Path(str(store) + ".parts").exists()
    r = run_console("expand", store, "--generator", "tint", "--set", "colour=blue,amount=1,keep_shading=false", "--variants", "1",
                    "--json", env=env)
    assert r.returncode == 0, r.stderr
    import reidkit

    opened = reidkit.open_store(store)
    run = opened.run(json.loads(r.stdout)["run"])
    assert run.settings["generator_settings"] == {"colour": "blue", "amount": 1, "keep_shading": False, "noise": 0}
    image = run.image(0)
    mask = opened.mask_sets()["ground_truth"].clothing_mask(int(run.source_index()[0]))
    assert (image[mask] == (40, 60, 220)).all()  # amount 1, no shading: flat blue on the clothing


def test_setting_declarations_and_inferred_types():
    from reidkit.contracts import Setting, check_settings, inferred, settings_of
    from reidkit.errors import PluginError

    class Plugin:
        defaults = {"steps": 50, "rate": 0.5, "name": "x", "flag": False, "sizes": [1, 2], "anything": None, "path": ""}
        settings_spec = {"rate": Setting(float, "a share", min=0, max=1, max_open=True),
                         "sizes": Setting(list, "sizes", item=int, min=1)}

    spec = settings_of(Plugin)
    assert spec["steps"] == inferred(50) == Setting(int) and spec["flag"] == Setting(bool)
    assert spec["anything"] == Setting()  # a None default: unchecked unless declared
    good = {"steps": 3, "rate": 0, "name": "y", "flag": True, "sizes": [4], "anything": object(), "path": Path("/tmp")}
    check_settings("generator", "p", Plugin, good)
    for key, value, expected in (
        ("steps", True, "must be an integer, got True"),  # a bool is no integer
        ("steps", 2.0, "must be an integer, got 2.0"),
        ("rate", 1, "must be a number >= 0 and < 1, got 1"),
        ("rate", float("nan"), "must be a number >= 0 and < 1, got nan"),
        ("flag", 1, "must be true or false, got 1"),
        ("sizes", [0], "must be a list of integers, each >= 1, got [0]"),
        ("sizes", "3", "must be a list of integers, each >= 1, got '3'"),
        ("name", 5, "must be a string, got 5"),
    ):
        with pytest.raises(PluginError, match=rf"^generator 'p': setting '{key}' {re.escape(expected)}$"):
            check_settings("generator", "p", Plugin, {key: value})


def test_engines_only_look_for_optional_members_the_contract_declares():
    from reidkit.contracts import CONTRACTS

    generator = CONTRACTS["generators"]

    class Bare:
        def generate(self, items):
            return []

    assert generator.optional_member(Bare, "needs_masks") is True  # what the engine assumed before
    assert generator.optional_member(Bare, "default_masker") is None and not generator.has(Bare, "plan")
    assert generator.optional_member(Bare(), "load")() is None
    assert CONTRACTS["strategies"].optional_member(Bare(), "separate_optimizers")("heads") == {}
    with pytest.raises(KeyError, match="not an optional member of the generator contract"):
        generator.optional_member(Bare, "warm_up")
