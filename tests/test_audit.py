"""``reidkit audit``: hand-computed figures on small arrays, colour change inside and outside a mask against the CIE
formulas, and whole audits through the CLI of a recolor run, planted runs (other persons' images, an identity-wise
run with a filter, a composite that leaks outside the mask), tiny dlcr and diffusion-reid runs, and bad input."""
import json
import math
import shutil

import numpy as np
import pytest

from tests.helpers import one_error_line, run_cli, run_console
from tests.train_helpers import make_store, write_run

RECOLOR = "recolor-train-k2-s0"
TRAIN = ("--backbone", "resnet18", "--weights", "none", "--batch", "2,2", "--height", "64", "--width", "32",
         "--num-workers", "0", "--device", "cpu", "--steps-per-epoch", "2", "--epochs", "1")
SECTIONS = {"store", "store_fingerprint", "run", "generator", "mode", "model", "reference", "items", "identity", "mask_change",
            "diversity", "per_variant", "per_target", "per_person", "filter", "notes", "files"}


# -- independent references ---------------------------------------------------------------------------------------
def cie_lab(rgb) -> np.ndarray:
    """CIELAB of uint8 sRGB colours (... x 3) by the CIE formulas: sRGB companding, the sRGB->XYZ matrix, D65 white."""
    c = np.asarray(rgb, float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.950456, 1.0, 1.088754])
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def cie_delta_e(a, b) -> np.ndarray:
    return np.linalg.norm(cie_lab(a) - cie_lab(b), axis=-1)


def at(degrees, norm=1.0):
    """A 2-D feature at an angle (degrees), of a given length (lengths must not matter: features are L2-normalised)."""
    r = math.radians(degrees)
    return [norm * math.cos(r), norm * math.sin(r)]


def cosd(degrees):
    return math.cos(math.radians(degrees))


# -- identity figures by hand --------------------------------------------------------------------------------------
# persons 10 (images at 0, 30, 60 degrees), 20 (90, 120, 150) and 30 (one image at 270); lengths differ on purpose.
# Unit-mean centroids: 10 at 30 degrees, 20 at 120, 30 at 270.
REAL = np.array([at(0, 5), at(30, 1), at(60, 2), at(90, 1), at(120, 1), at(150, 3), at(270, 1)])
REAL_PERSONS = np.array([10, 10, 10, 20, 20, 20, 30])


def test_identity_figures_equal_hand_computation():
    from reidkit.evaluation.audit import identity_figures, identity_summary

    # item 0: person 10 at 10 degrees, made from the image at 0; item 1: person 10 at 100 degrees, made from the one at 60
    items = np.array([at(10, 7), at(100, 0.5)])
    sources = REAL[[0, 2]]
    f = identity_figures(items, [10, 10], REAL, REAL_PERSONS, sources)
    assert f["centroid_cos"] == pytest.approx([cosd(20), cosd(70)])
    assert f["source_cos"] == pytest.approx([cosd(10), cosd(40)])
    # item 0: person 20 at cos(110), person 30 at cos(260): own person first; nearest other is 30
    # item 1: person 20 at cos(20) beats its own cos(70): rank 2; nearest other is 20
    assert f["rank"].tolist() == [1, 2]
    assert f["nearest_other_cos"] == pytest.approx([cosd(260), cosd(20)])
    assert f["nearest_other_person"].tolist() == [30, 20]
    assert f["margin"] == pytest.approx([cosd(20) - cosd(260), cosd(70) - cosd(20)])
    s = identity_summary(f)
    assert s["rank1_share"] == 0.5 and s["mean_rank"] == 1.5
    assert s["centroid_cos"] == pytest.approx((cosd(20) + cosd(70)) / 2)
    # a person with no real image: no figures, not counted in the share
    g = identity_figures(np.array([at(0)]), [99], REAL, REAL_PERSONS)
    assert np.isnan(g["centroid_cos"][0]) and np.isnan(g["rank"][0])
    assert identity_summary(g)["rank1_share"] is None


