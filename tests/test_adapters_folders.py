"""Folder-named benchmarks (Market-1501, DukeMTMC-reID, LTCC, PRCC, VC-Clothes, Celeb-reID, LaST) on miniature layouts."""
import numpy as np
import pytest

from tests.miniature_layouts import (
    adapt,
    build_ccvid,
    build_celebreid,
    build_cuhk03,
    build_deepchange,
    build_duke,
    build_last,
    build_ltcc,
    build_market,
    build_msmt17,
    build_prcc,
    build_vcclothes,
    info_json,
    row,
    run_cli,
    write_image,
)


def test_market_parses_ids_cameras_junk_and_distractors(tmp_path):
    base = build_market(tmp_path / "data")
    store = adapt("market1501", base, tmp_path / "m.h5")
    assert row(store, "bounding_box_train/0002_c2s1_000301_01.jpg") == dict(
        pid=2, label=0, camera=1, clothes_key="", clothes_id=-1, tracklet=-1, frame=-1, junk=False, distractor=False, splits=["train"]
    )
    assert row(store, "bounding_box_train/0007_c3s3_077419_03.jpg")["label"] == 1
    junk = row(store, "bounding_box_test/-1_c5s2_011111_01.jpg")
    assert (junk["pid"], junk["camera"], junk["junk"], junk["distractor"], junk["splits"]) == (-1, 4, True, False, ["gallery"])
    distractor = row(store, "bounding_box_test/0000_c1s1_000151_01.jpg")
    assert (distractor["pid"], distractor["junk"], distractor["distractor"], distractor["label"]) == (0, False, True, -1)
    query = row(store, "query/0005_c4s2_012345_00.jpg")
    assert (query["pid"], query["camera"], query["label"], query["splits"]) == (5, 3, -1, ["query"])
    assert len(store) == 11  # Thumbs.db and gt_bbox/ are not images of the benchmark
    assert [p.name for p in store.protocols] == ["standard"]

    gallery = info_json(tmp_path / "m.h5")["splits"]["gallery"]
    # distractors belong to the published gallery size, junk does not
    assert (gallery["images"], gallery["ids"], gallery["junk"], gallery["distractors"], gallery["stored_images"]) == (4, 3, 2, 1, 6)


def test_market_accepts_the_unpacked_parent_folder(tmp_path):
    build_market(tmp_path / "data")
    store = adapt("market1501", tmp_path / "data", tmp_path / "m.h5")
    assert store.settings["root"] == str(tmp_path / "data")
    assert row(store, "query/0003_c1s1_001051_00.jpg")["pid"] == 3


def test_duke_flags_gallery_only_ids_as_distractors(tmp_path):
    store = adapt("dukemtmc", build_duke(tmp_path), tmp_path / "d.h5")
    assert row(store, "bounding_box_test/0009_c1_f0053444.jpg")["distractor"] is True
    assert row(store, "bounding_box_test/0011_c7_f0101913.jpg")["distractor"] is False
    assert row(store, "bounding_box_train/0002_c8_f0046532.jpg")["camera"] == 7
    gallery = info_json(tmp_path / "d.h5")["splits"]["gallery"]
    assert (gallery["ids"], gallery["images"], gallery["distractor_ids"]) == (3, 4, 1)


def test_ltcc_parses_outfits_and_accepts_gray_rgba_and_16bit_png(tmp_path):
    store = adapt("ltcc", build_ltcc(tmp_path), tmp_path / "l.h5")
    r = row(store, "train/001_2_c3_000123.png")
    assert (r["pid"], r["camera"], r["clothes_key"], r["label"]) == (1, 2, "1_2", 0)
    assert row(store, "query/012_3_c12_000020.png")["camera"] == 11
    assert row(store, "test/010_1_c6_000012.png")["splits"] == ["gallery"]
    assert row(store, "test/010_2_c4_000011.png")["clothes_id"] != row(store, "test/010_1_c6_000012.png")["clothes_id"]
    for name in ("002_1_c2_000002.png", "002_1_c4_000003.png", "002_1_c5_000004.png"):  # gray, RGBA, 16-bit
        i = int(np.flatnonzero(store.columns["path"] == f"train/{name}")[0])
        assert store.image(i).shape == (8, 4, 3) and store.image(i).dtype == np.uint8
    assert [p.name for p in store.protocols] == ["standard", "cc"]
    assert store.settings["cloth_change_ids_test"] == [10, 12]


