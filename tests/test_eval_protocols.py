"""evaluate_store: protocols read from a store (junk, distractors, camera subsets, single-shot, tracklets)."""
from collections import defaultdict

import numpy as np
import pytest

import reidkit
from reidkit.adapter import DatasetLayout, EvalProtocol, ImageRecord
from reidkit.errors import ReidkitError
from reidkit.evaluation import evaluate_store
from reidkit.store.imagecodec import encode_png
from reidkit.store.writer import write_store
from tests.eval_reference import reference_metrics
from tests.rerank_reference import plain_distances

PNG = encode_png(np.full((8, 4, 3), 127, np.uint8))
PROTOCOLS = [
    EvalProtocol("standard"),
    EvalProtocol("cc", rule="cc"),
    EvalProtocol("subset", rule="sc", query_cameras=[0], gallery_cameras=[2, 3]),
    EvalProtocol("single", gallery_sampling="single_shot", trials=3),
    EvalProtocol("video", query="vquery", gallery="vgallery", unit="tracklet"),
]


def record(pid, cam, split, clothes="", tracklet=-1, frame=-1, junk=False, distractor=False):
    return ImageRecord(path=f"{split}/{pid}_{cam}_{clothes}_{tracklet}_{frame}_{np.random.random()}.png", pid=pid, camera=cam,
                       splits=(split,), clothes_key=clothes, tracklet=tracklet, frame=frame, junk=junk,
                       distractor=distractor, load=lambda: PNG)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    recs = [record(9, 0, "train", "9_0")]
    for pid in range(1, 6):
        for cam in (0, 1):
            recs.append(record(pid, cam, "query", f"{pid}_{cam % 2}"))
        for cam in range(4):
            # person 5's gallery images are all junk: its queries have no positive left
            junk = pid == 5
            recs.append(record(-1 if junk else pid, cam, "gallery", "" if junk else f"{pid}_{cam % 2}", junk=junk))
    recs += [record(0, c, "gallery", "0_0", distractor=True) for c in (1, 2)]
    recs.append(record(-1, 2, "query", junk=True))
    # video: 3 persons, query tracklets in cam 0, gallery tracklets in cams 1 and 2, 3 frames each
    t = 0
    for pid in (1, 2, 3):
        for split, cam in (("vquery", 0), ("vgallery", 1), ("vgallery", 2)):
            t += 1
            recs += [record(pid, cam, split, f"{pid}_0", tracklet=t, frame=f) for f in range(3)]
    layout = DatasetLayout(dataset="tiny", records=recs, protocols=PROTOCOLS)
    path = tmp_path_factory.mktemp("eval") / "tiny.h5"
    write_store(path, layout)
    return reidkit.open_store(path)


def all_features(store, seed=0, dim=6):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((len(store), dim)).astype(np.float32), np.arange(len(store))


def plain_members(store, split, cameras=None):
    """Images of a split, junk left out, optionally only some cameras: written as a loop on purpose."""
    return [i for i in store.split(split) if not store.junk[i] and (cameras is None or store.camera[i] in cameras)]


def reference_for(store, feats, q, g, rule):
    d = plain_distances(feats[q], feats[g], "cosine")
    return reference_metrics(d, store.pid[q], store.pid[g], store.camera[q], store.camera[g],
                             store.clothes_id[q], store.clothes_id[g], rule)


@pytest.mark.parametrize("name,rule,qc,gc", [("standard", "standard", None, None), ("cc", "cc", None, None), ("subset", "sc", [0], [2, 3])])
def test_image_protocols_match_reference(store, name, rule, qc, gc):
    feats, index = all_features(store)
    got = evaluate_store(store, feats, index, [name])[name]
    q, g = plain_members(store, "query", qc), plain_members(store, "gallery", gc)
    want = reference_for(store, feats, q, g, rule)
    for k in ("rank1", "rank5", "mAP", "mINP", "valid_queries"):
        assert got[k] == pytest.approx(want[k], abs=1e-6), k
    assert got["queries"] == len(q) and got["gallery"] == len(g)
    assert got["distance"] == "cosine" and got["rerank"] is None


