"""Ranked lists (reidkit/evaluation/ranked_lists.py): `reidkit eval --ranks`, against lists written out by hand."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import reidkit
from reidkit.evaluation import save_features
from reidkit.evaluation.ranked_lists import BORDER, COLOURS, layout
from tests.helpers import run_cli
from tests.rerank_reference import plain_distances

EXE = Path(sys.executable).parent / "reidkit"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranks")
    result = run_cli("adapt", "synthetic", "--out", root / "world.h5", "--ids", 8, "--height", 32, "--width", 16)
    assert result.exit_code == 0, result.output
    store = reidkit.open_store(root / "world.h5")
    index = np.concatenate([store.split("query"), store.split("gallery")])
    rng = np.random.default_rng(2)
    person, outfit = rng.standard_normal((1000, 12)), rng.standard_normal((1000, 12))
    feats = (person[store.pid[index]] + 0.8 * outfit[store.clothes_id[index]] + 1.5 * rng.standard_normal((len(index), 12))).astype(np.float32)
    save_features(root / "f.npz", feats, index)
    return store, root, feats, index


def label_of(store, qi, gj, rule):
    """correct / wrong / junk of store images qi (query) and gj (gallery) under ``rule``, from docs/eval.md."""
    if store.pid[qi] != store.pid[gj]:
        return "wrong"
    same_clothes = store.clothes_id[qi] == store.clothes_id[gj]
    if store.camera[qi] == store.camera[gj] or (rule == "cc" and same_clothes) or (rule == "sc" and not same_clothes):
        return "junk"
    return "correct"


def reference_lists(store, feats, index, rule, k):
    """Every query's AP and its list: gallery by distance (other persons first at equal distance, then position),
    junk shown but not counted, until k counted items."""
    row = {int(i): r for r, i in enumerate(index)}
    q, g = store.split("query"), store.split("gallery")
    d = plain_distances(feats[[row[int(i)] for i in q]], feats[[row[int(i)] for i in g]], "cosine")
    aps, lists = [], []
    for a, qi in enumerate(q):
        labels = [label_of(store, qi, gj, rule) for gj in g]
        order = sorted(range(len(g)), key=lambda b: (d[a, b], labels[b] != "wrong", b))
        kept = [b for b in order if labels[b] != "junk"]
        hits = [r + 1 for r, b in enumerate(kept) if labels[b] == "correct"]
        aps.append(sum((n + 1) / r for n, r in enumerate(hits)) / len(hits) if hits else None)
        shown, counted = [], 0
        for b in order:
            if counted == k:
                break
            shown.append(b)
            counted += labels[b] != "junk"
        lists.append({"gallery": shown, "labels": [labels[b] for b in shown], "distances": [d[a, b] for b in shown]})
    return aps, lists


def test_worst_queries_json_and_picture(world, tmp_path):
    store, root, feats, index = world
    out = tmp_path / "ranks.png"
    result = run_cli("eval", store.path, "--features", root / "f.npz", "--protocol", "standard,cc", "--ranks", 3, "--ranks-k", 4,
                     "--ranks-out", out, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    q, g = store.split("query"), store.split("gallery")
    for r in rows:
        aps, lists = reference_lists(store, feats, index, r["rule"], 4)
        valid = [a for a in range(len(q)) if aps[a] is not None]
        worst = sorted(valid, key=lambda a: (aps[a], a))[:3]
        got = r["ranked_lists"]
        assert [e["query"] for e in got] == worst, r["protocol"]
        for e in got:
            want = lists[e["query"]]
            assert e["query_image"] == int(q[e["query"]])
            assert e["ap"] == pytest.approx(aps[e["query"]], abs=1e-6)
            assert e["gallery"] == want["gallery"] and e["labels"] == want["labels"]
            assert e["gallery_images"] == [int(g[b]) for b in want["gallery"]]
            assert e["distances"] == pytest.approx(want["distances"], abs=1e-6)
            assert sum(lab != "junk" for lab in e["labels"]) == 4
    assert any("junk" in e["labels"] for r in rows for e in r["ranked_lists"])  # the case is not trivial
    assert any("correct" in e["labels"] for r in rows for e in r["ranked_lists"])

    # the picture: one section per protocol, each tile's border in its label's colour, the store's image inside
    sections = [(r["protocol"], r["ranked_lists"]) for r in rows]
    height, width, _, boxes = layout(sections)
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[0] == height and picture.shape[1] >= width
    assert len(boxes) == sum(1 + len(e["labels"]) for _, entries in sections for e in entries)
    for s, r_, slot, label, x, y in boxes:
        assert tuple(picture[y + 1, x + 1]) == COLOURS[label], (s, r_, slot, label)
        entry = sections[s][1][r_]
        assert label == ("query" if slot == 0 else entry["labels"][slot - 1])
        image = store.image(entry["query_image"] if slot == 0 else entry["gallery_images"][slot - 1])
        centre = picture[y + BORDER + 64, x + BORDER + 32].astype(int)
        assert np.abs(centre - image[16, 8].astype(int)).max() <= 60  # the (resized) store image, not another colour


def test_chosen_queries_in_the_order_given(world, tmp_path):
    store, root, feats, index = world
    out = tmp_path / "chosen.png"
    result = run_cli("eval", store.path, "--features", root / "f.npz", "--protocol", "sc", "--ranks-queries", "5,0",
                     "--ranks-out", out, "--json", "--no-verification")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)[0]["ranked_lists"]
    _, lists = reference_lists(store, feats, index, "sc", 10)
    assert [e["query"] for e in got] == [5, 0]
    for e in got:
        assert e["labels"] == lists[e["query"]]["labels"] and e["gallery"] == lists[e["query"]]["gallery"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,words", [
    (["--ranks", "3"], "--ranks-out"),
    (["--ranks", "0", "--ranks-out", "{out}"], "--ranks"),
    (["--ranks-queries", "0,12", "--ranks-out", "{out}"], "has 12 queries"),
    (["--ranks-queries", "x", "--ranks-out", "{out}"], "--ranks-queries"),
])
def test_bad_rank_options_are_one_line_and_write_nothing(world, tmp_path, args, words):
    store, root, _, _ = world
    args = [a.replace("{out}", str(tmp_path / "r.png")) for a in args]
    proc = subprocess.run([str(EXE), "eval", str(store.path), "--features", str(root / "f.npz"), *args, "--plot",
                           str(tmp_path / "cmc.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_section_from_a_runner(world):
    """``reidkit report`` evaluates through evaluate_runner(ranks=...) and shows the picture under "Ranked lists"."""
    import base64
    import re

    import cv2

    from reidkit.evaluation.runner import evaluate_runner
    from reidkit.reporting.collect import REPORT_RANKS, RunSummary, ranked_picture
    from reidkit.reporting.page import run_section

    store, root, feats, index = world
    row = {int(i): r for r, i in enumerate(index)}

    class Features:  # a stand-in model: the saved features of the asked images
        device, flip = "cpu", False

        def extract_source(self, store, idx, **_):
            return feats[[row[int(i)] for i in idx]]

    results = evaluate_runner(Features(), store, protocols=["standard"], ranks=REPORT_RANKS)
    aps, lists = reference_lists(store, feats, index, "standard", 10)
    worst = sorted([a for a in range(len(aps)) if aps[a] is not None], key=lambda a: (aps[a], a))[:5]
    got = results["standard"]["ranked_lists"]
    assert [e["query"] for e in got] == worst and all(e["labels"] == lists[e["query"]]["labels"] for e in got)
    assert "tpr_at_fpr" not in results["standard"]  # the report asks for ranked lists only
    summary = RunSummary(name="run", path=root, config={}, results=results, ranked=ranked_picture(store, results))
    page = run_section(summary)
    assert "<h3>Ranked lists</h3>" in page
    data = re.search(r'<img alt="ranked lists of the worst queries" src="data:image/png;base64,([^"]+)"', page).group(1)
    pixels = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape[:2] == summary.ranked.shape[:2]
    assert "Ranked lists" not in run_section(RunSummary(name="run", path=root, config={}, results=results))


@pytest.mark.parametrize("rule", ["standard", "cc", "sc"])
def test_ties_and_blocks_follow_the_written_out_order(rule):
    from reidkit.evaluation.protocols import EvalSet
    from reidkit.evaluation.ranked_lists import RankedLists
    from reidkit.evaluation.verification import PairRule

    rng = np.random.default_rng(11)
    nq, ng, k = 9, 40, 5
    qp, gp = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    qc, gc = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    qcl, gcl = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    d = (rng.integers(0, 4, (nq, ng)) / 4).astype(np.float32)  # four distinct distances: ties everywhere
    query = EvalSet(np.zeros((nq, 1)), qp, qc, qcl, np.arange(nq))
    gallery = EvalSet(np.zeros((ng, 1)), gp, gc, gcl, 100 + np.arange(ng))
    pairs = PairRule(rule, gp, gc, gcl if rule != "standard" else None)
    for rows in (1, 4, nq):
        lists = RankedLists(query, gallery, rule, k=k)
        for s in range(0, nq, rows):
            lists.add_block(d[s : s + rows], pairs.pairs(s, qp[s : s + rows], qc[s : s + rows], qcl[s : s + rows]))
        for a in range(nq):
            labels = []
            for b in range(ng):
                if qp[a] != gp[b]:
                    labels.append("wrong")
                elif qc[a] == gc[b] or (rule == "cc" and qcl[a] == gcl[b]) or (rule == "sc" and qcl[a] != gcl[b]):
                    labels.append("junk")
                else:
                    labels.append("correct")
            order = sorted(range(ng), key=lambda b: (d[a, b], labels[b] != "wrong", b))
            shown, counted = [], 0
            for b in order:
                if counted == k:
                    break
                shown.append(b)
                counted += labels[b] != "junk"
            entry = lists.entries(order=[a])[0]
            assert entry["gallery"] == shown and entry["labels"] == [labels[b] for b in shown], (rows, a)
            assert entry["gallery_images"] == [100 + b for b in shown]
