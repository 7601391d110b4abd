"""CMC / mAP / mINP: hand-computed examples, and agreement with a plain per-query reference."""
import numpy as np
import pytest

from reidkit.errors import ReidkitError
from reidkit.evaluation import evaluate_chunks, evaluate_scores
from tests.eval_reference import reference_metrics

KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP", "valid_queries")

# Tiny world. Query q0: pid 1, cam 0, clothes 0; q1: pid 4 (nobody in the gallery); q2: pid 2, cam 1, clothes 5.
Q_PIDS, Q_CAMS, Q_CLOTHES = [1, 4, 2], [0, 0, 1], [0, 9, 5]
#          g0  g1  g2  g3  g4  g5
G_PIDS = [1, 2, 1, 3, 1, 2]
G_CAMS = [0, 1, 1, 2, 2, 2]
G_CLOTHES = [0, 5, 0, 6, 1, 5]
DIST = np.array(
    [
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # q0
        [0.3, 0.1, 0.2, 0.6, 0.5, 0.4],  # q1 (no positive under any rule: skipped)
        [0.9, 0.5, 0.1, 0.2, 0.3, 0.4],  # q2
    ],
    np.float32,
)


def hand(dist=DIST, rule="standard"):
    return evaluate_scores(dist, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, Q_CLOTHES, G_CLOTHES, rule=rule)


def test_standard_by_hand():
    # q0: g0 dropped (pid 1, same cam 0). Valid order g1(-) g2(+) g3(-) g4(+) g5(-): positives at ranks 2 and 4.
    #     AP = (1/2 + 2/4) / 2 = 0.5; INP = 2/4 = 0.5; first match at rank 2.
    # q2: pid 2; g1 dropped (same cam 1); g5 positive at 0.4 after g2 0.1, g3 0.2, g4 0.3: rank 4.
    #     AP = 1/4; INP = 1/4.
    # valid queries 2; CMC@1 = 0, @2 = 1/2, @4 = 1; mAP = mINP = (0.5 + 0.25) / 2 = 0.375.
    r = hand()
    assert r["valid_queries"] == 2
    assert r["cmc"][:4] == pytest.approx([0.0, 0.5, 0.5, 1.0])
    assert (r["rank1"], r["rank5"], r["rank10"]) == (0.0, 1.0, 1.0)
    assert r["mAP"] == pytest.approx(0.375)
    assert r["mINP"] == pytest.approx(0.375)


def test_clothes_changing_by_hand():
    # q0: also drop g2 (pid 1, same clothes 0). Valid order g1(-) g3(-) g4(+) g5(-): rank 3.
    #     AP = 1/3, INP = 1/3, first match rank 3.
    # q2: its only other-camera item g5 has the same clothes 5: dropped, no positive, skipped.
    r = hand(rule="cc")
    assert r["valid_queries"] == 1
    assert r["cmc"][:3] == pytest.approx([0.0, 0.0, 1.0])
    assert r["mAP"] == pytest.approx(1 / 3)
    assert r["mINP"] == pytest.approx(1 / 3)


def test_same_clothes_by_hand():
    # q0: drop g4 (pid 1, other clothes 1). Valid order g1(-) g2(+) g3(-) g5(-): rank 2 -> AP = INP = 1/2.
    # q2: g5 (same clothes, other camera) positive at rank 4 (g2, g3, g4 closer; g0 is a negative) -> 1/4.
    r = hand(rule="sc")
    assert r["valid_queries"] == 2
    assert r["cmc"][:4] == pytest.approx([0.0, 0.5, 0.5, 1.0])
    assert r["mAP"] == pytest.approx(0.375)
    assert r["mINP"] == pytest.approx(0.375)


def test_ties_rank_negatives_first_by_hand():
    # q: pid 1 cam 0. g3 (neg) at 0.2; then at 0.5 a negative g1 and two positives g0, g2.
    # Tie rule: the negative comes first, so the positives take ranks 3 and 4 whatever the gallery order:
    # AP = (1/3 + 2/4) / 2 = 5/12, INP = 2/4, first match rank 3.
    for order in ([0, 1, 2, 3], [1, 3, 2, 0], [2, 0, 3, 1]):
        pids, cams, dist = np.array([1, 2, 1, 3])[order], np.array([1, 1, 2, 0])[order], np.array([[0.5, 0.5, 0.5, 0.2]])[:, order]
        r = evaluate_scores(dist, [1], pids, [0], cams)
        assert r["mAP"] == pytest.approx(5 / 12)
        assert r["mINP"] == pytest.approx(0.5)
        assert r["cmc"][:3] == [0.0, 0.0, 1.0]


def test_single_gallery_item_and_no_gallery_positive():
    assert evaluate_scores([[0.7]], [3], [3], [0], [1])["mAP"] == 1.0
    r = evaluate_scores([[0.7]], [3], [3], [0], [0])  # the only match is in the same camera: skipped
    assert r["valid_queries"] == 0 and r["mAP"] == 0.0


