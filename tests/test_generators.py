"""The dlcr generator on a tiny SD inpainting pipeline loaded from a folder, and the recolor generator's rules."""
import shutil

import numpy as np
import pytest

import reidkit
from reidkit.generation import run_expand
from tests.helpers import make_world, run_console
from tests.tiny_models import build_tiny_inpaint_pipeline

TINY = {"width": 32, "height": 64, "steps": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("gw") / "w.h5", ids=4, outfits=2, cameras=2, shots=1)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return build_tiny_inpaint_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd-inpaint")


def dlcr(store, name, sd, **kw):
    # the store's ground-truth masks and template prompts (dlcr's own defaults, parser + llava-llama, need models)
    return run_expand(store, generator="dlcr", generator_settings={**TINY, "model": str(sd)}, variants=2, limit=3,
                      name=name, device="cpu", show_progress=False, prompts="templates", masker="store", **kw)


def test_dlcr_composites_onto_untouched_source_deterministically(world, sd, tmp_path):
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    summary = dlcr(store_path, "a", sd, batch_size=4, filters=["sanity"])
    assert summary["generated"] == 6
    dlcr(store_path, "b", sd, batch_size=4, filters=["sanity"])
    store = reidkit.open_store(store_path)
    a, b = store.run("a"), store.run("b")
    masks = store.mask_sets()["ground_truth"]
    for j in range(len(a)):
        assert a.image_bytes(j) == b.image_bytes(j)  # same seed, same bytes
        s = int(a.source_index()[j])
        src, out, m = store.image(s), a.image(j), masks.clothing_mask(s)
        assert np.array_equal(out[~m], src[~m])  # outside the mask: the untouched source, byte for byte
        assert not np.array_equal(out[m], src[m])
    info = a.info
    assert info["model_id"] == str(sd)
    g = info["settings"]["generator_settings"]
    assert g["steps"] == 2 and g["guidance"] == 7.5 and g["strength"] == 1.0 and g["scheduler"] == "ddim"
    assert g["mask_dilate"] == 0 and info["settings"]["generator"] == "dlcr"
    import h5py

    with h5py.File(a.files[0], "r") as h5:  # each chunk says what made it
        assert h5.attrs["device"] == "cpu" and h5.attrs["shard"] == "all" and h5.attrs["batch_size"] == 4
        assert h5.attrs["reidkit_version"] == reidkit.__version__
    # variant 0 and variant 1 of one image differ (own seed, own target outfit)
    assert a.image_bytes(0) != a.image_bytes(1)


def test_dlcr_batched_matches_one_image_per_call(world, sd, tmp_path):
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    dlcr(store_path, "batched", sd, batch_size=6)
    dlcr(store_path, "single", sd, batch_size=1)
    store = reidkit.open_store(store_path)
    x, y = store.run("batched"), store.run("single")
    # batched float math may round differently by one grey level; nothing more
    for j in range(len(x)):
        assert np.abs(x.image(j).astype(int) - y.image(j)).max() <= 1


def test_dlcr_defaults_are_dlcr_settings():
    from reidkit.plugins.generators.dlcr import DlcrGenerator

    d = DlcrGenerator.defaults
    assert (d["model"], d["width"], d["height"], d["steps"], d["guidance"], d["strength"], d["scheduler"]) == (
        "stable-diffusion-v1-5/stable-diffusion-inpainting", 256, 768, 50, 7.5, 1.0, "ddim")


def test_dlcr_missing_model_is_one_line(world, tmp_path):
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    proc = run_console("expand", store_path, "--generator", "dlcr", "--prompts", "templates", "--masker", "store",
                       "--model", tmp_path / "no-such-model",
                       "--variants", "1", "--limit", "1", "--device", "cpu")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: cannot load inpainting model")


def test_recolor_follows_target_colours():
    from reidkit.generation.contracts import GenerationItem
    from reidkit.plugins.generators.recolor import RecolorGenerator

    img = np.full((40, 20, 3), 120, np.uint8)
    labels = ["background", "upper-clothes", "lower-clothes", "shoes"]
    lm = np.zeros((40, 20), np.uint8)
    lm[5:20, 5:15], lm[20:36, 5:15], lm[36:40, 5:15] = 1, 2, 3
    item = GenerationItem(0, 0, img, lm > 0, lm, labels, labels[1:], "k", ["red t-shirt", "blue jeans", "white sneakers"],
                          "red t-shirt, blue jeans, white sneakers", seed=1)
    out = RecolorGenerator({**RecolorGenerator.defaults, "jitter": 0.0}, "cpu").generate([item])[0]
    upper, lower, shoes = out[lm == 1].mean(0), out[lm == 2].mean(0), out[lm == 3].mean(0)
    assert upper[0] > 150 and upper[2] < 80  # red
    assert lower[2] > 150 and lower[0] < 80  # blue
    assert shoes.min() > 200  # white
    assert np.array_equal(out[lm == 0], img[lm == 0])


def _bytes_by_key(store_path, run):
    r = reidkit.open_store(store_path).run(run)
    return {(int(s), int(v)): r.image_bytes(j) for j, (s, v) in enumerate(zip(r.source_index(), r.variant()))}


def test_dlcr_groups_make_shards_and_resumes_byte_identical(world, sd, tmp_path):
    """Items go to the generator in fixed groups of the run's plan: shards and a resume mid-group see the same
    batch mates as one uninterrupted run, so the bytes are equal (batched float math no longer moves a grey level)."""
    store_path = tmp_path / "w.h5"
    shutil.copy(world, store_path)
    dlcr(store_path, "ref", sd, batch_size=4)  # 6 items: groups of 4 and 2
    reference = _bytes_by_key(store_path, "ref")
    assert len(reference) == 6
    for shard in ((1, 2), (0, 2)):  # each shard takes whole groups
        dlcr(store_path, "sharded", sd, batch_size=4, shard=shard)
    assert _bytes_by_key(store_path, "sharded") == reference
    # a resume mid-group: one item of the first group lost (its chunk gone), the rest kept
    dlcr(store_path, "resumed", sd, batch_size=4, chunk_size=1)
    chunks = sorted((tmp_path / "w.h5.parts" / "runs" / "resumed" / "chunks").glob("*.h5"))
    chunks[1].unlink()
    assert len(_bytes_by_key(store_path, "resumed")) == 5
    summary = dlcr(store_path, "resumed", sd, chunk_size=1)  # no --batch-size: the run's recorded group size
    assert summary["skipped"] == 5 and summary["generated"] == 1
    assert _bytes_by_key(store_path, "resumed") == reference
    assert reidkit.open_store(store_path).run("resumed").info["group_size"] == 4
    from reidkit.errors import ReidkitError

    with pytest.raises(ReidkitError, match="made in groups of 4 images; expected --batch-size 4"):
        dlcr(store_path, "resumed", sd, batch_size=1)
