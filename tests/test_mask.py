"""Maskers and `reidkit mask`: heuristic (weight-free), parser (a tiny SegFormer loaded by folder), store."""
import numpy as np
import pytest

import reidkit
from reidkit.generation import run_expand
from tests.helpers import make_world, run_cli, run_console
from tests.tiny_models import build_tiny_segformer


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("mw") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)


def test_heuristic_masks_overlap_true_clothing_and_are_stored_once(world):
    result = run_cli("mask", world, "--masker", "heuristic")
    assert result.exit_code == 0, result.output
    store = reidkit.open_store(world)
    sets = store.mask_sets()
    h, gt = sets["heuristic"], sets["ground_truth"]
    train = store.split("train")
    assert all(int(i) in h for i in train)
    ious = []
    for i in train:
        a, b = h.clothing_mask(i), gt.clothing_mask(i)
        ious.append((a & b).sum() / (a | b).sum())
        assert not a[: a.shape[0] // 12].any()  # the top of the crop (head or background) is never clothing
    assert np.mean(ious) > 0.35
    chunks_before = sorted((world.parent / "w.h5.parts" / "masks" / "heuristic" / "chunks").iterdir())
    again = run_cli("mask", world, "--masker", "heuristic")
    assert again.exit_code == 0
    assert sorted((world.parent / "w.h5.parts" / "masks" / "heuristic" / "chunks").iterdir()) == chunks_before


def test_parser_tiny_segformer_by_folder_lip_and_atr_presets(world, tmp_path):
    from reidkit.plugins.maskers.parser import ATR_LABELS, LIP_CLOTHING, LIP_LABELS

    lip = build_tiny_segformer(tmp_path / "lip", LIP_LABELS)
    result = run_cli("mask", world, "--masker", "parser", "--mask-set", f"model={lip}", "--name", "lip",
                     "--batch-size", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    store = reidkit.open_store(world)
    ms = store.mask_sets()["lip"]
    assert ms.labels == LIP_LABELS and ms.clothing == LIP_CLOTHING and ms.info["masker"] == "parser"
    i = int(store.split("train")[0])
    lm = ms.label_map(i)
    assert lm.shape == store.image(i).shape[:2] and lm.max() < len(LIP_LABELS)
    # batching does not change a mask: compute one image alone through the same class
    from reidkit.plugins.maskers.parser import ParserMasker

    alone = ParserMasker({**ParserMasker.defaults, "model": str(lip)}, "cpu").label_maps([store.image(i)])[0]
    assert np.array_equal(alone, lm)
    # wrong preset for the model's label count: one line, exit 1
    proc = run_console("mask", world, "--masker", "parser", "--mask-set", f"model={lip}", "--mask-set", "preset=atr",
                       "--name", "atr")
    assert proc.returncode == 1 and "predicts 20 labels" in proc.stderr and "Traceback" not in proc.stderr
    atr = build_tiny_segformer(tmp_path / "atr", ATR_LABELS)
    ok = run_cli("mask", world, "--masker", "parser", "--mask-set", f"model={atr},preset=atr", "--name", "atr")
    assert ok.exit_code == 0, ok.output
    assert reidkit.open_store(world).mask_sets()["atr"].labels == ATR_LABELS


def test_parser_default_model_is_the_atr_segformer_and_presets_follow_the_model():
    from reidkit.plugins.maskers.parser import ATR_CLOTHING, ATR_LABELS, DEFAULT_MODEL, LIP_LABELS, ParserMasker

    assert ParserMasker.defaults["model"] == DEFAULT_MODEL == "mattmdjaga/segformer_b2_clothes"
    default = ParserMasker(dict(ParserMasker.defaults), "cpu")  # constructing loads nothing
    assert (default.preset, default.labels, default.clothing) == ("atr", ATR_LABELS, ATR_CLOTHING)
    other = ParserMasker({**ParserMasker.defaults, "model": "some/other-parser"}, "cpu")
    assert (other.preset, other.labels) == ("lip", LIP_LABELS)  # another model: the user's preset, lip unless named
    named = ParserMasker({**ParserMasker.defaults, "model": "some/other-parser", "preset": "atr"}, "cpu")
    assert named.labels == ATR_LABELS


def test_parser_without_model_and_missing_folder_fail_in_one_line(world, tmp_path):
    empty_cache = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "no-cache"), "HF_HOME": str(tmp_path / "no-home")}
    proc = run_console("mask", world, "--masker", "parser", "--mask-set", "model=", env=empty_cache)
    assert proc.returncode == 1 and "needs a model" in proc.stderr
    # the default model, neither cached nor reachable: one line saying so
    proc = run_console("mask", world, "--masker", "parser", env=empty_cache)
    assert proc.returncode == 1 and "cannot load parser 'mattmdjaga/segformer_b2_clothes'" in proc.stderr
    assert "HF_HUB_OFFLINE forbids downloading" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_console("mask", world, "--masker", "parser", "--mask-set", f"model={tmp_path / 'nothing'}", "--name", "p2")
    assert proc.returncode == 1 and "cannot load parser" in proc.stderr and "Traceback" not in proc.stderr