def random_case(rng, kind):
    nq, ng = int(rng.integers(1, 25)), int(rng.integers(1, 70))
    n_ids = int(rng.integers(1, 9))
    case = dict(
        q_pids=rng.integers(0, n_ids, nq), g_pids=rng.integers(0, n_ids, ng),
        q_cams=rng.integers(0, 3, nq), g_cams=rng.integers(0, 3, ng),
        q_clothes=rng.integers(0, 2, nq), g_clothes=rng.integers(0, 2, ng),
    )
    if kind == "uniform":
        dist = rng.random((nq, ng)).astype(np.float32)
    elif kind == "ties":  # few distinct values: ties everywhere
        dist = rng.integers(0, 3, (nq, ng)).astype(np.float32)
    elif kind == "signed64":  # negative values, float64 (scores of a refinement step)
        dist = rng.standard_normal((nq, ng))
    elif kind == "duplicate_features":  # duplicated gallery features give identical columns
        feats = rng.standard_normal((ng, 4))
        feats[rng.integers(0, ng, ng // 2)] = feats[0]
        q = rng.standard_normal((nq, 4))
        dist = np.sqrt(((q[:, None] - feats[None]) ** 2).sum(-1)).astype(np.float32)
    else:  # wide range of magnitudes and exact zeros
        dist = (rng.random((nq, ng)) * 10.0 ** rng.integers(-30, 30, (nq, ng))).astype(np.float32)
        dist[rng.random((nq, ng)) < 0.2] = 0.0
    return dist, case


@pytest.mark.parametrize("kind", ["uniform", "ties", "signed64", "duplicate_features", "magnitudes"])
def test_matches_plain_reference_on_random_cases(kind):
    rng = np.random.default_rng(hash(kind) % 2**32)
    for _ in range(60):
        dist, c = random_case(rng, kind)
        for rule in ("standard", "cc", "sc"):
            got = evaluate_scores(dist, rule=rule, **c)
            want = reference_metrics(dist, c["q_pids"], c["g_pids"], c["q_cams"], c["g_cams"], c["q_clothes"], c["g_clothes"], rule)
            for k in KEYS:
                assert got[k] == pytest.approx(want[k], abs=1e-12), (kind, rule, k)
            assert got["cmc"] == pytest.approx(want["cmc"], abs=1e-12)


def test_large_gallery_matches_reference():
    # Many items per histogram bin, and many positives per query (the bucketed counting path at full width).
    rng = np.random.default_rng(7)
    nq, ng = 12, 6000
    q_pids, g_pids = rng.integers(0, 5, nq), rng.integers(0, 5, ng)
    q_cams, g_cams = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    dist = (1.0 + 0.001 * rng.standard_normal((nq, ng))).astype(np.float32)
    dist[:, ::7] = dist[:, 3:4]  # plus exact ties
    got = evaluate_scores(dist, q_pids, g_pids, q_cams, g_cams)
    want = reference_metrics(dist, q_pids, g_pids, q_cams, g_cams)
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_chunked_path_equals_whole_matrix():
    rng = np.random.default_rng(3)
    dist, c = random_case(rng, "uniform")
    dist = rng.random((23, 40))
    c = {k: (v[:23] if k.startswith("q") else v[:40]) for k, v in c.items()}
    c["q_pids"], c["g_pids"] = rng.integers(0, 4, 23), rng.integers(0, 4, 40)
    c["q_cams"], c["g_cams"] = rng.integers(0, 3, 23), rng.integers(0, 3, 40)
    c["q_clothes"], c["g_clothes"] = rng.integers(0, 2, 23), rng.integers(0, 2, 40)
    whole = evaluate_scores(dist, rule="cc", **c)
    chunks = ((s, dist[s : s + 5]) for s in range(0, 23, 5))
    assert evaluate_chunks(chunks, rule="cc", **c) == whole


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ReidkitError, match="NaN"):
        evaluate_scores([[np.nan, 0.1]], [1], [1, 2], [0], [1])
    with pytest.raises(ReidkitError, match="expected"):
        evaluate_scores(np.zeros((2, 3)), [1], [1, 2, 3], [0], [1, 1, 1])
    with pytest.raises(ReidkitError, match="rule"):
        evaluate_scores([[0.1]], [1], [1], [0], [1], rule="bogus")
    with pytest.raises(ReidkitError, match="clothes"):
        evaluate_scores([[0.1]], [1], [1], [0], [1], rule="cc")


def test_per_query_results_of_the_hand_example():
    # q0 and q2 are valid (q1 has no positive): first matches at ranks 2 and 4, AP 0.5 and 0.25.
    pq = evaluate_scores(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, per_query=True)["per_query"]
    assert pq["query"].tolist() == [0, 2]
    assert pq["first"].tolist() == [2, 4]
    assert pq["ap"] == pytest.approx([0.5, 0.25])
    assert pq["inp"] == pytest.approx([0.5, 0.25])


def torch_chunks(dist, rows=7):
    """Blocks as torch tensors on the CPU: the device (GPU) ranking code, run here."""
    import torch

    return ((s, torch.as_tensor(np.asarray(dist)[s : s + rows])) for s in range(0, len(dist), rows))


@pytest.mark.parametrize("kind", ["uniform", "ties", "signed64", "duplicate_features", "magnitudes"])
def test_device_block_code_matches_reference_on_cpu(kind):
    rng = np.random.default_rng(hash(kind) % 2**32 + 1)
    for _ in range(40):
        dist, c = random_case(rng, kind)
        for rule in ("standard", "cc", "sc"):
            got = evaluate_chunks(torch_chunks(dist), rule=rule, per_query=True, **c)
            want = reference_metrics(dist, c["q_pids"], c["g_pids"], c["q_cams"], c["g_cams"], c["q_clothes"], c["g_clothes"], rule)
            for k in KEYS:
                assert got[k] == pytest.approx(want[k], abs=1e-12), (kind, rule, k)
            assert got["cmc"] == pytest.approx(want["cmc"], abs=1e-12)
            numpy_path = evaluate_chunks(((s, dist[s : s + 7]) for s in range(0, len(dist), 7)), rule=rule, per_query=True, **c)
            for k in ("query", "first", "ap", "inp"):  # the same blocks give the same per-query numbers, bit for bit
                assert np.array_equal(got["per_query"][k], numpy_path["per_query"][k])


def test_device_block_code_rejects_nan():
    import torch

    with pytest.raises(ReidkitError, match="NaN"):
        evaluate_chunks([(0, torch.tensor([[np.nan, 0.1]]))], [1], [1, 2], [0], [1])


def test_clustered_rows_with_most_items_beyond_the_farthest_positive():
    # Positives among the nearest items, most of the gallery far beyond (a trained model's rows), with exact ties
    # at the farthest positive and just above it: the counting must not depend on how far the far items are.
    rng = np.random.default_rng(12)
    nq, ng = 9, 5000
    q_pids, g_pids = rng.integers(0, 3, nq), rng.integers(0, 40, ng)
    q_cams, g_cams = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    dist = (1.0 + 0.05 * rng.random((nq, ng))).astype(np.float32)
    near = g_pids[None, :] == q_pids[:, None]
    dist[near] = (0.2 + 0.3 * rng.random(int(near.sum()))).astype(np.float32)
    dist[:, :50] = 0.2 + 0.3 * rng.random((nq, 50)).astype(np.float32)  # some negatives among the positives
    far = dist[near].max()
    dist[:, 60] = far
    dist[:, 61] = np.nextafter(far, np.float32(2))
    for chunks in (None, torch_chunks(dist)):
        got = evaluate_scores(dist, q_pids, g_pids, q_cams, g_cams) if chunks is None else evaluate_chunks(chunks, q_pids, g_pids, q_cams, g_cams)
        want = reference_metrics(dist, q_pids, g_pids, q_cams, g_cams)
        for k in KEYS:
            assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_distance_blocks_as_tensors_give_the_numpy_numbers():
    # DistanceComputer(..., device).chunks(tensors=True) is what a GPU evaluation ranks on the device.
    from reidkit.evaluation.distance import DistanceComputer

    rng = np.random.default_rng(4)
    centers = rng.standard_normal((6, 16))
    q_pids, g_pids = rng.integers(0, 6, 40), rng.integers(0, 6, 300)
    q = (centers[q_pids] + 2.0 * rng.standard_normal((40, 16))).astype(np.float32)
    g = (centers[g_pids] + 2.0 * rng.standard_normal((300, 16))).astype(np.float32)
    q_cams, g_cams = rng.integers(0, 3, 40), rng.integers(0, 3, 300)
    for metric in ("cosine", "euclidean"):
        computer = DistanceComputer(g, metric, "cpu")
        blocks = list(computer.chunks(q, rows=16, tensors=True))
        assert all(type(b).__module__.startswith("torch") for _, b in blocks)
        on_device = evaluate_chunks(blocks, q_pids, g_pids, q_cams, g_cams)
        dist = np.concatenate([b.numpy() for _, b in blocks])
        assert on_device == evaluate_chunks(((s, dist[s : s + 16]) for s in range(0, 40, 16)), q_pids, g_pids, q_cams, g_cams)
        want = reference_metrics(dist, q_pids, g_pids, q_cams, g_cams)
        assert 0.1 < want["mAP"] < 0.9  # neither trivial nor hopeless
        for k in KEYS:
            assert on_device[k] == pytest.approx(want[k], abs=1e-12)
