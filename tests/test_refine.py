"""DLCR test-time refinement against a hand-worked example."""
import numpy as np
import pytest

from reidkit.evaluation.refinement import refine_query, refine_scores


def test_refine_query_hand_worked():
    # person 1 has three gallery items, only two of them in the top 3; person 2 has one item dropped by the protocol
    pids = np.array([1, 1, 2, 2, 3, 4, 1])
    valid = np.array([True, True, True, False, True, True, True])
    s0 = [1.9, 1.2, 1.8, 1.1, 1.5, 1.0, 1.85]
    s1 = [1.4, 1.3, 1.95, 1.0, 1.2, 1.6, 1.1]
    # T0 = items {0 (p1, 1.9), 6 (p1, 1.85), 2 (p2, 1.8)}: persons p1 1.9, p2 1.8; m0 = 1.9
    # T1 = items {2 (p2, 1.95), 5 (p4, 1.6), 0 (p1, 1.4)}: persons p2 1.95, p4 1.6, p1 1.4; m1 = 1.95
    a1 = 1.9 + 1.9 ** 2 / 1.9 + 1.4 ** 2 / 1.95
    a2 = 1.8 + 1.8 ** 2 / 1.9 + 1.95 ** 2 / 1.95
    got = refine_query(np.array([s0, s1]), pids, valid, top=3)
    # items 0 and 6 (p1, in T0) and 2 (p2) are boosted; item 1 of p1 is not in T0 and keeps s0;
    # p3 (item 4) is not in T0 (only 3 items) and keeps s0; p4 is not in T0; the dropped item keeps s0
    assert got == pytest.approx([a1, 1.2, a2, 1.1, 1.5, 1.0, a1])
    assert int(np.argmax(got)) == 2  # the variant moved person 2 ahead of person 1


def test_refine_keeps_the_original_score_when_it_is_higher():
    # A(p) = 1.0 + 1.0^2/1.9 + ... can be below an item's own s0 only for items below the person's best: max() keeps s0
    pids = np.array([7, 8])
    s0 = [1.0, 1.9]
    s1 = [0.1, 1.9]
    got = refine_query(np.array([s0, s1]), pids, np.ones(2, bool), top=2)
    a7 = 1.0 + 1.0 ** 2 / 1.9  # p7 is not in T1's top persons? T1 = {p8 1.9, p7 0.1}: it is, with 0.1^2 / 1.9
    a7 += 0.1 ** 2 / 1.9
    a8 = 1.9 + 1.9 + 1.9
    assert got == pytest.approx([max(a7, 1.0), a8])


def test_queries_without_variants_stay_exactly_as_they_were():
    pids = np.array([5, 6, 7])
    s0 = np.array([1.2, 1.8, 1.0])
    got = refine_query(s0[None], pids, np.ones(3, bool), top=2)
    assert np.array_equal(got, s0)


def test_refine_scores_applies_the_protocol_rule_before_taking_the_top():
    # query of person 1, camera 0, clothes 0; gallery: same person same camera (dropped), same person other
    # camera same clothes (dropped in cc), same person other camera other clothes, and person 2
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.8]])
    q = np.array([[1.0, 0.0]])
    variant = np.array([[0.0, 1.0]])  # points at item 2 (person 1, other clothes)
    g_pids, g_cams, g_clothes = np.array([1, 1, 1, 2]), np.array([0, 1, 1, 1]), np.array([0, 0, 1, 5])
    args = (q, g, variant, [0], np.array([1]), g_pids, np.array([0]), g_cams, np.array([0]), g_clothes)
    s0 = 1 + g @ q[0] / np.linalg.norm(g, axis=1)
    s1 = 1 + g @ variant[0] / np.linalg.norm(g, axis=1)
    cc = refine_scores(*args, rule="cc", top=1)[0]
    assert cc[0] == pytest.approx(s0[0]) and cc[1] == pytest.approx(s0[1])  # dropped items untouched
    # cc: T0 = {item 3 (p2)}, T1 = {item 2 (p1)}: p2 gets s0 + s0^2/s0 only (not in T1); item 2 is not in T0
    assert cc[3] == pytest.approx(2 * s0[3])
    assert cc[2] == pytest.approx(s0[2])
    standard = refine_scores(*args, rule="standard", top=1)[0]
    # standard: T0 = {item 1 (p1)}, T1 = {item 2 (p1)}: A(p1) = s0[1] + s0[1] + s1[2]^2 / s1[2], only item 1 gets it
    assert standard[1] == pytest.approx(2 * s0[1] + s1[2])
    assert standard[2] == pytest.approx(s0[2])


def test_choose_variants_takes_the_first_k_kept_variants_of_each_query():
    from reidkit.evaluation.refinement import choose_variants

    class Run:
        def kept(self):
            return np.array([1, 1, 1, 1, 1, 0, 1, 1], bool)

        def source_index(self):
            return np.array([9, 9, 9, 9, 9, 4, 4, 4])

        def variant(self):
            return np.array([4, 3, 2, 1, 0, 0, 2, 1])

    got = choose_variants(Run(), np.array([4, 9]), 2)
    assert sorted(got.tolist()) == [3, 4, 6, 7]  # query 9: variants 0 and 1; query 4: variant 0 rejected -> 1 and 2
    assert len(choose_variants(Run(), np.array([4]), 4)) == 2


