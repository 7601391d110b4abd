"""``reidkit eval STORE --features FILE`` end to end on a synthetic store."""
import json

import h5py
import numpy as np
import pytest

import reidkit
from reidkit.evaluation import save_features
from tests.eval_reference import reference_metrics
from tests.helpers import run_cli
from tests.rerank_reference import plain_distances, re_ranking


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    path = root / "world.h5"
    result = run_cli("adapt", "synthetic", "--out", path, "--ids", 8, "--height", 32, "--width", 16)
    assert result.exit_code == 0, result.output
    store = reidkit.open_store(path)
    index = np.concatenate([store.split("query"), store.split("gallery")])
    rng = np.random.default_rng(0)
    # person- and outfit-correlated features: metrics well away from 0 and 1, and different per protocol
    person, outfit = rng.standard_normal((1000, 12)), rng.standard_normal((1000, 12))
    feats = person[store.pid[index]] + 0.8 * outfit[store.clothes_id[index]] + rng.standard_normal((len(index), 12))
    feats = feats.astype(np.float32)
    save_features(root / "f.npz", feats, index)
    return store, root, feats, index


def expected(store, feats, index, rule, rerank=None):
    row = {int(i): r for r, i in enumerate(index)}
    q, g = list(store.split("query")), list(store.split("gallery"))
    qf, gf = feats[[row[i] for i in q]], feats[[row[i] for i in g]]
    if rerank:
        d = re_ranking(plain_distances(qf, gf, "cosine"), plain_distances(qf, qf, "cosine"), plain_distances(gf, gf, "cosine"), *rerank)
    else:
        d = plain_distances(qf, gf, "cosine")
    return reference_metrics(d, store.pid[q], store.pid[g], store.camera[q], store.camera[g], store.clothes_id[q], store.clothes_id[g], rule)


def test_json_for_every_protocol_the_store_defines(world):
    store, root, feats, index = world
    result = run_cli("eval", store.path, "--features", root / "f.npz", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["protocol"] for r in rows] == [p.name for p in store.protocols] == ["standard", "cc", "sc"]
    for r in rows:
        want = expected(store, feats, index, r["rule"])
        for k in ("rank1", "rank5", "rank10", "mAP", "mINP", "valid_queries"):
            assert r[k] == pytest.approx(want[k], abs=1e-6), (r["protocol"], k)
    assert len({round(r["mAP"], 6) for r in rows}) == 3  # the rules really differ


def test_rerank_protocol_choice_and_plot(world):
    store, root, feats, index = world
    plot = root / "cmc.png"
    result = run_cli("eval", store.path, "--features", root / "f.npz", "--protocol", "cc", "--protocol", "standard",
                     "--rerank", "--k1", 5, "--k2", 2, "--lambda", 0.4, "--json", "--plot", plot)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["protocol"] for r in rows] == ["cc", "standard"]
    for r in rows:
        assert r["rerank"] == {"k1": 5, "k2": 2, "lambda": 0.4}
        want = expected(store, feats, index, r["rule"], rerank=(5, 2, 0.4))
        assert r["mAP"] == pytest.approx(want["mAP"], abs=1e-5)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_and_hdf5_features(world):
    store, root, feats, index = world
    with h5py.File(root / "f.h5", "w") as h5:
        h5["features"], h5["index"] = feats, index
    result = run_cli("eval", store.path, "--features", root / "f.h5", "--protocol", "sc,cc", "--distance", "euclidean")
    assert result.exit_code == 0, result.output
    assert "sc" in result.stdout and "cc" in result.stdout and "euclidean" in result.stdout and "mAP" in result.stdout


def write(root, name, feats, index):
    np.savez(root / name, features=feats, index=index)
    return root / name


@pytest.mark.parametrize("case,message", [
    ("protocol", "protocol 'bogus' is not defined by store"),
    ("nan", "NaN or infinite values in 1 row"),
    ("missing", "features file lacks 1 of 84 gallery images of protocol 'standard'"),
    ("range", "outside the store's 0..191"),
    ("duplicate", "more than once"),
    ("length", "rows but index has"),
    ("nofile", "does not exist"),
    ("keys", "has no array 'index'"),
    ("device", "unknown torch device 'warp'"),
])
def test_bad_input_one_line_each(world, case, message):
    store, root, feats, index = world
    args = ["--features", root / "f.npz"]
    if case == "protocol":
        args += ["--protocol", "bogus"]
    elif case == "nan":
        bad = feats.copy()
        bad[5, 1] = np.nan
        args = ["--features", write(root, "nan.npz", bad, index)]
    elif case == "missing":
        args = ["--features", write(root, "missing.npz", feats[:-1], index[:-1])]
    elif case == "range":
        args = ["--features", write(root, "range.npz", feats, index + 200)]
    elif case == "duplicate":
        dup = index.copy()
        dup[3] = dup[4]
        args = ["--features", write(root, "dup.npz", feats, dup)]
    elif case == "length":
        args = ["--features", write(root, "len.npz", feats, index[:-2])]
    elif case == "nofile":
        args = ["--features", root / "nope.npz"]
    elif case == "keys":
        np.savez(root / "keys.npz", features=feats)
        args = ["--features", root / "keys.npz"]
    elif case == "device":
        args += ["--device", "warp"]
    result = run_cli("eval", store.path, *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_features_option_is_required(world):
    store, root, _, _ = world
    result = run_cli("eval", store.path)
    assert result.exit_code == 2 and "--features" in result.output
