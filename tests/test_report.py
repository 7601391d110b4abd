"""``reidkit report``: the page holds what a run's folder and store say, and a real browser draws it."""
import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers import make_world, run_cli

TRAIN = ("--weights", "none", "--backbone", "resnet10t", "--height", "64", "--width", "32", "--batch", "2,2",
         "--epochs", "2", "--eval-every", "1", "--device", "cpu", "--num-workers", "0")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A store, a recolor run, and two trained runs: without and with the generated images."""
    d = tmp_path_factory.mktemp("report")
    store = make_world(d / "w.h5", ids=4, cameras=2, extra=("--height", "64", "--width", "32"))
    assert run_cli("expand", store, "--generator", "recolor", "--variants", "2").exit_code == 0
    plain = run_cli("train", store, "--strategy", "baseline", "--out", d / "plain", *TRAIN)
    assert plain.exit_code == 0, plain.output
    expanded = run_cli("train", store, "--plugin", "progressive", "--generated", "recolor-train-k2-s0", "--out", d / "expanded", *TRAIN)
    assert expanded.exit_code == 0, expanded.output
    return d, store


def _tables(page: str) -> list[list[list[str]]]:
    """Every table of the page as rows of cell texts."""
    out = []
    for t in re.findall(r"<table>(.*?)</table>", page, re.S):
        out.append([[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
                    for row in re.findall(r"<tr>(.*?)</tr>", t, re.S)])
    return out


def test_one_run_page_holds_its_results_curves_images_and_provenance(runs):
    d, store = runs
    result = run_cli("report", d / "expanded")
    assert result.exit_code == 0, result.output
    page = (d / "expanded" / "report.html").read_text()
    # the results table equals what 'reidkit eval --checkpoint' reports for the same run
    evaluated = json.loads(run_cli("eval", store, "--checkpoint", d / "expanded", "--json").stdout)
    results = next(t for t in _tables(page) if t[0][:3] == ["protocol", "queries", "gallery"])
    assert [r[0] for r in results[1:]] == [e["protocol"] for e in evaluated]
    for row, e in zip(results[1:], evaluated):
        assert row[3] == f"{100 * e['rank1']:.1f}" and row[6] == f"{100 * e['mAP']:.1f}"
    settings = dict(r for r in _tables(page)[0][1:])
    assert settings["strategy"] == "progressive (base cal)" and settings["generated runs"] == "recolor-train-k2-s0"
    assert settings["epochs"] == "2 of 2 finished"
    provenance = {r[0]: r[1] for t in _tables(page) for r in t if len(r) == 2}
    from reidkit import open_store

    assert provenance["store fingerprint"] == open_store(store).fingerprint
    made = 2 * len(open_store(store).split("train"))  # two variants of every training image, recolor rejects none
    assert provenance["items"] == f"{made} made, {made} kept (100%)"
    # every figure is a real PNG inside the page: loss curves, per-epoch evaluation, CMC, the contact sheet
    import cv2

    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert {alt for alt, _ in images} >= {"training losses per epoch", "evaluation per epoch", "CMC curves",
                                          "originals and kept variants of recolor-train-k2-s0"}
    for alt, data in images:
        pixels = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert pixels is not None and pixels.std() > 5, alt  # decodes, and is not a blank rectangle


def test_several_runs_are_compared_and_the_best_is_marked(runs):
    d, store = runs
    out = d / "both.html"
    assert run_cli("report", d / "plain", d / "expanded", "--out", out).exit_code == 0
    page = out.read_text()
    comparison = _tables(page)[0]
    assert [r[0] for r in comparison[1:]] == ["plain", "expanded"]
    assert comparison[0][1:3] == ["standard R1", "standard mAP"]
    # the bold cell of each column is its largest value
    body = re.search(r"<h2>Comparison</h2>\s*<table>(.*?)</table>", page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)[1:]
    cells = [re.findall(r'<td class="([^"]*)">([^<]*)</td>', r) for r in rows]
    for c in range(1, len(cells[0])):
        values = [float(row[c][1]) for row in cells]
        marked = [row[c][0] == "best" for row in cells]
        assert marked == [v == max(values) and len(set(values)) > 1 for v in values]  # a tie marks nothing
    assert page.count('alt="CMC of every run, protocol') == len({h.split()[0] for h in comparison[0][1:]})


def test_json_gives_each_runs_results(runs):
    d, store = runs
    result = run_cli("report", d / "plain", "--out", d / "plain.html", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    evaluated = {e["protocol"]: e for e in json.loads(run_cli("eval", store, "--checkpoint", d / "plain", "--json").stdout)}
    (run,) = data["runs"]
    assert data["path"] == str(d / "plain.html") and run["name"] == "plain" and run["epochs_finished"] == 2
    assert {p: r["mAP"] for p, r in run["results"].items()} == {p: e["mAP"] for p, e in evaluated.items()}


def test_not_a_run_folder_is_one_line(tmp_path):
    result = run_cli("report", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {tmp_path} is not a 'reidkit train' run folder (no config.yaml)"]
    assert not (tmp_path / "report.html").exists()


def test_a_missing_store_is_said_on_the_page(runs, tmp_path):
    d, _ = runs
    moved = tmp_path / "run"
    shutil.copytree(d / "plain", moved)
    result = run_cli("report", moved, "--store", tmp_path / "gone.h5")
    assert result.exit_code == 0, result.output
    page = (moved / "report.html").read_text()
    assert "not found (give --store): results and generated images are not shown" in page
    assert "<h3>Results</h3>" not in page and "training losses per epoch" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_a_real_browser_draws_the_table_and_the_images(runs, tmp_path):
    """Headless Chromium renders the page: its DOM has the tables, and its screenshot is not a blank page."""
    d, _ = runs
    page = d / "expanded" / "report.html"
    if not page.exists():
        assert run_cli("report", d / "expanded").exit_code == 0
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table") >= 4 and "<td class=\"l\">standard</td>" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,3000", f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (3000, 1200)
    ink = (image < 200).any(axis=2)  # anything that is not page background
    assert ink.mean() > 0.03  # text, tables, curves and pictures, not a blank page
    # the images really drew: a contact sheet and charts bring saturated colour, which text and table lines have not
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    assert ((hsv[..., 1] > 120) & (hsv[..., 2] > 60)).sum() > 5000