def test_first_expand_computes_missing_masks(world, tmp_path):
    import shutil

    store = tmp_path / "w.h5"
    shutil.copy(world, store)
    summary = run_expand(store, masker="heuristic", variants=1, limit=3, name="hm", show_progress=False)
    assert summary["generated"] == 3
    s = reidkit.open_store(store)
    assert len(s.mask_sets()["heuristic"]) == 3
    run = s.run("hm")
    assert run.info["settings"]["masker"] == "heuristic"
    m = s.mask_sets()["heuristic"]
    for j in range(len(run)):
        src = int(run.source_index()[j])
        assert np.array_equal(run.image(j)[~m.clothing_mask(src)], s.image(src)[~m.clothing_mask(src)])


def test_other_masker_settings_make_another_mask_set(world, tmp_path):
    import shutil

    store = tmp_path / "w.h5"
    shutil.copy(world, store)
    run_expand(store, masker="heuristic", variants=1, limit=2, name="a", show_progress=False)
    run_expand(store, masker="heuristic", masker_settings={"waist": 0.5}, variants=1, limit=2, name="b", show_progress=False)
    s = reidkit.open_store(store)
    names = sorted(s.mask_sets())
    assert "heuristic" in names and any(n.startswith("heuristic-") for n in names)
    assert s.run("b").info["settings"]["mask_set"] in names and s.run("b").info["settings"]["mask_set"] != "heuristic"
    # a stored set by name, through the store masker
    run_expand(store, masker="store", masker_settings={"set": "heuristic"}, variants=1, limit=2, name="c", show_progress=False)
    assert s.run("c").info["settings"]["mask_set"] == "heuristic"



def test_heuristic_mask_does_not_depend_on_what_was_masked_before(tmp_path):
    """GrabCut draws its k-means start from OpenCV's process-wide RNG: without a reset per image, a resumed or
    sharded mask run (other images masked first) gives other masks than one uninterrupted run."""
    from reidkit.plugins.maskers.heuristic import HeuristicMasker
    from tests.helpers import make_world

    store = reidkit.open_store(make_world(tmp_path / "w.h5", ids=4, outfits=2, cameras=2))
    images = [store.image(i) for i in range(6)]
    masker = HeuristicMasker(dict(HeuristicMasker.defaults), "cpu")
    alone = masker.label_map(images[5])
    for im in images[:5]:  # what an uninterrupted run masked first
        masker.label_map(im)
    assert np.array_equal(masker.label_map(images[5]), alone)
    assert np.array_equal(masker.label_maps(images[::-1])[0], alone)


def test_a_mask_set_has_one_writer_whether_mask_or_expand_writes_it(world, tmp_path):
    """The lock is taken by the library function that writes the set (ensure_masks), so 'mask' and 'expand' alike are
    refused while another process writes it, and a run that only reads a finished set takes no lock."""
    import shutil

    from reidkit.store.lock import one_writer_per_mask_set
    from tests.helpers import one_error_line

    store = tmp_path / "w.h5"
    shutil.copy(world, store)
    with one_writer_per_mask_set(store, "heuristic"):  # another process writing the heuristic mask set
        line = one_error_line(run_console("mask", store, "--masker", "heuristic"))
        assert "mask set 'heuristic'" in line
        r = run_console("expand", store, "--masker", "heuristic", "--variants", "1", "--limit", "2")
        assert r.returncode == 1 and "Traceback" not in r.stderr  # (its prompt bank was made first: a progress line)
        assert "mask set 'heuristic'" in r.stderr.strip().splitlines()[-1]
    assert run_console("mask", store, "--masker", "heuristic").returncode == 0
    with one_writer_per_mask_set(store, "heuristic"):  # the set is whole now: reading it needs no lock
        r = run_console("expand", store, "--masker", "heuristic", "--variants", "1", "--limit", "2")
        assert r.returncode == 0, r.stderr
