"""k-reciprocal re-ranking from k-NN lists equals the standard dense implementation."""
import numpy as np
import pytest

from reidkit.evaluation.rerank import KReciprocal, k_reciprocal
from tests.rerank_reference import plain_distances, re_ranking


def dense(q, g, metric, k1, k2, lam):
    return re_ranking(plain_distances(q, g, metric), plain_distances(q, q, metric), plain_distances(g, g, metric), k1, k2, lam)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (6, 3, 0.5), (3, 1, 0.0), (1, 1, 1.0)])
def test_equals_dense_reference(metric, k1, k2, lam):
    rng = np.random.default_rng(k1 * 10 + k2)
    for _ in range(3):
        nq, ng, dim = int(rng.integers(2, 30)), int(rng.integers(3, 90)), int(rng.integers(2, 24))
        # clustered features, so k-reciprocal sets and their expansions are not trivial
        centers = rng.standard_normal((5, dim))
        q = centers[rng.integers(0, 5, nq)] + 0.5 * rng.standard_normal((nq, dim))
        g = centers[rng.integers(0, 5, ng)] + 0.5 * rng.standard_normal((ng, dim))
        want = dense(q, g, metric, k1, k2, lam)
        got = k_reciprocal(q, g, k1, k2, lam, metric=metric)
        assert got.shape == (nq, ng)
        np.testing.assert_allclose(got, want, atol=1e-10)
        got32 = k_reciprocal(q.astype(np.float32), g.astype(np.float32), k1, k2, lam, metric=metric)
        np.testing.assert_allclose(got32, want, atol=1e-5)
        # small blocks: the k-NN pass's upper-triangle blocks and running lists, and query chunks
        np.testing.assert_allclose(k_reciprocal(q, g, k1, k2, lam, metric=metric, rows=5), want, atol=1e-10)


def test_chunks_are_the_same_matrix_and_bounded():
    rng = np.random.default_rng(5)
    q, g = rng.standard_normal((17, 8)), rng.standard_normal((40, 8))
    rr = KReciprocal(q, g, 5, 3, 0.3, rows=4)
    blocks = list(rr.chunks())
    assert [s for s, _ in blocks] == list(range(0, 17, 4))
    assert all(len(b) <= 4 for _, b in blocks)
    np.testing.assert_allclose(np.concatenate([b for _, b in blocks]), dense(q, g, "cosine", 5, 3, 0.3), atol=1e-10)


def test_weight_rows_are_sparse():
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((30, 16)), rng.standard_normal((300, 16))
    rr = KReciprocal(q, g, 4, 2, 0.3)
    # each row of V holds at most (k1 + 1) * (k1/2 + 2) entries before expansion, k2 times that after
    assert np.diff(rr.v.indptr).max() <= 2 * 5 * 4 < rr.n
    # and each row is a distribution
    sums = np.add.reduceat(rr.v.data, rr.v.indptr[:-1])
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)


def test_duplicate_features_tie_by_index_like_a_stable_sort():
    # Small integer features and Euclidean distances: every distance is exact, so duplicates tie exactly
    # in both implementations whatever the summation order.
    rng = np.random.default_rng(11)
    q = rng.integers(-3, 4, (6, 5)).astype(np.float64)
    g = rng.integers(-3, 4, (25, 5)).astype(np.float64)
    g[5:9] = g[4]
    q[2] = g[4]
    np.testing.assert_allclose(k_reciprocal(q, g, 4, 2, 0.3, metric="euclidean"), dense(q, g, "euclidean", 4, 2, 0.3), atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [3, 7, 64])
