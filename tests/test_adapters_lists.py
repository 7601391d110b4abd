"""List-file benchmarks (MSMT17 V1/V2, DeepChange, CCVID) on miniature layouts."""
import pytest

from tests.miniature_layouts import adapt, build_ccvid, build_deepchange, build_msmt17, info_json, row, run_cli


@pytest.mark.parametrize("version", ["MSMT17_V1", "MSMT17_V2"])
def test_msmt17_lists_cameras_and_merged_val(tmp_path, version):
    base = build_msmt17(tmp_path, version)
    store = adapt("msmt17", tmp_path, tmp_path / "m.h5")  # the parent folder works too
    train_dir, test_dir = ("train", "test") if version == "MSMT17_V1" else ("mask_train_v2", "mask_test_v2")
    r = row(store, f"{train_dir}/0000/0000_001_05_0303noon_0032_1.jpg")
    assert (r["pid"], r["camera"], r["label"], r["splits"]) == (0, 4, 0, ["train"])
    assert row(store, f"{train_dir}/0001/0001_002_07_0303morning_0200_2.jpg")["splits"] == ["train"]  # val merged
    assert row(store, f"{train_dir}/0001/0001_000_15_0303afternoon_0100_0.jpg")["camera"] == 14
    q = row(store, f"{test_dir}/0003/0003_004_10_0113noon_0500_1.jpg")
    assert (q["pid"], q["camera"], q["label"], q["splits"]) == (3, 9, -1, ["query"])
    assert store.settings["version"] == version and store.settings["merge_val"] is True
    assert base.name == version


def test_msmt17_no_merge_val_keeps_val_apart_and_records_it(tmp_path):
    base = build_msmt17(tmp_path)
    store = adapt("msmt17", base, tmp_path / "m.h5", "--no-merge-val")
    assert row(store, "train/0001/0001_002_07_0303morning_0200_2.jpg")["splits"] == ["val"]
    assert store.settings["merge_val"] is False
    assert info_json(tmp_path / "m.h5")["splits"]["train"]["images"] == 3


def test_msmt17_list_lines_outside_root_or_missing_are_reported(tmp_path):
    base = build_msmt17(tmp_path, extra_lines={"gallery": ["", "../../../etc/passwd 5", "0009/0009_000_01_x_0001_0.jpg 9", "just-one-field"]})
    out = tmp_path / "m.h5"
    result = run_cli("adapt", "msmt17", "--root", base, "--out", out)
    assert result.exit_code == 1 and not out.exists()
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "3 bad items" in message and "outside" in message and "not found" in message and "list_gallery.txt:4" in message  # blank lines still count
    store = adapt("msmt17", base, out, "--skip-bad")
    assert len(store.skipped) == 3 and len(store) == 8


def test_deepchange_tracklet_stands_in_for_camera(tmp_path):
    base = build_deepchange(tmp_path)
    store = adapt("deepchange", base, tmp_path / "d.h5")
    r = row(store, "train-set/P0001_C5_W2_F0100.jpg")
    assert (r["pid"], r["camera"], r["tracklet"], r["clothes_key"], r["label"]) == (1, 11, 11, "P0001_W2", 0)
    assert row(store, "test-set-gallery/P0900_C9_W1_F0020.jpg")["splits"] == ["gallery"]
    assert row(store, "val-set-query/P0500_C1_W1_F0001.jpg")["splits"] == ["val_query"]
    store = adapt("deepchange", base, tmp_path / "d2.h5", "--camera-from", "camera")
    r = row(store, "train-set/P0002_C17_W1_F0003.jpg")
    assert (r["camera"], r["tracklet"]) == (16, 12)
    assert store.settings["camera_from"] == "camera"


def test_ccvid_tracklets_frames_and_session_offsets(tmp_path):
    base = build_ccvid(tmp_path)
    store = adapt("ccvid", base, tmp_path / "c.h5")
    first = row(store, "session1/001_01/00100.jpg")
    last = row(store, "session1/001_01/00102.jpg")
    assert (first["camera"], first["frame"], last["frame"]) == (0, 100, 102)
    assert first["tracklet"] == last["tracklet"] == 0
    s3 = row(store, "session3/001_02/00101.jpg")
    assert (s3["camera"], s3["tracklet"], s3["clothes_key"], s3["label"]) == (13, 1, "1_u2_l1_s1_c1_b1", 0)  # 2 - 1 + 12
    g = row(store, "session3/005_01/00100.jpg")
    assert (g["camera"], g["splits"], g["label"]) == (12, ["gallery"], -1)
    assert row(store, "session1/005_12/00100.jpg")["camera"] == 11
    assert {p.unit for p in store.protocols} == {"tracklet"} and [p.name for p in store.protocols] == ["standard", "cc"]
    splits = info_json(tmp_path / "c.h5")["splits"]
    assert (splits["train"]["tracklets"], splits["query"]["tracklets"], splits["gallery"]["tracklets"]) == (2, 1, 2)
    assert splits["gallery"]["images"] == 3


def test_ccvid_missing_tracklet_folder_is_reported(tmp_path):
    base = build_ccvid(tmp_path)
    with open(base / "query.txt", "a") as f:
        f.write("session2/077_04 077 u1_l1_s1_c1_b1\n")
    result = run_cli("adapt", "ccvid", "--root", base, "--out", tmp_path / "c.h5")
    assert result.exit_code == 1 and "query.txt:2" in result.output and "session2/077_04" in result.output


def test_msmt17_accepts_images_symlinked_from_elsewhere(tmp_path):
    base = build_msmt17(tmp_path / "data")
    elsewhere = tmp_path / "other-disk" / "q.jpg"
    elsewhere.parent.mkdir()
    target = base / "test" / "0003" / "0003_004_10_0113noon_0500_1.jpg"
    target.rename(elsewhere)
    target.symlink_to(elsewhere)
    store = adapt("msmt17", base, tmp_path / "m.h5")
    assert row(store, "test/0003/0003_004_10_0113noon_0500_1.jpg")["camera"] == 9