def test_prcc_folders_outfits_and_protocols(tmp_path):
    store = adapt("prcc", build_prcc(tmp_path), tmp_path / "p.h5")
    a, b, c = (row(store, f"rgb/train/001/{x}") for x in ("A_cropped_rgb001.jpg", "B_cropped_rgb011.jpg", "C_cropped_rgb021.jpg"))
    assert (a["camera"], b["camera"], c["camera"]) == (0, 1, 2)
    assert a["clothes_key"] == b["clothes_key"] == "1_AB" and c["clothes_key"] == "1_C"
    assert row(store, "rgb/val/004/B_cropped_rgb012.jpg")["splits"] == ["val"]
    g = row(store, "rgb/test/A/006/cropped_rgb001.jpg")
    assert (g["pid"], g["camera"], g["splits"]) == (6, 0, ["gallery"])
    assert row(store, "rgb/test/B/003/cropped_rgb103.jpg")["splits"] == ["query_sc"]
    q = row(store, "rgb/test/C/003/cropped_rgb203.jpg")
    assert (q["camera"], q["clothes_key"], q["splits"]) == (2, "3_C", ["query_cc"])
    protocols = {p.name: p for p in store.protocols}
    assert set(protocols) == {"sc", "cc", "sc_single_shot", "cc_single_shot"}
    assert (protocols["sc"].query, protocols["sc"].gallery, protocols["sc"].rule) == ("query_sc", "gallery", "sc")
    assert (protocols["cc_single_shot"].query, protocols["cc_single_shot"].gallery_sampling, protocols["cc_single_shot"].trials) == (
        "query_cc", "single_shot", 10)
    assert protocols["cc"].gallery_sampling == "all"


def test_vcclothes_camera_subsets_are_zero_based(tmp_path):
    store = adapt("vcclothes", build_vcclothes(tmp_path), tmp_path / "v.h5")
    r = row(store, "query/0002-03-02-01.jpg")
    assert (r["pid"], r["camera"], r["clothes_key"], r["frame"]) == (2, 2, "2_02", 1)
    assert row(store, "train/0001-03-02-05.jpg")["frame"] == 5
    protocols = {p.name: p for p in store.protocols}
    assert protocols["standard"].query_cameras is None
    assert protocols["sc"].query_cameras == protocols["sc"].gallery_cameras == [1, 2]
    assert protocols["cc"].query_cameras == protocols["cc"].gallery_cameras == [2, 3]


def test_celebreid_every_image_its_own_camera(tmp_path):
    store = adapt("celebreid", build_celebreid(tmp_path), tmp_path / "c.h5")
    assert len(np.unique(store.columns["camera"])) == len(store)
    r = row(store, "query/4_3_1.jpg")
    assert (r["pid"], r["clothes_key"], r["splits"]) == (4, "", ["query"])


def test_last_nested_folders_train_outfits_and_own_cameras(tmp_path):
    store = adapt("last", build_last(tmp_path), tmp_path / "l.h5")
    r = row(store, "train/000000/000000_1_13_1.jpg")
    assert (r["pid"], r["clothes_key"], r["label"]) == (0, "0_1", 0)
    assert row(store, "train/000007/000007_0_02_0.jpg")["label"] == 1
    g = row(store, "test/gallery/009999/009999_0_01_0.jpg")
    assert (g["pid"], g["clothes_key"], g["splits"]) == (9999, "", ["gallery"])  # test outfits are not published
    assert row(store, "val/query/000100_0_01_0.jpg")["splits"] == ["val_query"]
    assert len(np.unique(store.columns["camera"])) == len(store)
    assert {p.name: (p.query, p.gallery) for p in store.protocols} == {"standard": ("query", "gallery"), "val": ("val_query", "val_gallery")}


# -- bad input ------------------------------------------------------------------
def test_wrong_root_names_what_was_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("adapt", "market1501", "--root", tmp_path / "empty", "--out", tmp_path / "m.h5")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "bounding_box_train" in lines[0] and "Market-1501-v15.09.15" in lines[0]
    assert not (tmp_path / "m.h5").exists()


def test_missing_split_folder_is_named(tmp_path):
    base = build_ltcc(tmp_path)
    for p in (base / "query").iterdir():
        p.unlink()
    (base / "query").rmdir()
    result = run_cli("adapt", "ltcc", "--root", base, "--out", tmp_path / "l.h5")
    assert result.exit_code == 1 and "query" in result.output and "not found" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["zero", "truncated", "garbage", "unparseable"])
