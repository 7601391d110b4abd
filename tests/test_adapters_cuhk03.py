"""CUHK03 (767/700) from a miniature cuhk-03.mat (v7.3, HDF5) and new-protocol split file (level-5 MAT)."""
import numpy as np
import pytest

from reidkit.adapters.matfile import load_mat
from tests.miniature_layouts import adapt, build_cuhk03, info_json, row, run_cli, write_mat5


def _index(store, path):
    return int(np.flatnonzero(store.columns["path"] == path)[0])


def test_cuhk03_detected_ids_views_splits_and_pixels(tmp_path):
    base, pixels, _ = build_cuhk03(tmp_path)
    store = adapt("cuhk03", base, tmp_path / "c.h5")
    r = row(store, "detected/1_002_2_06.png")
    assert (r["pid"], r["camera"], r["label"], r["splits"]) == (2, 1, 1, ["train"])
    q = row(store, "detected/2_001_2_06.png")
    assert (q["pid"], q["camera"], q["label"], q["splits"]) == (844, 1, -1, ["query"])
    assert row(store, "detected/2_002_1_01.png")["splits"] == ["gallery"]
    # pixels come from the right cell of the right camera pair, un-transposed, losslessly
    assert np.array_equal(store.image(_index(store, "detected/2_001_2_06.png")), pixels[("detected", 2, 1, 6)])
    assert np.array_equal(store.image(_index(store, "detected/1_003_1_02.png")), pixels[("detected", 1, 3, 2)])
    splits = info_json(tmp_path / "c.h5")["splits"]
    assert {k: (v["ids"], v["images"]) for k, v in splits.items()} == {"train": (2, 7), "query": (3, 3), "gallery": (3, 9)}
    assert store.settings["images"] == "detected" and store.settings["split_file"] == "cuhk03_new_protocol_config_detected.mat"


def test_cuhk03_labeled_reads_the_other_cell_array(tmp_path):
    base, pixels, _ = build_cuhk03(tmp_path, images="labeled")
    store = adapt("cuhk03", base / "cuhk03_release", tmp_path / "c.h5", "--images", "labeled")  # cuhk03_release/ as root
    i = _index(store, "labeled/2_001_2_06.png")
    assert np.array_equal(store.image(i), pixels[("labeled", 2, 1, 6)])
    assert not np.array_equal(store.image(i), pixels[("detected", 2, 1, 6)])
    assert store.settings["images"] == "labeled"


def test_cuhk03_missing_split_file_names_it(tmp_path):
    base, _, _ = build_cuhk03(tmp_path)
    result = run_cli("adapt", "cuhk03", "--root", tmp_path, "--out", tmp_path / "c.h5", "--images", "labeled")
    assert result.exit_code == 1
    assert "cuhk03_new_protocol_config_labeled.mat" in result.output and len(result.output.strip().splitlines()) == 1
    result = run_cli("adapt", "cuhk03", "--root", base / "cuhk03_release" / "..", "--out", tmp_path / "c.h5", "--images", "detected")
    assert result.exit_code == 0, result.output


def test_cuhk03_bad_split_indices_are_reported_then_skipped(tmp_path):
    base, _, _ = build_cuhk03(tmp_path, extra_train=(999,))
    out = tmp_path / "c.h5"
    result = run_cli("adapt", "cuhk03", "--root", base, "--out", out)
    assert result.exit_code == 1 and "train_idx[999]" in result.output and not out.exists()
    store = adapt("cuhk03", base, out, "--skip-bad")
    assert store.skipped[0]["path"] == "cuhk03_new_protocol_config_detected.mat:train_idx[999]"


def test_cuhk03_wrong_root(tmp_path):
    result = run_cli("adapt", "cuhk03", "--root", tmp_path, "--out", tmp_path / "c.h5")
    assert result.exit_code == 1 and "cuhk03_release/cuhk-03.mat" in result.output


@pytest.mark.parametrize("compress", [True, False])
def test_level5_split_file_read_with_scipy(tmp_path, compress):
    """A split file shaped like CUHK03's (cell column of names, double columns of 1-based indices)."""
    path = tmp_path / "v.mat"
    write_mat5(path, {"filelist": ["1_001_1_01.png", "5_120_2_10.png"], "labels": [[1], [120]],
                      "train_idx": [[2], [1]], "word": "abc"}, compress=compress)
    got = load_mat(path, ("filelist", "labels", "train_idx"))
    assert [str(np.ravel(n)[0]) for n in got["filelist"].ravel()] == ["1_001_1_01.png", "5_120_2_10.png"]
    assert got["labels"].ravel().tolist() == [1, 120] and got["train_idx"].ravel().tolist() == [2, 1]
    assert "word" not in got  # only the named variables are read
    with pytest.raises(ValueError, match="missing_var"):
        load_mat(path, ("missing_var",))


def test_damaged_level5_file_is_a_value_error(tmp_path):
    path = tmp_path / "v.mat"
    write_mat5(path, {"train_idx": [[2], [1]]}, compress=True)
    data = path.read_bytes()
    path.write_bytes(data[:140] + bytes(len(data) - 140))  # header intact, compressed data zeroed
    with pytest.raises(ValueError, match="not a readable MATLAB level-5 MAT-file"):
        load_mat(path, ("train_idx",))


def test_v73_split_file_is_read_with_h5py(tmp_path):
    import h5py

    path = tmp_path / "split73.mat"
    with h5py.File(path, "w", userblock_size=512) as h5:
        names = []
        for i, name in enumerate(["1_001_1_01.png", "2_003_2_07.png"]):
            ds = h5.create_dataset(f"#refs#/c{i}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            names.append(ds.ref)
        cell = h5.create_dataset("filelist", data=np.array([names], dtype=h5py.ref_dtype))
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        h5.create_dataset("train_idx", data=np.array([[2.0, 1.0]])).attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file".ljust(116))
    got = load_mat(path, ("filelist", "train_idx"))
    assert [str(n) for n in got["filelist"].ravel()] == ["1_001_1_01.png", "2_003_2_07.png"]
    assert got["train_idx"].ravel().tolist() == [2.0, 1.0]
