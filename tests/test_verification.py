"""TPR at FPR (reidkit/evaluation/verification.py) against scikit-learn's roc_curve and hand-worked values."""
import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

import reidkit
from reidkit.evaluation import save_features
from reidkit.evaluation.verification import PairCounter, tpr_at_fpr, verify_scores
from tests.helpers import run_cli
from tests.rerank_reference import plain_distances

KEYS = ("1e-4", "1e-3", "1e-2", "0.05", "0.2", "0.5")  # the command's three, and larger ones that small cases reach


def sklearn_tpr_at_fpr(positives, negatives, target):
    """The ROC curve of score = -distance (same person = class 1), read at FPR <= target.

    drop_intermediate=False: every threshold. sklearn's default drops the inner points of straight segments
    (diagonal ones too), whose TPR a reading at FPR <= target can need."""
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    fpr, tpr, _ = roc_curve(labels, -np.r_[positives, negatives], drop_intermediate=False)
    return tpr[fpr <= target].max()


def kept_pairs(d, qp, gp, qc, gc, qcl, gcl, rule):
    """Positive and negative distances of the pairs a protocol keeps, written out from the rules (docs/eval.md)."""
    pos, neg = [], []
    for i in range(len(qp)):
        for j in range(len(gp)):
            if qp[i] != gp[j]:
                neg.append(d[i, j])
            elif qc[i] == gc[j] or (rule == "cc" and qcl[i] == gcl[j]) or (rule == "sc" and qcl[i] != gcl[j]):
                continue  # same person, dropped by the rule
            else:
                pos.append(d[i, j])
    return np.array(pos), np.array(neg)


def test_hand_worked_thresholds():
    # positives 0.1, 0.3, 0.5; negatives 0.2, 0.3, 0.4, 0.6 (a positive tied with a negative at 0.3)
    pos, neg = [0.1, 0.3, 0.5], [0.6, 0.3, 0.2, 0.4]
    got = tpr_at_fpr(pos, neg, keys=("1e-3", "0.25", "0.5", "0.74", "0.75", "1"))
    assert got["1e-3"] == pytest.approx(1 / 3)  # no false accept allowed: distance < 0.2 accepts only 0.1
    assert got["0.25"] == pytest.approx(1 / 3)  # one allowed: threshold 0.3 (the 2nd negative), the tied positive is not accepted
    assert got["0.5"] == pytest.approx(2 / 3)  # two: distance < 0.4 accepts 0.1 and 0.3
    assert got["0.74"] == pytest.approx(2 / 3)  # 2.96 allowed is still two
    assert got["0.75"] == pytest.approx(1.0)  # three: distance < 0.6
    assert got["1"] == 1.0  # everything accepted


@pytest.mark.parametrize("seed", range(40))
def test_equals_sklearn_roc_curve_with_ties(seed):
    rng = np.random.default_rng(seed)
    n_pos, n_neg = int(rng.integers(1, 40)), int(rng.integers(1, 400))
    levels = int(rng.integers(2, 12))  # few distinct distances: many ties, within and across the classes
    pos = rng.integers(0, levels, n_pos).astype(np.float32) / levels
    neg = rng.integers(0, levels, n_neg).astype(np.float32) / levels
    got = tpr_at_fpr(pos, neg, keys=KEYS)
    for key in KEYS:
        assert got[key] == pytest.approx(sklearn_tpr_at_fpr(pos, neg, float(key)), abs=1e-12), key


@pytest.mark.parametrize("rule", ["standard", "cc", "sc"])
def test_streamed_blocks_equal_sklearn_on_the_kept_pairs(rule):
    rng = np.random.default_rng(7)
    for case in range(6):
        nq, ng = int(rng.integers(2, 25)), int(rng.integers(2, 70))
        qp, gp = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
        qc, gc = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
        qcl, gcl = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
        d = (rng.integers(0, 9, (nq, ng)) / 8).astype(np.float32)  # ties everywhere
        pos, neg = kept_pairs(d, qp, gp, qc, gc, qcl, gcl, rule)
        for rows in (1, 2, 5, None):  # row blocks of any size: the same figures
            got = verify_scores(d, qp, gp, qc, gc, qcl, gcl, rule, rows=rows, keys=KEYS)
            assert got["verification_pairs"] == {"same": len(pos), "different": len(neg)}
            for key in KEYS:
                if len(pos) == 0 or len(neg) == 0:
                    assert got["tpr_at_fpr"][key] is None
                else:
                    assert got["tpr_at_fpr"][key] == pytest.approx(sklearn_tpr_at_fpr(pos, neg, float(key)), abs=1e-12)