def test_bad_files_fail_with_nothing_written_unless_skip_bad(tmp_path, damage):
    base = build_market(tmp_path / "data")
    victim = base / "query" / "0005_c4s2_012345_00.jpg"
    if damage == "zero":
        victim.write_bytes(b"")
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:-40])
    elif damage == "garbage":
        victim.write_bytes(b"\xff\xd8\xff" + b"\x00" * 64 + b"\xff\xd9")
    else:
        victim = write_image(base / "query" / "IMG_0001.jpg")
    out = tmp_path / "m.h5"
    result = run_cli("adapt", "market1501", "--root", base, "--out", out)
    assert result.exit_code == 1
    assert victim.name in result.output and "--skip-bad" in result.output
    assert not out.exists() and list(tmp_path.glob("m.h5*")) == []

    store = adapt("market1501", base, out, "--skip-bad")
    assert [s["path"] for s in store.skipped] == [f"query/{victim.name}"]
    assert victim.name not in set(store.columns["path"])
    assert len(store) == 10 + (damage == "unparseable")


def test_console_script_adapts_and_fails_in_one_line(tmp_path):
    from tests.helpers import run_console

    base = build_vcclothes(tmp_path)
    done = run_console("adapt", "vcclothes", "--root", base, "--out", tmp_path / "v.h5")
    assert done.returncode == 0, done.stderr
    assert "vcclothes" in done.stdout and "Wrote" in done.stderr
    wrong = run_console("adapt", "vcclothes", "--root", tmp_path / "nowhere", "--out", tmp_path / "w.h5")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip().splitlines() == [f"Error: --root {tmp_path / 'nowhere'} does not exist"]


# -- without --root / --out: the distributed folder in the working directory or under $REIDKIT_DATA -----------------
BUILDERS = {"market1501": build_market, "dukemtmc": build_duke, "ltcc": build_ltcc, "prcc": build_prcc,
            "vcclothes": build_vcclothes, "celebreid": build_celebreid, "last": build_last, "msmt17": build_msmt17,
            "deepchange": build_deepchange, "ccvid": build_ccvid, "cuhk03": lambda root: build_cuhk03(root)[0]}


def test_every_benchmark_adapter_declares_its_distributed_folder():
    from reidkit.plugin_manager import get_plugins

    plugins = get_plugins()
    builtin = [n for n in plugins.names("adapters") if plugins.get("adapters", n).__module__.startswith("reidkit.adapters.")]
    assert set(builtin) == set(BUILDERS) | {"synthetic", "folder", "list"}  # folder, list: a user's own data (custom.md)
    for name in BUILDERS:
        cls = plugins.get("adapters", name)
        assert cls.folder_names and cls.store_name == f"{name}.h5", name
    synthetic = plugins.get("adapters", "synthetic")
    assert not synthetic.folder_names and not synthetic.store_name  # generated: no folder, --out required


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_adapt_finds_the_folder_in_the_working_directory(name, tmp_path, monkeypatch):
    from reidkit.plugin_manager import get_plugins
    from reidkit.store import open_store

    data = tmp_path / "data"
    base = BUILDERS[name](data)
    assert base.name in get_plugins().get("adapters", name).folder_names
    monkeypatch.delenv("REIDKIT_DATA", raising=False)
    monkeypatch.chdir(data)
    result = run_cli("adapt", name)
    assert result.exit_code == 0, result.output
    store = open_store(data / f"{name}.h5")
    assert store.settings["root"] == str(base) and len(store) > 0


def test_adapt_looks_under_reidkit_data_and_says_where_it_looked(tmp_path, monkeypatch):
    from reidkit.store import open_store

    base = build_ltcc(tmp_path / "datasets")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("REIDKIT_DATA", raising=False)
    missing = run_cli("adapt", "ltcc")
    assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1
    assert f"no LTCC_ReID folder in {work}" in missing.output and "--root" in missing.output
    assert "REIDKIT_DATA is not set" in missing.output
    monkeypatch.setenv("REIDKIT_DATA", f"{tmp_path / 'elsewhere'}:{tmp_path / 'datasets'}")
    found = run_cli("adapt", "ltcc")
    assert found.exit_code == 0, found.output
    assert open_store(work / "ltcc.h5").settings["root"] == str(base)
    # --root and --out still win; --root may be the folder holding LTCC_ReID
    again = run_cli("adapt", "ltcc", "--root", tmp_path / "datasets", "--out", tmp_path / "other.h5")
    assert again.exit_code == 0, again.output
    assert len(open_store(tmp_path / "other.h5")) == len(open_store(work / "ltcc.h5"))
    monkeypatch.setenv("REIDKIT_DATA", str(tmp_path / "elsewhere"))
    missing = run_cli("adapt", "ltcc", "--out", tmp_path / "third.h5")
    assert missing.exit_code == 1 and f"$REIDKIT_DATA ({tmp_path / 'elsewhere'})" in missing.output