def test_knn_pass_in_blocks_equals_a_full_stable_sort(rows, dtype):
    # Small integer features and Euclidean distances: products and sums are exact, so blocks of any shape give the
    # d^2 of the whole matrix, and duplicated items tie exactly. The blocked pass (upper-triangle blocks used twice,
    # running lists, entries filtered against each row's farthest kept one) must give the lists of a stable sort of
    # each whole row, however many ties, and its exact maxima.
    from reidkit.evaluation.distance import DistanceComputer
    from reidkit.evaluation.rerank import _knn_pass

    rng = np.random.default_rng(rows)
    feats = rng.integers(-2, 3, (50, 3)).astype(np.float64)
    feats[10:16] = feats[3]
    feats = feats.astype(dtype)  # integer products and sums: exact in either type, whatever the block shapes
    computer = DistanceComputer(feats, "euclidean")
    d2 = computer.self_block(slice(None), slice(None)).square_().numpy()  # the whole matrix at once
    for k in (1, 5, 21):
        knn, row_max, knn_d2 = _knn_pass(computer, feats, k, rows)
        np.testing.assert_array_equal(knn, np.argsort(d2, axis=1, kind="stable")[:, :k])
        np.testing.assert_array_equal(row_max, d2.max(1))
        np.testing.assert_array_equal(knn_d2, np.take_along_axis(d2, knn, axis=1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [4, 9, 64])
def test_cosine_knn_pass_with_exact_ties_equals_a_full_stable_sort(rows, dtype):
    # Four entries of +-1 per vector: normalised entries are +-0.5, so every cosine dot product is a multiple of 1/4,
    # exact in any order and either type: many exactly equal distances (and duplicates), which the blocked pass
    # (upper-triangle blocks used twice, running lists, entries filtered against each row's farthest kept one) must
    # order by index like a stable sort of each whole row, with the exact row maxima.
    from reidkit.evaluation.distance import DistanceComputer
    from reidkit.evaluation.rerank import _knn_pass

    rng = np.random.default_rng(rows)
    feats = np.zeros((60, 6), dtype)
    for r in range(60):
        feats[r, rng.choice(6, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    feats[20:26] = feats[2]
    computer = DistanceComputer(feats, "cosine")
    d2 = computer.self_block(slice(None), slice(None)).square_().numpy()
    assert len(np.unique(d2)) < 10  # ties everywhere
    for k in (1, 5, 21):
        knn, row_max, knn_d2 = _knn_pass(computer, feats, k, rows)
        np.testing.assert_array_equal(knn, np.argsort(d2, axis=1, kind="stable")[:, :k])
        np.testing.assert_array_equal(row_max, d2.max(1))
        np.testing.assert_array_equal(knn_d2, np.take_along_axis(d2, knn, axis=1))


@pytest.mark.parametrize("rows,dim", [(64, 32), (100, 32), (256, 32), (100, 1100)])
def test_similarity_screen_gives_the_distance_block_lists(rows, dim):
    # The float32 cosine pass screens dot products (segments of 64 by their maximum, a threshold with a rounding
    # margin) instead of transforming every distance; over the same blocks it must keep exactly the lists and maxima
    # of the pass that filters the distances themselves: clustered features with near-duplicates (d^2 differing in
    # the last bits, exact duplicates), sizes that leave ragged segments and a last block smaller than k; above
    # 1024 dimensions the products come from numpy's BLAS and the screen runs on one torch thread.
    import torch

    from reidkit.evaluation.distance import DistanceComputer
    from reidkit.evaluation.rerank import _knn_pass_blocks, _knn_pass_screened

    rng = np.random.default_rng(rows)
    centres = rng.standard_normal((12, dim)).astype(np.float32)
    feats = centres[rng.integers(0, 12, 530)] + 0.3 * rng.standard_normal((530, dim)).astype(np.float32)
    feats[40:50] = feats[7] + np.float32(1e-7) * rng.standard_normal((10, dim)).astype(np.float32)
    feats[60:64] = feats[7]
    n = len(feats) - (530 % rows) + 5  # the last block has 5 rows: fewer than k
    feats = feats[:n]
    computer = DistanceComputer(feats, "cosine")
    for k in (1, 21, 30):
        want_knn, want_max, want_d2 = _knn_pass_blocks(computer, feats, k, rows)
        threads = torch.get_num_threads()
        got_knn, got_max, got_d2 = _knn_pass_screened(computer, n, k, rows)
        assert torch.get_num_threads() == threads  # restored
        np.testing.assert_array_equal(got_knn, want_knn)
        np.testing.assert_array_equal(got_max, want_max)
        np.testing.assert_array_equal(got_d2, want_d2)


def test_similarity_threshold_never_screens_out_an_entry_that_can_enter():
    # Every float32 s whose d^2 is at or below a row's farthest kept d^2 must pass the screen: checked on a dense
    # sweep of similarities around many thresholds, including the clamps (s near 1 and near -1).
    import torch

    from reidkit.evaluation.distance import cosine_distance_
    from reidkit.evaluation.rerank import _threshold

    rng = np.random.default_rng(0)
    base = np.concatenate([rng.uniform(-1.0001, 1.0001, 2000), [1.0, -1.0, 0.0, 0.5, -0.5]]).astype(np.float32)
    s = torch.from_numpy(np.concatenate([base + np.float32(j) * np.spacing(base) for j in range(-40, 41)]))
    d2 = cosine_distance_(s.clone()).square_()
    far = d2[torch.from_numpy(rng.integers(0, len(s), 3000))]
    thr = _threshold(far)
    enters = d2[None, :] <= far[:, None]
    assert bool((s[None, :] >= thr[:, None])[enters].all())
    assert float((s[None, :] >= thr[:, None]).float().mean()) < float(enters.float().mean()) + 0.01  # a margin, not an open screen


def _final(q, g, *args, **kwargs):
    rr = KReciprocal(q, g, *args, **kwargs)
    return rr, np.concatenate([b for _, b in rr.chunks()])


@pytest.mark.parametrize("metric,dtype,atol", [("cosine", np.float32, 1e-6), ("euclidean", np.float32, 1e-5),
                                               ("cosine", np.float64, 1e-12)])
def test_kept_query_gallery_distances_give_the_recomputed_result(metric, dtype, atol):
    # The final blocks read the k-NN pass's query x gallery distances (dot products under the float32 cosine screen,
    # distances in the block pass) instead of a second product; where the bound keeps only some queries the others
    # are computed again (query chunks straddle the boundary), and with a bound of 0 all are. Small blocks (rows=6)
    # put the query / gallery boundary inside blocks. Same final distances within the products' rounding.
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((6, 12))
    q = (centres[rng.integers(0, 6, 23)] + 0.4 * rng.standard_normal((23, 12))).astype(dtype)
    g = (centres[rng.integers(0, 6, 70)] + 0.4 * rng.standard_normal((70, 12))).astype(dtype)
    want_rr, want = _final(q, g, 8, 3, 0.3, metric, rows=6, cache_bytes=0)
    assert want_rr.kept is None  # the bound forces the recomputing path
    np.testing.assert_allclose(want, dense(q, g, metric, 8, 3, 0.3), atol=1e-5 if dtype == np.float32 else 1e-10)
    row_bytes = 70 * np.dtype(dtype).itemsize
    for bound, kept_rows in ((None, 23), (10 * row_bytes + 1, 10)):
        rr, got = _final(q, g, 8, 3, 0.3, metric, rows=6, cache_bytes=bound)
        assert len(rr.kept.data) == kept_rows
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
        kept = rr.kept.distances(0, kept_rows).numpy()
        np.testing.assert_allclose(kept, rr.computer.block(q[:kept_rows], slice(23, 93)), rtol=0, atol=atol)


def test_one_set_keeps_both_halves_of_each_block_and_cluster_contrast_settings_still_work():
    # One set (g_feats=None): queries are the gallery too, so the kept N x N part is filled from each block above the
    # diagonal and from its transpose. Cluster Contrast's Jaccard (neighbours=k1, scaled=False, lambda_=0) does not
    # read the original distances: nothing is kept, nothing computed, the same distances.
    rng = np.random.default_rng(8)
    f = rng.standard_normal((45, 10)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    _, want = _final(f, None, 8, 3, 0.3, rows=7, cache_bytes=0)
    for bound in (None, 20 * 45 * 4):
        rr, got = _final(f, None, 8, 3, 0.3, rows=7, cache_bytes=bound)
        assert rr.kept is not None and len(rr.kept.data) == (45 if bound is None else 20)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    settings = dict(metric="euclidean", neighbours=8, scaled=False, rows=7)
    rr, jaccard = _final(f, None, 8, 3, 0.0, **settings)
    assert rr.kept is None
    rr.lambda_ = 1e-300  # the general path: mixing in d^2 / max at a weight that rounds it away
    np.testing.assert_array_equal(jaccard, np.concatenate([b for _, b in rr.chunks()]))
    assert jaccard.dtype == np.float32 and (jaccard[np.eye(45, dtype=bool)] < 1).all() and (jaccard == 1).any()


def _clustered(seed, nq, ng, dim, dtype):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, dim))
    q = centres[rng.integers(0, 5, nq)] + 0.4 * rng.standard_normal((nq, dim))
    g = centres[rng.integers(0, 5, ng)] + 0.4 * rng.standard_normal((ng, dim))
    return q.astype(dtype), g.astype(dtype)


def _with_ties(dtype):
    # small integer features with duplicated items: exact distances, so neighbours and weights tie exactly
    rng = np.random.default_rng(11)
    q = rng.integers(-3, 4, (9, 5)).astype(dtype)
    g = rng.integers(-3, 4, (40, 5)).astype(dtype)
    g[5:9] = g[4]
    q[2] = g[4]
    q[6] = q[5]
    return q, g


_SETTINGS = {
    "standard": dict(k1=8, k2=3, lambda_=0.3),
    "cluster_contrast": dict(k1=8, k2=3, lambda_=0.0, neighbours=8, scaled=False),
    "no_expansion": dict(k1=6, k2=1, lambda_=0.5),
}


@pytest.mark.parametrize("settings", sorted(_SETTINGS))
@pytest.mark.parametrize("one_set", [False, True])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("ties", [False, True])
def test_sparse_stages_on_device_give_the_numpy_result(settings, one_set, metric, dtype, atol, ties):
    # sparse_on_device=True runs the torch code a GPU runs (weights, expansion, gallery index, Jaccard blocks) on the
    # CPU: the same weight rows and final distances as the numpy path, within the float64 sums' order of rounding
    # (and the final precision's rounding in float32). Small query chunks (rows=6) exercise the chunking.
    q, g = _with_ties(dtype) if ties else _clustered(len(settings) + 7 * one_set, 23, 70, 12, dtype)
    gallery = None if one_set else g
    kwargs = dict(_SETTINGS[settings], metric=metric, rows=6)
    want_rr, want = _final(q, gallery, **kwargs)
    got_rr, got = _final(q, gallery, sparse_on_device=True, **kwargs)
    assert got_rr.sparse_on_device and not want_rr.sparse_on_device
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    # the sparse structure itself: same rows, same entries, same weights; same gallery column index
    np.testing.assert_array_equal(got_rr.v.indptr.numpy(), want_rr.v.indptr)
    np.testing.assert_array_equal(got_rr.v.indices.numpy(), want_rr.v.indices)
    np.testing.assert_allclose(got_rr.v.data.numpy(), want_rr.v.data, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(got_rr.col_ptr.numpy(), want_rr.col_ptr)
    np.testing.assert_array_equal(got_rr.col_rows.numpy(), want_rr.col_rows)
    np.testing.assert_array_equal(got_rr._jaccard_pairs(np.arange(len(q))), want_rr._jaccard_pairs(np.arange(len(q))))


def test_sparse_stages_on_device_match_the_dense_reference_and_bound_chunks_by_pairs(monkeypatch):
    # Against the dense reference directly, and with a pair budget so small that every chunk is one query (the
    # chunks' bound is the numpy path's: the device code only computes the blocks chunks() chooses).
    from reidkit.evaluation import rerank

    q, g = _clustered(2, 17, 60, 8, np.float64)
    _, got = _final(q, g, 8, 3, 0.3, "euclidean", sparse_on_device=True)
    np.testing.assert_allclose(got, dense(q, g, "euclidean", 8, 3, 0.3), atol=1e-10)
    monkeypatch.setattr(rerank, "_PAIR_BUDGET", 1)
    rr = KReciprocal(q, g, 8, 3, 0.3, "euclidean", sparse_on_device=True)
    blocks = list(rr.chunks())
    assert [s for s, _ in blocks] == list(range(17)) and all(len(b) == 1 for _, b in blocks)
    np.testing.assert_allclose(np.concatenate([b for _, b in blocks]), got, rtol=0, atol=1e-15)


def test_device_expansion_sets_and_from_coo_equal_numpy():
    # The building blocks alone: expansion sets (exact integers), and COO -> CSR with duplicates summed.
    import torch

    from reidkit.evaluation import rerank_device
    from reidkit.evaluation.rerank import SparseRows, _expansion_sets, _knn_pass
    from reidkit.evaluation.distance import DistanceComputer

    q, g = _with_ties(np.float64)
    feats = np.concatenate([q, g])
    knn, _, _ = _knn_pass(DistanceComputer(feats, "euclidean"), feats, 21)
    for k1 in (1, 4, 20):
        rows = np.arange(3, 30)
        want = _expansion_sets(knn[:, : k1 + 1], k1, rows)
        got = rerank_device.expansion_sets(torch.as_tensor(knn[:, : k1 + 1]), k1, torch.as_tensor(rows))
        np.testing.assert_array_equal(got.numpy(), want)
    rng = np.random.default_rng(0)
    rows, cols, vals = rng.integers(0, 7, 200), rng.integers(0, 9, 200), rng.random(200)
    want = SparseRows.from_coo(8, rows, cols, vals, 9)
    got = rerank_device.DeviceRows.from_coo(8, *(torch.as_tensor(a) for a in (rows, cols, vals)), 9)
    np.testing.assert_array_equal(got.indptr.numpy(), want.indptr)
    np.testing.assert_array_equal(got.indices.numpy(), want.indices)
    np.testing.assert_allclose(got.data.numpy(), want.data, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_on_a_gpu_the_sparse_stages_run_there_and_give_the_cpu_result(dtype, atol):
    # For a GPU session: device="cuda" puts the sparse stages on the GPU by default; the same final distances as the
    # CPU's numpy path within the products' rounding (the GPU's k-NN pass and distances round differently).
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, g = _clustered(4, 40, 150, 16, dtype)
    for gallery, settings in ((g, _SETTINGS["standard"]), (None, _SETTINGS["cluster_contrast"])):
        rr, got = _final(q, gallery, device="cuda", rows=16, **settings)
        assert rr.sparse_on_device and rr.v.data.device.type == "cuda" and isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, _final(q, gallery, rows=16, **settings)[1], rtol=0, atol=atol)


def _eval_sets(seed, dtype, with_ties):
    # queries and gallery with persons, cameras and clothes drawn so every rule has positives and dropped items
    from reidkit.evaluation.protocols import EvalSet

    q, g = _with_ties(dtype) if with_ties else _clustered(seed, 23, 70, 12, dtype)
    rng = np.random.default_rng(seed)
    sets = []
    for feats in (q, g):
        n = len(feats)
        person = rng.integers(0, 5, n)  # the clustered features' centres are not the persons: ranks mix
        sets.append(EvalSet(feats, person, rng.integers(0, 3, n), rng.integers(0, 2, n), np.arange(n)))
    return sets


@pytest.mark.parametrize("rule", ["standard", "cc", "sc"])
@pytest.mark.parametrize("with_ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_re_ranked_blocks_scored_as_tensors_give_the_scores_of_the_dense_reference(rule, with_ties, dtype):
    # Evaluation off the CPU keeps each re-ranked block on the device and ranks it there (positive_ranks_torch): the
    # same code run here on CPU tensors (sparse_on_device=True, tensors=True) scores as the dense reference's matrix
    # ranked by numpy. Small chunks (rows=5) score several blocks.
    import torch

    from reidkit.evaluation.ranking import RankScorer, ScoreAccumulator, evaluate_scores

    query, gallery = _eval_sets(3, dtype, with_ties)
    rr = KReciprocal(query.features, gallery.features, 8, 3, 0.3, "euclidean", rows=5, sparse_on_device=True)
    scorer, acc = RankScorer(gallery.person, gallery.camera, gallery.clothes, rule), ScoreAccumulator(10)
    for start, block in rr.chunks(tensors=True):
        assert isinstance(block, torch.Tensor) and len(block) <= 5
        stop = start + len(block)
        acc.add(scorer.score(block, query.person[start:stop], query.camera[start:stop], query.clothes[start:stop]), start)
    got = acc.summary()
    ref = dense(query.features.astype(np.float64), gallery.features.astype(np.float64), "euclidean", 8, 3, 0.3)
    want = evaluate_scores(ref, query.person, gallery.person, query.camera, gallery.camera, query.clothes,
                           gallery.clothes, rule, max_rank=10)
    assert got["valid_queries"] == want["valid_queries"] > 0
    np.testing.assert_allclose([got[k] for k in ("mAP", "mINP")], [want[k] for k in ("mAP", "mINP")], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["cmc"], want["cmc"], rtol=0, atol=1e-12)


def test_the_numpy_path_hands_out_tensors_when_asked_and_evaluation_asks_only_off_the_cpu():
    import torch

    q, g = _clustered(5, 11, 30, 6, np.float64)
    rr = KReciprocal(q, g, 6, 3, 0.3)
    numpy_blocks = [b for _, b in rr.chunks(rows=4)]
    tensor_blocks = [b for _, b in rr.chunks(rows=4, tensors=True)]
    assert all(isinstance(b, np.ndarray) for b in numpy_blocks) and all(isinstance(b, torch.Tensor) for b in tensor_blocks)
    np.testing.assert_array_equal(np.concatenate(numpy_blocks), torch.cat(tensor_blocks).numpy())
    # tensors=None (evaluation's choice): tensors only where the sparse stages run off the CPU
    assert all(isinstance(b, np.ndarray) for _, b in KReciprocal(q, g, 6, 3, 0.3, sparse_on_device=True).chunks(tensors=None))


def test_on_a_gpu_evaluation_scores_re_ranked_blocks_on_the_device():
    # For a GPU session: score_sets with device="cuda" keeps the re-ranked blocks on the GPU and ranks them there;
    # the same scores as the CPU's numpy path, within the products' rounding.
    import torch

    from reidkit.evaluation import protocols

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    query, gallery = _eval_sets(6, np.float64, False)
    blocks = list(protocols.distance_blocks(query, gallery, "euclidean", {"k1": 8, "k2": 3, "lambda": 0.3}, "cuda"))
    assert all(isinstance(b, torch.Tensor) and b.device.type == "cuda" for _, b in blocks)
    rerank = {"k1": 8, "k2": 3, "lambda": 0.3}
    for rule in ("standard", "cc"):
        got = protocols.score_sets(query, gallery, rule, "euclidean", rerank, "cuda")
        want = protocols.score_sets(query, gallery, rule, "euclidean", rerank, "cpu")
        assert got["valid_queries"] == want["valid_queries"] > 0
        np.testing.assert_allclose(got["mAP"], want["mAP"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got["cmc"], want["cmc"], rtol=0, atol=1e-9)