def test_real_ceiling_is_leave_one_out_and_floor_the_nearest_other_person():
    from reidkit.evaluation.audit import ceiling_and_floor, real_figures

    r = real_figures(REAL, REAL_PERSONS)
    # leave-one-out: the image at 0 against the mean of 30 and 60 (45 degrees), 30 against 0 and 60 (30), ...
    expected_loo = [cosd(45), 1.0, cosd(45), cosd(45), 1.0, cosd(45)]
    assert r["loo_cos"][:6] == pytest.approx(expected_loo)
    assert np.isnan(r["loo_cos"][6])  # person 30 has one image: no centroid without it
    # every image but the lone one keeps its person first, against the other persons' full centroids
    assert r["loo_rank"][:6].tolist() == [1] * 6 and np.isnan(r["loo_rank"][6])
    # nearest other centroid: 0 -> 30's (270: cos 270 = 0) over 20's (cos 120); 30 -> 20's (cos 90); 60 -> 20's (cos 60);
    # 90 -> 10's (cos 60); 120 -> 10's (cos 90); 150 -> 10's and 30's (cos 120); 270 -> 10's (cos 240)
    assert r["nearest_other_cos"] == pytest.approx([cosd(270), cosd(90), cosd(60), cosd(60), cosd(90), cosd(120), cosd(240)])
    assert r["pair_same"][0] == pytest.approx((cosd(30) + cosd(60)) / 2)
    assert r["pair_other"][0] == pytest.approx((cosd(90) + cosd(120) + cosd(150) + cosd(270)) / 4)
    ceiling, floor = ceiling_and_floor(r, 3)
    assert ceiling["centroid_cos"] == pytest.approx((4 * cosd(45) + 2) / 6) and ceiling["images"] == 6
    assert ceiling["rank1_share"] == 1.0
    assert floor["centroid_cos"] == pytest.approx((0 + 0 + 0.5 + 0.5 + 0 - 0.5 - 0.5) / 7)
    assert floor["rank1_share"] == pytest.approx(1 / 3)  # chance among 3 persons


def test_a_rank_tie_counts_for_the_item_and_centroids_average_unit_features():
    from reidkit.evaluation.audit import identity_figures, person_centroids

    # a long feature at 0 and a short one at 90: the raw mean points near 0, the unit mean at 45
    keys, centroids, _, counts = person_centroids(np.array([at(0, 100), at(90, 1)]), [1, 1])
    assert keys.tolist() == [1] and counts.tolist() == [2]
    assert centroids[0] == pytest.approx(at(45))
    # an item exactly between two persons' centroids (0 and 90 degrees): rank 1 for either person
    f = identity_figures(np.array([[1.0, 1.0], [2.0, 2.0]]), [1, 2], np.array([[1.0, 0.0], [0.0, 3.0]]), [1, 2])
    assert f["rank"].tolist() == [1, 1]


def test_spread_outfits_and_reject_reasons():
    from reidkit.evaluation.audit import mean_pairwise_distance, outfit_counts, reason_counts, spread

    # pairs (0, 90): distance 1, (0, 180): 2, (90, 180): 1
    three = np.array([at(0, 2), at(90, 3), at(180, 1)])
    assert mean_pairwise_distance(three) == pytest.approx(4 / 3)
    assert np.isnan(mean_pairwise_distance(three[:1]))
    # groups: a (0, 90) -> 1; b (0, 60) -> 1 - cos 60 = 0.5; c alone: not counted
    value, groups = spread(np.array([at(0), at(90), at(0), at(60), at(10)]), ["a", "a", "b", "b", "c"])
    assert groups == 2 and value == pytest.approx(0.75)
    counts = outfit_counts(["x", "y", "x", "", "z"], [1, 1, 2, 2, 3], ["y", "q", "q", "q", "z"])
    assert counts["distinct_targets"] == 3 and counts["items_with_target"] == 4
    assert counts["mean_targets_per_source"] == pytest.approx((2 + 1 + 1) / 3)
    assert counts["share_own_outfit"] == pytest.approx(1 / 4)  # item 4: target z is its source's own outfit
    reasons = reason_counts(["reid-confidence: p(source id) 0.120 < tau 0.5", "", "reid-confidence: p(source id) 0.300 < tau 0.5",
                             "sanity: blank image", "kept anyway"], [False, True, False, False, True])
    assert reasons == {"reid-confidence: p(source id) # < tau #": 2, "sanity: blank image": 1}


