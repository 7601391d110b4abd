"""DLCR test-time refinement against a hand-worked example."""
import numpy as np
import pytest

from reidkit.training.refinement import refine_query, refine_scores


def test_refine_query_hand_worked():
    pids = np.array([1, 1, 2, 2, 3, 4])
    valid = np.array([True, True, True, False, True, True])  # item 3 dropped by the protocol
    s0 = [1.9, 1.2, 1.8, 1.1, 1.5, 1.0]
    s1 = [1.4, 1.3, 1.95, 1.0, 1.2, 1.6]
    # top-3: T0 = {p1: 1.9, p2: 1.8, p3: 1.5}, m0 = 1.9; T1 = {p2: 1.95, p4: 1.6, p1: 1.4}, m1 = 1.95
    a1 = 1.9 + 1.9 ** 2 / 1.9 + 1.4 ** 2 / 1.95
    a2 = 1.8 + 1.8 ** 2 / 1.9 + 1.95 ** 2 / 1.95
    a3 = 1.5 + 1.5 ** 2 / 1.9  # p3 is not in T1
    got = refine_query(np.array([s0, s1]), pids, valid, top=3)
    assert got == pytest.approx([a1, a1, a2, 1.1, a3, 1.0])  # p4 is not in T0: keeps s0; the dropped item keeps s0
    assert int(np.argmax(got)) == 2  # the variant moved person 2 ahead of person 1


def test_refine_without_variants_only_boosts_the_original_top():
    pids = np.array([5, 6, 7])
    got = refine_query(np.array([[1.2, 1.8, 1.0]]), pids, np.ones(3, bool), top=2)
    assert got == pytest.approx([1.2 + 1.2 ** 2 / 1.8, 1.8 + 1.8, 1.0])


def test_refine_scores_applies_the_protocol_rule_before_taking_the_top():
    # query of person 1, camera 0, clothes 0; gallery: same person same camera (dropped), same person other
    # camera same clothes (dropped in cc), same person other camera other clothes, and person 2
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.8]])
    q = np.array([[1.0, 0.0]])
    g_pids, g_cams, g_clothes = np.array([1, 1, 1, 2]), np.array([0, 1, 1, 1]), np.array([0, 0, 1, 5])
    args = (q, g, np.zeros((0, 2)), [], np.array([1]), g_pids, np.array([0]), g_cams, np.array([0]), g_clothes)
    cc = refine_scores(*args, rule="cc", top=1)[0]
    s0 = 1 + g @ q[0] / np.linalg.norm(g, axis=1)
    assert cc[0] == pytest.approx(s0[0]) and cc[1] == pytest.approx(s0[1])  # dropped items untouched
    assert cc[3] == pytest.approx(s0[3] + s0[3])  # person 2 is the cc top-1: A = s0 + s0^2 / m0 with m0 = s0
    assert cc[2] == pytest.approx(s0[2])  # not in the top-1
    standard = refine_scores(*args, rule="standard", top=1)[0]
    assert standard[1] == pytest.approx(2 * s0[1]) and standard[2] == pytest.approx(2 * s0[1])  # person 1 on top


def test_eval_checkpoint_saves_features_and_refines_with_query_variants(tmp_path, capsys):
    import json

    from reidkit import open_store
    from reidkit.cli import main
    from reidkit.evaluation import evaluate_scores, load_features
    from reidkit.training.engine import train
    from reidkit.training.inference import load_reid_model
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
               "--protocol", "cc") == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli("eval", store, "--checkpoint", tmp_path / "run", "--refine", "q", "--json", "--protocol", "cc") == 0
    refined = {r["protocol"]: r for r in json.loads(capsys.readouterr().out)}
    features, index = load_features(tmp_path / "f.npz")
    s = open_store(store)
    assert sorted(index.tolist()) == sorted(np.concatenate([s.split("query"), s.split("gallery")]).tolist())
    # the same numbers by hand: refined scores from the saved features and the variants' features
    model = load_reid_model(tmp_path / "run")
    run = s.run("q")
    variants = model.extract_source(run, np.arange(len(run)))
    q, g = s.split("query"), s.split("gallery")
    row = {int(i): r for r, i in enumerate(index)}
    qpos = {int(i): r for r, i in enumerate(q)}
    scores = refine_scores(features[[row[i] for i in q]], features[[row[i] for i in g]], variants,
                           [qpos[int(i)] for i in run.source_index()], s.pid[q], s.pid[g], s.camera[q], s.camera[g],
                           s.clothes_id[q], s.clothes_id[g], rule="cc")
    expected = evaluate_scores(-scores, s.pid[q], s.pid[g], s.camera[q], s.camera[g], s.clothes_id[q], s.clothes_id[g], "cc")
    assert refined["cc"]["mAP"] == pytest.approx(expected["mAP"]) and refined["cc"]["rank1"] == pytest.approx(expected["rank1"])
    no_variants = refine_scores(features[[row[i] for i in q]], features[[row[i] for i in g]], np.zeros((0, variants.shape[1])), [],
                                s.pid[q], s.pid[g], s.camera[q], s.camera[g], s.clothes_id[q], s.clothes_id[g], rule="cc")
    assert not np.allclose(no_variants, scores)  # the variants did change the scores
    assert plain[0]["protocol"] == "cc" and 0 <= plain[0]["mAP"] <= 1