def test_counter_keeps_a_bounded_buffer():
    """Only the floor(f N) + 1 smallest negatives matter: the buffer stays within twice that plus one block."""
    rng = np.random.default_rng(3)
    nq, ng = 400, 250
    gp = np.arange(ng) % 50
    qp = rng.integers(50, 60, nq)  # nobody in the gallery: every pair a negative
    counter = PairCounter(nq * ng, keys=("1e-3", "1e-2"))
    assert counter.keep == (nq * ng) // 100 + 1
    d = rng.random((nq, ng)).astype(np.float32)
    empty = np.zeros((10, 0), np.int64)
    for s in range(0, nq, 10):
        counter.add(d[s : s + 10], empty, empty.astype(bool), empty.astype(bool))
        assert counter.buffered <= 2 * counter.keep + 10 * ng
    assert counter.buffered < (nq * ng) // 10  # far fewer than all 100,000 distances were kept
    flat = np.sort(d.ravel())
    result = counter.result()
    assert result["fpr_thresholds"]["1e-2"] == flat[(nq * ng) // 100]
    assert result["fpr_thresholds"]["1e-3"] == flat[(nq * ng) // 1000]
    assert result["tpr_at_fpr"]["1e-2"] is None  # no same-person pair at all


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    result = run_cli("adapt", "synthetic", "--out", root / "world.h5", "--ids", 8, "--height", 32, "--width", 16)
    assert result.exit_code == 0, result.output
    store = reidkit.open_store(root / "world.h5")
    index = np.concatenate([store.split("query"), store.split("gallery")])
    rng = np.random.default_rng(0)
    person, outfit = rng.standard_normal((1000, 12)), rng.standard_normal((1000, 12))
    feats = (person[store.pid[index]] + 0.8 * outfit[store.clothes_id[index]] + rng.standard_normal((len(index), 12))).astype(np.float32)
    save_features(root / "f.npz", feats, index)
    return store, root, feats, index


def test_eval_json_and_table_report_tpr_at_fpr(world):
    store, root, feats, index = world
    result = run_cli("eval", store.path, "--features", root / "f.npz", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    row = {int(i): r for r, i in enumerate(index)}
    q, g = store.split("query"), store.split("gallery")
    d = plain_distances(feats[[row[int(i)] for i in q]], feats[[row[int(i)] for i in g]], "cosine")
    seen = set()
    for r in rows:
        pos, neg = kept_pairs(d, store.pid[q], store.pid[g], store.camera[q], store.camera[g], store.clothes_id[q],
                              store.clothes_id[g], r["rule"])
        assert r["verification_pairs"] == {"same": len(pos), "different": len(neg)}
        assert list(r["tpr_at_fpr"]) == ["1e-4", "1e-3", "1e-2"]
        for key, value in r["tpr_at_fpr"].items():
            assert value == pytest.approx(sklearn_tpr_at_fpr(pos, neg, float(key)), abs=1e-6), (r["protocol"], key)
        seen.add(round(r["tpr_at_fpr"]["1e-2"], 6))
    assert len(seen) > 1  # the rules' pairs really differ
    table = run_cli("eval", store.path, "--features", root / "f.npz", "--protocol", "cc")
    assert table.exit_code == 0 and "TPR@1e-4" in table.stdout and "TPR@1e-2" in table.stdout
    cc = next(r for r in rows if r["protocol"] == "cc")
    assert f"{100 * cc['tpr_at_fpr']['1e-2']:.1f}" in table.stdout
    off = json.loads(run_cli("eval", store.path, "--features", root / "f.npz", "--json", "--no-verification").stdout)
    assert all("tpr_at_fpr" not in r for r in off)
    assert [r["mAP"] for r in off] == [r["mAP"] for r in rows]  # the ranking metrics are untouched


# -- the pairs a store's protocols keep: junk, distractors, camera subsets, tracklets, single-shot galleries --------
def tiny_store(root):
    from reidkit.adapter import DatasetLayout, EvalProtocol, ImageRecord
    from reidkit.store.imagecodec import encode_png
    from reidkit.store.writer import write_store

    png = encode_png(np.full((8, 4, 3), 127, np.uint8))
    n = iter(range(10**6))

    def record(pid, cam, split, clothes="", tracklet=-1, junk=False, distractor=False):
        return ImageRecord(path=f"{split}/{next(n)}.png", pid=pid, camera=cam, splits=(split,), clothes_key=clothes,
                           tracklet=tracklet, frame=0 if tracklet >= 0 else -1, junk=junk, distractor=distractor, load=lambda: png)

    recs = [record(9, 0, "train", "9_0")]
    for pid in range(1, 6):
        recs += [record(pid, cam, "query", f"{pid}_{cam}") for cam in (0, 1)]
        recs += [record(-1 if pid == 5 else pid, cam, "gallery", "" if pid == 5 else f"{pid}_{cam % 2}", junk=pid == 5)
                 for cam in range(4)]
    recs += [record(0, c, "gallery", "0_0", distractor=True) for c in (1, 2)] + [record(-1, 2, "query", junk=True)]
    t = 0
    for pid in (1, 2, 3):
        for split, cam in (("vquery", 0), ("vgallery", 1), ("vgallery", 2)):
            t += 1
            recs += [record(pid, cam, split, f"{pid}_0", tracklet=t) for _ in range(3)]
    protocols = [EvalProtocol("standard"), EvalProtocol("subset", rule="sc", query_cameras=[0], gallery_cameras=[2, 3]),
                 EvalProtocol("single", gallery_sampling="single_shot", trials=3),
                 EvalProtocol("video", query="vquery", gallery="vgallery", unit="tracklet")]
    write_store(root / "tiny.h5", DatasetLayout(dataset="tiny", records=recs, protocols=protocols))
    return reidkit.open_store(root / "tiny.h5")


def test_protocol_pairs_follow_the_store(tmp_path):
    from reidkit.evaluation.runner import evaluate_features

    store = tiny_store(tmp_path)
    rng = np.random.default_rng(4)
    feats = (rng.integers(0, 4, (len(store), 3)) + 0.5).astype(np.float32)  # few directions: tied distances
    got = evaluate_features(store, feats, np.arange(len(store)), verification=True)

    def members(split, cameras=None):  # junk left out, camera subsets applied: written as a loop on purpose
        return [i for i in store.split(split) if not store.junk[i] and (cameras is None or store.camera[i] in cameras)]

    def check(name, qf, gf, q, g, rule):
        pos, neg = kept_pairs(plain_distances(qf, gf, "cosine"), store.pid[q], store.pid[g], store.camera[q], store.camera[g],
                              store.clothes_id[q], store.clothes_id[g], rule)
        r = got[name]
        assert r["verification_pairs"] == {"same": len(pos), "different": len(neg)}, name
        for key in ("1e-4", "1e-3", "1e-2"):
            assert r["tpr_at_fpr"][key] == pytest.approx(sklearn_tpr_at_fpr(pos, neg, float(key)), abs=1e-6), (name, key)

    q, g = members("query"), members("gallery")
    assert len(q) == 10 and len(g) == 18  # the junk query and person 5's junk gallery images are out, distractors in
    check("standard", feats[q], feats[g], q, g, "standard")
    q, g = members("query", [0]), members("gallery", [2, 3])
    check("subset", feats[q], feats[g], q, g, "sc")
    units = {}
    for split in ("vquery", "vgallery"):
        groups = {}
        for i in store.split(split):
            groups.setdefault(int(store.tracklet[i]), []).append(i)
        units[split] = list(groups.values())
    qf = np.array([feats[v].mean(0) for v in units["vquery"]])
    gf = np.array([feats[v].mean(0) for v in units["vgallery"]])
    check("video", qf, gf, [v[0] for v in units["vquery"]], [v[0] for v in units["vgallery"]], "standard")
    # single-shot: one gallery image for each of persons 1..4 and the distractor id 0, every trial
    assert got["single"]["verification_pairs"]["different"] == 10 * 5 - 8
    person_feats = np.eye(16, dtype=np.float32)[store.pid % 16] + 1e-3
    single = evaluate_features(store, person_feats, np.arange(len(store)), ["single"], verification=True)["single"]
    assert single["tpr_at_fpr"] == {"1e-4": 1.0, "1e-3": 1.0, "1e-2": 1.0}


def test_verification_and_ranked_lists_ride_the_rankings_one_pass(tmp_path, monkeypatch):
    # With re-ranking (the costly distances), eval's ranking, verification and ranked lists read one production of
    # each trial's distance blocks: one KReciprocal per trial, not two; the figures are those of the whole re-ranked
    # matrix scored and counted directly (single-shot: 3 trials, so 3 re-rankings).
    from reidkit.evaluation import rerank
    from reidkit.evaluation.protocols import build_set, _split_images
    from reidkit.evaluation.ranking import evaluate_scores
    from reidkit.evaluation.runner import evaluate_features

    store = tiny_store(tmp_path)
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((len(store), 6)).astype(np.float32)
    made = []

    class Counted(rerank.KReciprocal):
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(rerank, "KReciprocal", Counted)
    settings = {"k1": 4, "k2": 2, "lambda": 0.3}
    got = evaluate_features(store, feats, np.arange(len(store)), ["standard", "single"], rerank=settings,
                            verification=True, ranks={"n": 3, "k": 5, "queries": None})
    assert len(made) == 1 + 3
    r = got["standard"]
    protocol = next(p for p in store.protocols if p.name == "standard")
    row_of = np.arange(len(store))
    sets = [build_set(store, _split_images(store, split, None, role, protocol), feats, row_of, "image", role, protocol)
            for split, role in (("query", "query"), ("gallery", "gallery"))]
    query, gallery = sets
    d = rerank.k_reciprocal(query.features, gallery.features, 4, 2, 0.3)
    want = evaluate_scores(d, query.person, gallery.person, query.camera, gallery.camera)
    assert r["mAP"] == pytest.approx(want["mAP"], abs=1e-12) and r["cmc"] == pytest.approx(want["cmc"], abs=1e-12)
    counted = verify_scores(d, query.person, gallery.person, query.camera, gallery.camera)
    assert r["tpr_at_fpr"] == counted["tpr_at_fpr"] and r["verification_pairs"] == counted["verification_pairs"]
    assert len(r["ranked_lists"]) == 3 and all(sum(x != "junk" for x in e["labels"]) == 5 for e in r["ranked_lists"])
    assert "tpr_at_fpr" in got["single"] and "ranked_lists" in got["single"]
