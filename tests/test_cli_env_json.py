"""Options from REIDKIT_<COMMAND>_<PARAMETER> (click auto_envvar_prefix; a flag wins over it), and --json outputs."""
import json

from tests.helpers import make_world, run_cli


def test_environment_variable_sets_an_option(tmp_path):
    store = make_world(tmp_path / "w.h5", ids=4, cameras=2)
    as_table = run_cli("info", store)
    as_json = run_cli("info", store, env={"REIDKIT_INFO_AS_JSON": "1"})
    assert as_table.exit_code == 0 and not as_table.output.lstrip().startswith("{")
    assert as_json.exit_code == 0 and json.loads(as_json.output)["dataset"] == "synthetic"


def test_adapter_options_read_their_nested_names(tmp_path):
    out = tmp_path / "from-env.h5"
    result = run_cli("adapt", "synthetic", "--ids", 4, "--cameras", 2,
                     env={"REIDKIT_ADAPT_SYNTHETIC_OUT": str(out), "REIDKIT_ADAPT_SYNTHETIC_SEED": "5"})
    assert result.exit_code == 0, result.output
    summary = json.loads(run_cli("info", out, "--json").output)
    assert summary["settings"]["seed"] == 5 and summary["settings"]["ids"] == 4


def test_a_bad_value_in_the_environment_is_one_usage_line(tmp_path):
    store = make_world(tmp_path / "w.h5", ids=4, cameras=2)
    result = run_cli("train", store, "--out", tmp_path / "run", "--epochs", "x", env={})
    assert result.exit_code == 2
    from_env = run_cli("train", store, "--out", tmp_path / "run", env={"REIDKIT_TRAIN_EPOCHS": "abc"})
    assert from_env.exit_code == 2 and "epochs" in from_env.output.lower()
    assert not (tmp_path / "run").exists()


def test_adapt_json_is_the_info_summary(tmp_path):
    out = tmp_path / "w.h5"
    result = run_cli("adapt", "synthetic", "--out", out, "--ids", 4, "--cameras", 2, "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)  # progress and messages went to stderr
    assert written == json.loads(run_cli("info", out, "--json").stdout)
    assert written["settings"]["ids"] == 4 and "as_json" not in written["settings"]
