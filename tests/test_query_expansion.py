"""Alpha-weighted query expansion (reidkit/evaluation/query_expansion.py) against its definition."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reidkit
from reidkit.evaluation import save_features
from reidkit.evaluation.query_expansion import aqe, expand
from tests.eval_reference import reference_metrics
from tests.helpers import run_cli
from tests.rerank_reference import plain_distances, re_ranking


def reference_aqe(q, g, k, alpha):
    """fast-reid's aqe written out: query and gallery stacked; for each item its k most similar items (itself
    included, equal similarity by the lower index), mean of their raw features times similarity ** alpha."""
    x = np.concatenate([q, g]).astype(np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    out = np.zeros_like(x)
    for i in range(len(x)):
        order = sorted(range(len(x)), key=lambda j: (-sims[i, j], j))[:k]
        out[i] = sum(x[j] * sims[i, j] ** alpha for j in order) / k
    return out[: len(q)], out[len(q) :]


@pytest.mark.parametrize("k,alpha,dim", [(5, 3.0, 6), (1, 3.0, 4), (4, 2.5, 8), (30, 3.0, 5)])
def test_equals_the_definition(k, alpha, dim):
    rng = np.random.default_rng(k)
    q, g = rng.standard_normal((7, dim)) * 3, rng.standard_normal((23, dim))
    if alpha != int(alpha):
        q, g = np.abs(q), np.abs(g)  # non-negative similarities: a fractional power is defined
    got_q, got_g = aqe(q, g, k=k, alpha=alpha)
    want_q, want_g = reference_aqe(q, g, k, alpha)
    np.testing.assert_allclose(got_q, want_q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-12, atol=1e-12)
    got32 = expand(np.concatenate([q, g]).astype(np.float32), k, alpha)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, np.concatenate([want_q, want_g]), rtol=1e-4, atol=1e-5)


def test_hand_worked_two_dimensions():
    # query q = (2, 0); gallery g1 = (3, 4), g2 = (0, 1), g3 = (-1, 0); alpha 3
    # cosines: q.g1 = 0.6, q.g2 = 0, q.g3 = -1, g1.g2 = 0.8, g1.g3 = -0.6, g2.g3 = 0
    q = np.array([[2.0, 0.0]])
    g = np.array([[3.0, 4.0], [0.0, 1.0], [-1.0, 0.0]])
    eq, eg = aqe(q, g, k=2, alpha=3)
    # k 2 = the item itself (weight 1) + its nearest other item
    # q:  q and g1 (0.6 ** 3 = 0.216): ((2, 0) + 0.216 (3, 4)) / 2 = (1.324, 0.432)
    np.testing.assert_allclose(eq[0], [1.324, 0.432], atol=1e-12)
    # g1: g1 and g2 (0.8 ** 3 = 0.512): ((3, 4) + 0.512 (0, 1)) / 2 = (1.5, 2.256)
    np.testing.assert_allclose(eg[0], [1.5, 2.256], atol=1e-12)
    # g2: g2 and g1 (0.512): ((0, 1) + 0.512 (3, 4)) / 2 = (0.768, 1.524)
    np.testing.assert_allclose(eg[1], [0.768, 1.524], atol=1e-12)
    # g3: g3 and, of q (-1), g1 (-0.6), g2 (0), g2 with weight 0: ((-1, 0) + 0) / 2 = (-0.5, 0)
    np.testing.assert_allclose(eg[2], [-0.5, 0.0], atol=1e-12)
    eq3, _ = aqe(q, g, k=3, alpha=3)
    # k 3: q, g1 (0.216) and g2 (weight 0): ((2, 0) + (0.648, 0.864) + 0) / 3
    np.testing.assert_allclose(eq3[0], [2.648 / 3, 0.288], atol=1e-12)


def test_equal_similarities_take_the_lower_index():
    # g0 = (0.6, 0.8) and g1 = (0.6, -0.8) are both at cosine 0.6 from q = (1, 0): k 2 takes g0
    q = np.array([[1.0, 0.0]])
    g = np.array([[0.6, 0.8], [0.6, -0.8]])
    eq, _ = aqe(q, g, k=2, alpha=3)
    np.testing.assert_allclose(eq[0], [(1 + 0.216 * 0.6) / 2, 0.216 * 0.8 / 2], atol=1e-12)
    eq_swapped, _ = aqe(q, g[::-1], k=2, alpha=3)
    np.testing.assert_allclose(eq_swapped[0], [(1 + 0.216 * 0.6) / 2, -0.216 * 0.8 / 2], atol=1e-12)


def test_block_size_does_not_change_the_result():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((41, 6))
    x[20] = x[3]  # a duplicate: exact ties in every row
    x[30] = -x[7]
    whole = expand(x, 5, 3.0, rows=len(x))
    for rows in (1, 2, 7, 40):
        np.testing.assert_allclose(expand(x, 5, 3.0, rows=rows), whole, rtol=0, atol=1e-13)
    ref_q, ref_g = reference_aqe(x[:10], x[10:], 5, 3.0)
    np.testing.assert_allclose(whole, np.concatenate([ref_q, ref_g]), atol=1e-12)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("aqe")
    result = run_cli("adapt", "synthetic", "--out", root / "world.h5", "--ids", 8, "--height", 32, "--width", 16)
    assert result.exit_code == 0, result.output
    store = reidkit.open_store(root / "world.h5")
    index = np.concatenate([store.split("query"), store.split("gallery")])
    rng = np.random.default_rng(1)
    person, outfit = rng.standard_normal((1000, 12)), rng.standard_normal((1000, 12))
    feats = person[store.pid[index]] + 0.8 * outfit[store.clothes_id[index]] + 1.2 * rng.standard_normal((len(index), 12))
    save_features(root / "f.npz", feats, index)  # float64: the reference's precision
    return store, root, feats, index


def expected(store, feats, index, rule, k, alpha, rerank=None):
    row = {int(i): r for r, i in enumerate(index)}
    q, g = list(store.split("query")), list(store.split("gallery"))
    qf, gf = reference_aqe(feats[[row[i] for i in q]], feats[[row[i] for i in g]], k, alpha)
    d = plain_distances(qf, gf, "cosine")
    if rerank:
        d = re_ranking(d, plain_distances(qf, qf, "cosine"), plain_distances(gf, gf, "cosine"), *rerank)
    return reference_metrics(d, store.pid[q], store.pid[g], store.camera[q], store.camera[g], store.clothes_id[q],
                             store.clothes_id[g], rule)


def test_eval_aqe_then_rerank_recorded(world):
    store, root, feats, index = world
    plain = json.loads(run_cli("eval", store.path, "--features", root / "f.npz", "--json", "--no-verification").stdout)
    result = run_cli("eval", store.path, "--features", root / "f.npz", "--json", "--aqe", "--aqe-k", 3, "--aqe-alpha", 2)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for r in rows:
        assert r["aqe"] == {"k": 3, "alpha": 2.0}
        want = expected(store, feats, index, r["rule"], 3, 2.0)
        for key in ("rank1", "rank5", "mAP", "mINP", "valid_queries"):
            assert r[key] == pytest.approx(want[key], abs=1e-9), (r["protocol"], key)
    assert all(p["aqe"] is None for p in plain)
    assert [round(p["mAP"], 6) for p in plain] != [round(r["mAP"], 6) for r in rows]  # expansion changed something
    both = run_cli("eval", store.path, "--features", root / "f.npz", "--json", "--aqe", "--rerank", "--k1", 6, "--k2", 3,
                   "--protocol", "standard", "--no-verification")
    assert both.exit_code == 0, both.output
    r = json.loads(both.stdout)[0]
    assert r["aqe"] == {"k": 5, "alpha": 3.0} and r["rerank"] == {"k1": 6, "k2": 3, "lambda": 0.3}
    want = expected(store, feats, index, "standard", 5, 3.0, rerank=(6, 3, 0.3))
    assert r["mAP"] == pytest.approx(want["mAP"], abs=1e-9) and r["rank1"] == pytest.approx(want["rank1"])
    table = run_cli("eval", store.path, "--features", root / "f.npz", "--aqe", "--protocol", "cc", "--no-verification")
    assert table.exit_code == 0 and "AQE k=5 alpha=3" in table.stdout


def test_aqe_k_zero_is_one_line_and_writes_nothing(world, tmp_path):
    store, root, _, _ = world
    exe = Path(sys.executable).parent / "reidkit"
    proc = subprocess.run([str(exe), "eval", str(store.path), "--features", str(root / "f.npz"), "--aqe", "--aqe-k", "0",
                           "--plot", str(tmp_path / "cmc.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--aqe-k" in lines[0] and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
