"""reidkit show: contact sheet PNG and HTML page of a generated run."""

import cv2
import pytest

import reidkit
from reidkit.generation import run_expand
from tests.helpers import make_world, run_cli, run_console


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("sw")
    path = make_world(d / "w.h5", ids=4, outfits=2, cameras=2, shots=1)
    run_expand(path, variants=3, name="r", show_progress=False)
    run_expand(path, variants=2, name="rej", filters=["sanity:min_change=1000"], show_progress=False)
    return path


def test_sheet_and_html_show_originals_variants_prompts_and_masks(store, tmp_path):
    out, page = tmp_path / "sheet.png", tmp_path / "page"
    result = run_cli("show", store, "--run", "r", "--out", out, "--html", page, "--masks", "--sources", "3")
    assert result.exit_code == 0, result.output
    sheet = cv2.imread(str(out))
    # 3 rows; original + mask + 3 variants per row
    assert sheet.shape[0] > 3 * 160 and sheet.shape[1] == 2 + 5 * (80 + 2)
    text = (page / "index.html").read_text()
    run = reidkit.open_store(store).run("r")
    shown = [j for j in range(len(run)) if f"original #{int(run.source_index()[j])} " in text]
    assert len(shown) == 9
    for j in shown:
        assert run.column("prompt")[j] in text and f"seed {int(run.column('seed')[j])}" in text
    assert len(list((page / "img").glob("*.png"))) == 15
    assert "mask (ground_truth)" in text


def test_rejected_items_are_marked(store, tmp_path):
    result = run_cli("show", store, "--run", "rej", "--out", tmp_path / "s.png", "--html", tmp_path / "h")
    assert result.exit_code == 0
    assert f"0/{len(reidkit.open_store(store).run('rej'))} items kept" in result.output
    assert "<b>rejected</b>: sanity: unchanged" in (tmp_path / "h" / "index.html").read_text()


def test_unknown_run_is_one_line(store, tmp_path):
    proc = run_console("show", store, "--run", "nope", "--out", tmp_path / "x.png")
    assert proc.returncode == 1 and "no generated run 'nope'" in proc.stderr and "runs: r, rej" in proc.stderr


def test_bank_summary_and_parse_failures_listed(store, tmp_path, monkeypatch):
    result = run_cli("show", store, "--run", "r", "--out", tmp_path / "s.png", "--html", tmp_path / "h")
    # templates have no model replies: no "0 model replies did not parse"
    assert "clothing bank 'templates': " in result.output and "did not parse" not in result.output
    assert "clothing bank templates:" in (tmp_path / "h" / "index.html").read_text()
    from types import SimpleNamespace

    from reidkit.generation import contact_sheet

    fake = SimpleNamespace(name="llava-llama", entries={"a": None, "b": None, "c": None}, parse_failures=2)
    monkeypatch.setattr(contact_sheet, "run_bank", lambda store, run: fake)
    result = run_cli("show", store, "--run", "r", "--out", tmp_path / "s2.png")
    assert "clothing bank 'llava-llama': 3 outfits, 2 model replies did not parse" in result.output


def test_show_without_run_lists_the_runs(store, tmp_path):
    proc = run_console("show", store, "--out", tmp_path / "x.png")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = [l for l in proc.stderr.splitlines() if l.startswith("Error:")]
    runs = reidkit.open_store(store).runs()
    assert len(line) == 1 and "--run" in line[0], proc.stderr
    assert f"r ({len(runs['r'])} items), rej ({len(runs['rej'])} items)" in line[0]
    assert not (tmp_path / "x.png").exists()
    empty = make_world(tmp_path / "e.h5", ids=4, outfits=2, cameras=2, shots=1)
    proc = run_console("show", empty)
    assert proc.returncode == 2 and "no generated run to show yet" in proc.stderr and "reidkit expand" in proc.stderr


def test_json_is_one_object_on_stdout(store, tmp_path):
    import json

    result = run_cli("show", store, "--run", "rej", "--out", tmp_path / "s.png", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)  # messages went to stderr
    run = reidkit.open_store(store).run("rej")
    assert data["items"] == len(run) and data["kept"] == int(run.kept().sum()) == 0
    assert data["sheet"] == str(tmp_path / "s.png") and data["html"] is None and data["bank"]["name"] == "templates"