# -- colour change inside and outside a mask ------------------------------------------------------------------------
def test_mask_change_equals_the_cie_formulas_and_finds_a_change_outside():
    from reidkit.evaluation.audit import delta_e76, mask_change

    red, blue, green = (255, 0, 0), (0, 0, 255), (0, 255, 0)
    source = np.zeros((4, 6, 3), np.uint8)
    source[:] = red
    mask = np.zeros((4, 6), bool)
    mask[:, :3] = True
    out = source.copy()
    out[mask] = blue
    red_blue = float(cie_delta_e(red, blue))
    assert red_blue == pytest.approx(176.32, abs=0.01)  # the textbook value, as a check of the reference itself
    change = mask_change(source, out, mask)
    assert change["inside"] == pytest.approx(red_blue, abs=0.02)
    assert change["outside"] == 0 and change["outside_max"] == 0 and change["changed_outside"] == 0
    assert change["changed_inside_share"] == 1.0
    out[0, 5] = green  # one pixel outside the mask
    change = mask_change(source, out, mask)
    assert change["changed_outside"] == 1
    assert change["outside_max"] == pytest.approx(float(cie_delta_e(red, green)), abs=0.02)
    assert change["outside"] == pytest.approx(float(cie_delta_e(red, green)) / 12, abs=0.01)  # 12 pixels outside
    noise = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    other = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    # any colour: OpenCV's float conversion approximates the sRGB curve and the cube root (within 0.65 deltaE76 of the
    # exact formulas over 200,000 random pairs, 0.13 on average; the primaries above within 0.02)
    assert delta_e76(noise, other) == pytest.approx(cie_delta_e(noise, other), abs=0.7)


# -- whole audits through the CLI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A synthetic store, its recolor run (2 variants) and a tiny model trained with that run."""
    d = tmp_path_factory.mktemp("audit")
    store = make_store(d)
    assert run_cli("expand", store, "--generator", "recolor", "--variants", "2").exit_code == 0
    trained = run_cli("train", store, *TRAIN, "--generated", RECOLOR, "--out", d / "model")
    assert trained.exit_code == 0, trained.output
    return d, store, d / "model"


def audit_json(store, run, model, *extra):
    """The audit's JSON (stdout) and its stderr lines, through the in-process CLI."""
    r = run_cli("audit", store, "--run", run, "--model", model, "--json", *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), r.stderr


def reference(store):
    """Usable training images (junk and distractors out) in store order."""
    train = store.split("train")
    return train[~store.junk[train] & ~store.distractor[train]]


def plant(store_path, name, rows, generator="planted", settings=None):
    """A run written with the chunk-part API: ``rows`` of (source, variant, image, kept, reason, target)."""
    from reidkit import open_store
    from reidkit.store.chunks import create_part, write_chunk
    from reidkit.store.imagecodec import encode_png

    store = open_store(store_path)
    d = create_part(store, "runs", name, {"generator": generator, "split": "train",
                                          "settings": {"split": "train", **(settings or {})}})
    cols = {k: [] for k in ("image", "source_index", "variant", "pid", "camera", "target_clothes_key", "prompt", "seed",
                            "kept", "reject_reason", "scores")}
    for source, variant, image, kept, reason, target in rows:
        for k, v in (("image", encode_png(image)), ("source_index", int(source)), ("variant", int(variant)),
                     ("pid", int(store.pid[source])), ("camera", int(store.camera[source])), ("target_clothes_key", target),
                     ("prompt", ""), ("seed", 0), ("kept", bool(kept)), ("reject_reason", reason), ("scores", "{}")):
            cols[k].append(v)
    write_chunk(d, "main", cols)