def test_mean_ap_is_not_inflated_by_boosting_persons():
    """Simulated queries: boosting only the top-5 items leaves mAP near the original (DLCR's rule), unlike boosting
    every item of a top-5 person."""
    from reidkit.evaluation import evaluate_scores

    rng = np.random.default_rng(0)
    persons, per_person, dim = 30, 12, 16
    centres = rng.normal(size=(persons, dim))
    g_pids = np.repeat(np.arange(persons), per_person)
    g = centres[g_pids] + 1.2 * rng.normal(size=(len(g_pids), dim))
    q_pids = np.arange(persons)
    q = centres + 1.2 * rng.normal(size=(persons, dim))
    variants = np.repeat(q, 4, axis=0) + 0.3 * rng.normal(size=(4 * persons, dim))
    cams = np.zeros(persons, int), np.ones(len(g_pids), int)
    plain = refine_scores(q, g, np.zeros((0, dim)), [], q_pids, g_pids, *cams)
    refined = refine_scores(q, g, variants, np.repeat(np.arange(persons), 4), q_pids, g_pids, *cams)
    before = evaluate_scores(-plain, q_pids, g_pids, *cams)
    after = evaluate_scores(-refined, q_pids, g_pids, *cams)
    changed = (refined != plain).sum(1)
    assert changed.max() <= 5  # never more than the original top-5 items of a query
    assert abs(after["mAP"] - before["mAP"]) < 0.1


def test_eval_checkpoint_saves_features_and_refines_with_query_variants(tmp_path, capsys):
    import json

    from reidkit import open_store
    from reidkit.cli import main
    from reidkit.evaluation import evaluate_scores, load_features
    from reidkit.training.engine import train
    from reidkit.evaluation.inference import load_reid_model
    from tests.train_helpers import make_store, tiny_config, write_run

    store = make_store(tmp_path)
    train(store, tiny_config("baseline"), tmp_path / "run", progress=False, max_steps=2)
    write_run(store, "q", variants=2, split="query")

    def cli(*args):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        return exc.value.code

    assert cli("eval", store, "--refine", "q") == 2  # needs --checkpoint
    write_run(store, "t", variants=1, split="train")
    assert cli("eval", store, "--checkpoint", tmp_path / "run", "--refine", "t") == 1  # variants of training images: refused
    assert "no kept variants of the 'query' split" in capsys.readouterr().err
    capsys.readouterr()
    assert cli("eval", store, "--checkpoint", tmp_path / "run", "--save-features", tmp_path / "f.npz", "--json",
               "--protocol", "cc", "--flip") == 0  # a baseline run: flip asked for (its own test_flip is false)
    plain = json.loads(capsys.readouterr().out)
    assert cli("eval", store, "--checkpoint", tmp_path / "run", "--refine", "q", "--json", "--protocol", "cc") == 0
    refined = {r["protocol"]: r for r in json.loads(capsys.readouterr().out)}
    features, index = load_features(tmp_path / "f.npz")
    s = open_store(store)
    assert sorted(index.tolist()) == sorted(np.concatenate([s.split("query"), s.split("gallery")]).tolist())
    # the same numbers by hand: DLCR's refinement uses features without flip averaging (the saved ones are flipped)
    model = load_reid_model(tmp_path / "run")
    run = s.run("q")
    q, g = s.split("query"), s.split("gallery")
    qpos = {int(i): r for r, i in enumerate(q)}

    def by_hand(flip):
        feats = model.extract_source(s, index, flip=flip)
        var = model.extract_source(run, np.arange(len(run)), flip=flip)
        row = {int(i): r for r, i in enumerate(index)}
        sc = refine_scores(feats[[row[i] for i in q]], feats[[row[i] for i in g]], var,
                           [qpos[int(i)] for i in run.source_index()], s.pid[q], s.pid[g], s.camera[q], s.camera[g],
                           s.clothes_id[q], s.clothes_id[g], rule="cc")
        return sc, evaluate_scores(-sc, s.pid[q], s.pid[g], s.camera[q], s.camera[g], s.clothes_id[q], s.clothes_id[g], "cc"), feats, var, row

    scores, expected, unflipped, variants, row = by_hand(False)
    assert refined["cc"]["mAP"] == pytest.approx(expected["mAP"]) and refined["cc"]["rank1"] == pytest.approx(expected["rank1"])
    assert refined["cc"]["refine_settings"] == {"variants": 4, "top": 5, "flip": False}
    assert not np.allclose(unflipped, features)  # the saved features are flip-averaged, refinement's are not
    assert cli("eval", store, "--checkpoint", tmp_path / "run", "--refine", "q", "--refine-flip", "--json", "--protocol", "cc") == 0
    flipped = json.loads(capsys.readouterr().out)[0]
    assert flipped["mAP"] == pytest.approx(by_hand(True)[1]["mAP"])
    features = unflipped
    no_variants = refine_scores(features[[row[i] for i in q]], features[[row[i] for i in g]], np.zeros((0, variants.shape[1])), [],
                                s.pid[q], s.pid[g], s.camera[q], s.camera[g], s.clothes_id[q], s.clothes_id[g], rule="cc")
    assert not np.allclose(no_variants, scores)  # the variants did change the scores
    assert plain[0]["protocol"] == "cc" and 0 <= plain[0]["mAP"] <= 1