def test_junk_never_evaluated_and_distractors_are_negatives(store):
    feats, index = all_features(store)
    r = evaluate_store(store, feats, index, ["standard"])["standard"]
    assert r["queries"] == 10  # the junk query is left out
    assert r["gallery"] == 5 * 4 - 4 + 2  # 4 junk gallery images out, 2 distractors in
    assert r["valid_queries"] == 8  # person 5's two queries: all their positives were junk, skipped
    # a distractor identical to a query pushes that query's true match down: it is ranked as a negative
    q = plain_members(store, "query")[0]
    distractor = [i for i in store.split("gallery") if store.distractor[i]][0]
    feats2 = feats.copy()
    feats2[distractor] = feats[q]
    assert evaluate_store(store, feats2, index, ["standard"])["standard"]["mAP"] < r["mAP"] or r["mAP"] == 0


def test_single_shot_samples_one_image_per_person_with_recorded_seed(store):
    feats, index = all_features(store)
    a = evaluate_store(store, feats, index, ["single"], seed=4)["single"]
    b = evaluate_store(store, feats, index, ["single"], seed=4)["single"]
    assert a == b and a["trials"] == 3 and a["seed"] == 4 and a["gallery_sampling"] == "single_shot"
    assert a["gallery"] == 5  # one image for each of persons 1..4 and for the distractor id 0
    # with features that only depend on the person, every sampled gallery ranks the true match first
    pid_feats = np.eye(16, dtype=np.float32)[store.pid % 16] + 1e-3
    c = evaluate_store(store, pid_feats, index, ["single"])["single"]
    assert c["rank1"] == 1.0 and c["mAP"] == 1.0


def test_tracklets_average_frame_features(store):
    feats, index = all_features(store, seed=1)
    got = evaluate_store(store, feats, index, ["video"])["video"]
    units = {}
    for split in ("vquery", "vgallery"):
        groups = defaultdict(list)
        for i in store.split(split):
            groups[int(store.tracklet[i])].append(i)
        units[split] = groups
    qf = np.array([feats[v].mean(0) for v in units["vquery"].values()])
    gf = np.array([feats[v].mean(0) for v in units["vgallery"].values()])
    first = lambda groups: [v[0] for v in groups.values()]
    q, g = first(units["vquery"]), first(units["vgallery"])
    want = reference_metrics(plain_distances(qf, gf, "cosine"), store.pid[q], store.pid[g], store.camera[q], store.camera[g])
    assert got["queries"] == 3 and got["gallery"] == 6
    for k in ("rank1", "mAP", "mINP", "valid_queries"):
        assert got[k] == pytest.approx(want[k], abs=1e-6)


def test_euclidean_and_rerank_settings_are_recorded(store):
    feats, index = all_features(store)
    r = evaluate_store(store, feats, index, ["standard"], distance="euclidean", rerank={"k1": 3, "k2": 2, "lambda": 0.5})["standard"]
    assert r["distance"] == "euclidean" and r["rerank"] == {"k1": 3, "k2": 2, "lambda": 0.5}


def test_feature_rows_must_match_the_store(store):
    feats, index = all_features(store)
    with pytest.raises(ReidkitError, match="not defined.*defined: standard, cc, subset, single, video"):
        evaluate_store(store, feats, index, ["bogus"])
    gallery = plain_members(store, "gallery")
    keep = index != gallery[3]
    with pytest.raises(ReidkitError, match="lacks 1 of 18 gallery images of protocol 'standard'"):
        evaluate_store(store, feats[keep], index[keep], ["standard"])
    with pytest.raises(ReidkitError, match="outside the store"):
        evaluate_store(store, feats, index + 1, ["standard"])
    dup = index.copy()
    dup[1] = dup[0]
    with pytest.raises(ReidkitError, match="more than once"):
        evaluate_store(store, feats, dup)
    with pytest.raises(ReidkitError, match="rows but index has"):
        evaluate_store(store, feats[:-1], index)
    bad = feats.copy()
    bad[gallery[0], 2] = np.nan
    with pytest.raises(ReidkitError, match="NaN"):
        evaluate_store(store, bad, index)
    with pytest.raises(ReidkitError, match="unknown distance"):
        evaluate_store(store, feats, index, distance="manhattan")
