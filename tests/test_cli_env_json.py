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


def test_mask_and_train_json(tmp_path):
    store = make_world(tmp_path / "w.h5", ids=4, cameras=2, extra=("--height", "64", "--width", "32"))
    masked = run_cli("mask", store, "--masker", "heuristic", "--json")
    assert masked.exit_code == 0, masked.output
    m = json.loads(masked.stdout)
    from reidkit import open_store

    opened = open_store(store)
    assert m["mask_set"] == "heuristic" and m["images"] == m["covered"] == len(opened.split("train"))
    assert set(m["clothing"]) <= set(m["labels"]) and 0 < m["clothing_share"] < 1
    trained = run_cli("train", store, "--out", tmp_path / "run", "--weights", "none", "--backbone", "resnet10t", "--height", "64",
                      "--width", "32", "--batch", "2,2", "--epochs", "1", "--device", "cpu", "--num-workers", "0",
                      "--steps-per-epoch", "1", "--json")
    assert trained.exit_code == 0, trained.output
    t = json.loads(trained.stdout)
    last = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header, row = last[0].split(","), last[-1].split(",")
    assert t["out"] == str(tmp_path / "run") and t["epoch"] == 1 and t["epochs"] == 1
    assert abs(t["id"] - float(row[header.index("id")])) < 1e-6  # the log's last row