def test_recolor_run_audited_through_the_cli_changes_nothing_outside_the_mask(world):
    import cv2

    from reidkit import open_store

    d, store_path, model = world
    proc = run_console("audit", store_path, "--run", RECOLOR, "--model", model, "--json")
    assert proc.returncode == 0, proc.stderr
    a = json.loads(proc.stdout)
    store = open_store(store_path)
    made = 2 * len(reference(store))  # two variants of every usable training image
    assert set(a) == SECTIONS
    assert a["mode"] == "source-wise" and a["generator"] == "recolor" and a["run"] == RECOLOR
    assert a["items"] == {"total": made, "kept": made, "rejected": 0}
    assert a["reference"] == {"split": "train", "images": len(reference(store)),
                              "persons": len(np.unique(store.pid[reference(store)]))}
    assert set(a["identity"]) == {"generated", "ceiling", "floor", "relative"}
    assert a["identity"]["floor"]["rank1_share"] == pytest.approx(1 / a["reference"]["persons"])
    m = a["mask_change"]
    assert m["measured"] and m["mask_set"] == "ground_truth" and m["items_measured"] == made
    assert m["outside_zero"] and m["items_changed_outside"] == 0 and m["delta_e_outside"] == 0 and m["delta_e_outside_max"] == 0
    assert m["delta_e_inside"] > 1  # garments were repainted
    assert f"outside the clothing mask ('ground_truth'): unchanged in all {made} items" in proc.stderr
    assert sorted(a["per_variant"]) == ["0", "1"] and sum(v["items"] for v in a["per_variant"].values()) == made
    run = store.run(RECOLOR)
    assert sorted(a["per_target"]) == sorted(set(run.column("target_clothes_key").tolist()))
    assert a["diversity"]["grouped_by"] == "source" and a["diversity"]["groups"] == made // 2
    assert a["diversity"]["distinct_targets"] == len(set(run.column("target_clothes_key").tolist()))
    assert a["diversity"]["share_own_outfit"] == 0  # recolor's targets are other outfits
    assert a["per_person"] is None and a["filter"]["rejected"] == 0 and a["model"]["trained_on_this_store"]
    # the files, in the default folder beside the run's parts
    folder = store.parts_dir / "audits" / RECOLOR
    assert json.loads((folder / "audit.json").read_text()) == a
    lines = (folder / "items.csv").read_text().splitlines()
    assert len(lines) == made + 1 and lines[0].startswith("item,source_index,variant")
    for png in ("identity-histogram.png", "worst-identity.png"):
        image = cv2.imread(str(folder / png))
        assert image is not None and image.std() > 0
    # the report of the model trained with the run shows the audit
    assert run_cli("report", model, "--no-eval").exit_code == 0
    page = (model / "report.html").read_text()
    assert "<h3>Generated data</h3>" in page
    assert f"{a['identity']['generated']['centroid_cos']:.3f}" in page
    assert f"outside the clothing mask: unchanged in all {made} items" in page
    if shutil.which("chromium"):  # as tests/test_report.py checks the page: a real browser has the section in its DOM
        import subprocess

        flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={d / 'profile'}"]
        dom = subprocess.run([*flags, "--dump-dom", (model / "report.html").as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
        assert "<h3>Generated data</h3>" in dom and f'alt="identity similarity of {RECOLOR} against real images"' in dom


def test_a_run_of_other_persons_images_loses_identity(world):
    from reidkit import open_store

    d, store_path, model = world
    store = open_store(store_path)
    ref = reference(store)
    by_person = {int(p): ref[store.pid[ref] == p] for p in np.unique(store.pid[ref])}
    persons = sorted(by_person)
    selves, others = [], []
    for p in persons:
        q = persons[(persons.index(p) + 1) % len(persons)]  # the next person
        for k, i in enumerate(by_person[p]):
            selves.append((i, 0, store.image(i), True, "", ""))
            others.append((i, 0, store.image(by_person[q][k % len(by_person[q])]), True, "", ""))
    plant(store_path, "selves", selves)
    plant(store_path, "others", others)
    kept_id, _ = audit_json(store_path, "selves", model, "--out", d / "selves")
    lost, _ = audit_json(store_path, "others", model, "--out", d / "others")
    # an item that is its source: the same features, similarity 1
    assert kept_id["identity"]["generated"]["source_cos"] == pytest.approx(1.0, abs=1e-5)
    assert lost["identity"]["generated"]["source_cos"] < 1 - 1e-3
    assert lost["identity"]["generated"]["rank1_share"] < kept_id["identity"]["generated"]["rank1_share"]
    assert lost["identity"]["generated"]["centroid_cos"] < kept_id["identity"]["generated"]["centroid_cos"]
    assert lost["mask_change"]["measured"] is False  # a run naming no mask set
    assert (d / "others" / "audit.json").is_file() and not (store.parts_dir / "audits" / "others").exists()


def test_identity_wise_run_per_person_and_what_the_filter_kept(world):
    from reidkit import open_store

    d, store_path, model = world
    store = open_store(store_path)
    ref = reference(store)
    persons = sorted(int(p) for p in np.unique(store.pid[ref]))
    rows, expected = [], {}
    for n, p in enumerate(persons):  # diffusion-reid's record: source = the reference image used, variant = image number
        refs = ref[store.pid[ref] == p]
        for j in range(3):
            source = int(refs[j % len(refs)])
            rejected = j == 2 or (n == 0 and j == 1)
            reason = ("sanity: blank image" if j == 1 else f"reid-confidence: p(source id) {0.1 + 0.01 * n:.3f} < tau 0.5") if rejected else ""
            rows.append((source, j, np.ascontiguousarray(store.image(source)[:, ::-1]), not rejected, reason, ""))
        expected[str(p)] = (3, 1 if n == 0 else 2)
    plant(store_path, "identities", rows, generator="diffusion-reid",
          settings={"filters": [{"name": "reid-confidence", "settings": {"tau": 0.5}}, {"name": "sanity", "settings": {}}]})
    a, _ = audit_json(store_path, "identities", model, "--out", d / "identities")
    assert a["mode"] == "identity-wise" and a["diversity"]["grouped_by"] == "person"
    assert {p: (v["made"], v["kept"]) for p, v in a["per_person"].items()} == expected
    assert all(v["rejected"] == v["made"] - v["kept"] for v in a["per_person"].values())
    assert a["filter"]["reasons"] == {"reid-confidence: p(source id) # < tau #": len(persons), "sanity: blank image": 1}
    assert a["filter"]["filters"] == ["reid-confidence", "sanity"]
    assert a["filter"]["kept_figures"]["items"] == 2 * len(persons) - 1
    assert a["filter"]["rejected_figures"]["items"] == len(persons) + 1
    assert a["mask_change"]["measured"] is False and a["per_target"] == {}


def test_a_composite_that_leaks_outside_the_mask_is_said_with_its_largest_distance(world):
    from reidkit import open_store

    d, store_path, model = world
    store = open_store(store_path)
    masks = store.mask_sets()["ground_truth"]
    rows, inside, leaks = [], [], []
    for k, i in enumerate(reference(store)[:4]):
        source, mask = store.image(i), masks.clothing_mask(i)
        out = source.copy()
        out[mask] = (0, 0, 255)
        inside.append(cie_delta_e(source[mask], np.array([0, 0, 255])).mean())
        if k in (1, 3):  # one pixel outside the mask painted green
            y, x = np.argwhere(~mask)[5 * k]
            out[y, x] = (0, 255, 0)
            leaks.append(float(cie_delta_e(source[y, x], np.array([0, 255, 0]))))
        rows.append((i, 0, out, True, "", ""))
    plant(store_path, "leaky", rows, generator="dlcr", settings={"mask_set": "ground_truth", "generator_settings": {"mask_dilate": 0}})
    a, err = audit_json(store_path, "leaky", model, "--out", d / "leaky")
    m = a["mask_change"]
    assert not m["outside_zero"] and m["items_changed_outside"] == 2 and m["pixels_changed_outside"] == 2
    assert m["delta_e_outside_max"] == pytest.approx(max(leaks), abs=0.7)  # OpenCV's Lab against the CIE formulas
    assert m["delta_e_inside"] == pytest.approx(float(np.mean(inside)), abs=0.7)
    line = [x for x in err.splitlines() if x.startswith("CHANGED OUTSIDE THE MASK")]
    assert len(line) == 1 and "2 of 4 items" in line[0] and f"largest deltaE76 {m['delta_e_outside_max']:.2f}" in line[0]


def test_tiny_dlcr_and_diffusion_reid_runs_are_audited(world, tmp_path):
    """The real generators on tiny random models: dlcr's composite leaves everything outside the mask untouched;
    diffusion-reid's run is read identity-wise."""
    from reidkit.generation import run_expand
    from tests.test_diffusion_reid import build_tiny_llava
    from tests.tiny_models import build_tiny_img2img, build_tiny_inpaint_pipeline

    d, store_path, model = world
    sd = build_tiny_inpaint_pipeline(tmp_path / "inpaint")
    run_expand(store_path, generator="dlcr", generator_settings={"width": 32, "height": 64, "steps": 2, "model": str(sd)},
               variants=2, limit=3, name="dlcr-tiny", device="cpu", show_progress=False, prompts="templates", masker="store")
    a, err = audit_json(store_path, "dlcr-tiny", model, "--out", tmp_path / "dlcr")
    assert a["generator"] == "dlcr" and a["mode"] == "source-wise" and a["items"]["total"] == 6
    assert a["mask_change"]["outside_zero"] and a["mask_change"]["items_measured"] == 6 and a["mask_change"]["delta_e_inside"] > 0
    assert "unchanged in all 6 items" in err

    i2i, llava = build_tiny_img2img(tmp_path / "i2i"), build_tiny_llava(tmp_path / "llava")
    run_expand(store_path, generator="diffusion-reid", name="dr-tiny", device="cpu", show_progress=False,
               generator_settings={"model": str(i2i), "captioner": str(llava), "per_identity": 2, "steps": 2, "height": 32,
                                   "width": 16, "caption_tokens": 6, "guidance": 2.0},
               filters=[f"reid-confidence:checkpoint={model},tau=0"])
    a, _ = audit_json(store_path, "dr-tiny", model, "--out", tmp_path / "dr")
    from reidkit import open_store

    persons = sorted(str(int(p)) for p in np.unique(open_store(store_path).pid[reference(open_store(store_path))]))
    assert a["mode"] == "identity-wise" and sorted(a["per_person"]) == persons
    assert all(v["made"] == 2 for v in a["per_person"].values()) and a["mask_change"]["measured"] is False
    assert a["filter"]["filters"] == ["reid-confidence"]


def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path):
    import yaml

    from reidkit import open_store

    d, store_path, model = world
    store = open_store(store_path)
    audits = store.parts_dir / "audits"

    def refused(*args):
        before = sorted(p.name for p in audits.iterdir()) if audits.is_dir() else []
        line = one_error_line(run_console("audit", store_path, *args))
        assert (sorted(p.name for p in audits.iterdir()) if audits.is_dir() else []) == before
        return line

    assert "has no generated run 'nope'" in refused("--run", "nope", "--model", model)
    # a run of another store, its folder copied beside this store's runs: not this store's run
    (tmp_path / "other").mkdir()
    other = make_store(tmp_path / "other", ids=6)
    write_run(other, "theirs", variants=1)
    shutil.copytree(open_store(other).parts_dir / "runs" / "theirs", store.parts_dir / "runs" / "theirs")
    assert "has no generated run 'theirs'" in refused("--run", "theirs", "--model", model)
    # a video model: it reads clips, not single images
    video = tmp_path / "video"
    shutil.copytree(model, video)
    config = yaml.safe_load((video / "config.yaml").read_text())
    (video / "config.yaml").write_text(yaml.safe_dump({**config, "clip_len": 8}))
    assert "is a video model (clip_len 8" in refused("--run", RECOLOR, "--model", video)
    assert "is not a reidkit training run" in refused("--run", RECOLOR, "--model", tmp_path)
    # every item rejected
    train = reference(store)
    write_run(store_path, "all-rejected", variants=1, reject={(int(i), 0) for i in train})
    assert "has no kept items" in refused("--run", "all-rejected", "--model", model)
    out = tmp_path / "missing" / "audit"
    assert "the folder of --out does not exist" in refused("--run", RECOLOR, "--model", model, "--out", out)
    assert not out.parent.exists()
