"""``reidkit import-dlcr``: DLCR's released generated data, in both layouts, from a miniature PRCC and LTCC.

The datasets are written here in their real folder layouts (cv2-written images, sizes varying per image) and
adapted with the real adapters; the releases are written here too, as the DLCR README describes them: one PNG per
training image holding 10 random tiles side by side plus a .txt with one line per tile (layout a), and
VARIANT/PERSON/FILE folders of PRCC query variants (layout b). Every expectation is the test's own record of what it
wrote, never the importer's reading of it.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import run_cli

TILES = 10
# PRCC's training folders: one per person, file names repeating across persons (as in the dataset)
PRCC_TRAIN = {
    "001": ["A_cropped_rgb001", "B_cropped_rgb002", "C_cropped_rgb003"],
    "002": ["A_cropped_rgb001", "B_cropped_rgb002", "C_cropped_rgb004"],
    "004": ["A_cropped_rgb001", "B_cropped_rgb005", "C_cropped_rgb003"],
    "007": ["A_cropped_rgb006", "B_cropped_rgb002", "C_cropped_rgb001"],
}
PRCC_TEST = {"A": {"003": ["cropped_rgb003", "cropped_rgb004"], "006": ["cropped_rgb001", "cropped_rgb002"]},
             "B": {"003": ["cropped_rgb103"], "006": ["cropped_rgb101"]},
             "C": {"003": ["cropped_rgb203", "cropped_rgb204"], "006": ["cropped_rgb201"]}}
LTCC_TRAIN = [f"{pid:03d}_{clothes}_c{cam}_{frame:06d}" for pid, clothes, cam, frame in
              [(1, 1, 11, 15861), (1, 2, 3, 123), (1, 1, 5, 200), (2, 1, 1, 1), (2, 1, 2, 2), (2, 2, 4, 3),
               (3, 1, 6, 10), (3, 3, 7, 11), (3, 1, 8, 12), (5, 2, 9, 20), (5, 1, 10, 21), (5, 2, 12, 22)]]
QUERY_VARIANTS = ["40_C", "3_AB", "12_C", "7_AB"]  # DLCR names variant folders by target outfit; natural order: 3, 7, 12, 40
TRAIN_ARGS = ("--backbone", "resnet18", "--weights", "none", "--batch", "2,2", "--height", "64", "--width", "32",
              "--num-workers", "0", "--device", "cpu", "--steps-per-epoch", "1", "--epochs", "1")


def _size(j: int) -> tuple[int, int]:
    return 20 + (j % 3) * 2, 8 + (j % 4)  # (height, width): every few images another size


def _write_rgb(path: Path, rgb: np.ndarray, mode: str = "rgb"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = {"rgb": lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "gray": lambda: rgb[..., 0],
           "gray16": lambda: rgb[..., 0].astype(np.uint16) * 257,
           "rgba": lambda: np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 77, np.uint8)])}[mode]()
    assert cv2.imwrite(str(path), img)


def _dataset_image(path: Path, j: int, rng):
    h, w = _size(j)
    _write_rgb(path, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def build_prcc(root: Path) -> Path:
    rng, j = np.random.default_rng(1), 0
    base = root / "prcc" / "rgb"
    for pid, names in PRCC_TRAIN.items():
        for name in names:
            _dataset_image(base / "train" / pid / f"{name}.jpg", j, rng)
            j += 1
    _dataset_image(base / "val" / "001" / "C_cropped_rgb031.jpg", j, rng)
    for cam, persons in PRCC_TEST.items():
        for pid, names in persons.items():
            for name in names:
                j += 1
                _dataset_image(base / "test" / cam / pid / f"{name}.jpg", j, rng)
    return root / "prcc"


def build_ltcc(root: Path) -> Path:
    rng = np.random.default_rng(2)
    base = root / "LTCC_ReID"
    for j, name in enumerate(LTCC_TRAIN):
        _dataset_image(base / "train" / f"{name}.png", j, rng)
    for j, name in enumerate(["010_1_c1_000010", "012_3_c12_000020"]):
        _dataset_image(base / "query" / f"{name}.png", j, rng)
    for j, name in enumerate(["010_2_c4_000011", "010_1_c6_000012", "012_1_c2_000021"]):
        _dataset_image(base / "test" / f"{name}.png", j, rng)
    (base / "info").mkdir()
    (base / "info" / "cloth-change_id_test.txt").write_text("010\n012\n")
    return base


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("dlcr")
    for name, build in (("prcc", build_prcc), ("ltcc", build_ltcc)):
        result = run_cli("adapt", name, "--root", build(d / f"{name}-data"), "--out", d / f"{name}.h5")
        assert result.exit_code == 0, result.output
    return d


@pytest.fixture
def prcc(stores, tmp_path):
    """A fresh copy of the PRCC store (no runs) per test."""
    shutil.copy(stores / "prcc.h5", tmp_path / "prcc.h5")
    return tmp_path / "prcc.h5"


def _store(path):
    from reidkit.store import open_store

    return open_store(path)


def _index_of(store, path: str) -> int:
    where = np.flatnonzero(store.image_paths == path)
    assert len(where) == 1, path
    return int(where[0])


class Release:
    """A release folder being written, and the record of what went where: release file -> (store path, tiles, lines)."""

    def __init__(self, root: Path, seed: int = 3):
        self.root, self.rng, self.files = Path(root), np.random.default_rng(seed), {}

    def tiled(self, rel: str, store, store_path: str, mode: str = "rgb", tiles: int = TILES, extra_columns: int = 0,
              lines: list[str] | None = None, txt: bool = True):
        """One file of layout (a): ``tiles`` random tiles of the source's size side by side, and its .txt."""
        i = _index_of(store, store_path)
        h, w = int(store.height[i]), int(store.width[i])
        parts = [self.rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(tiles)]
        if extra_columns:
            parts.append(self.rng.integers(0, 256, (h, extra_columns, 3), dtype=np.uint8))
        _write_rgb(self.root / rel, np.concatenate(parts, axis=1), mode)
        if mode in ("gray", "gray16"):  # what the tiles are once converted to RGB: the grey written (v * 257 -> v), three times
            parts = [np.repeat(p[..., :1], 3, axis=2) for p in parts]
        lines = lines if lines is not None else [f"colour {k} shirt| trousers of {Path(rel).stem}| shoes {k * 7}" for k in range(tiles)]
        if txt:
            (self.root / rel).with_suffix(".txt").write_text("\n".join(lines) + "\n")
        self.files[rel] = (store_path, parts[:tiles], lines if txt else [""] * tiles)

    def unpacked(self, rel: str, store, store_path: str):
        """One file of layout (b): one variant, the source's size."""
        i = _index_of(store, store_path)
        image = self.rng.integers(0, 256, (int(store.height[i]), int(store.width[i]), 3), dtype=np.uint8)
        _write_rgb(self.root / rel, image)
        self.files[rel] = (store_path, [image], [""])


def prcc_release(root: Path, store, lead: str = "", skip=()) -> Release:
    """DLCR's training release of PRCC as its loader reads it: PERSON/NAME.png (+ .txt), under ``lead``."""
    rel = Release(root)
    for pid, names in PRCC_TRAIN.items():
        for k, name in enumerate(names):
            if (pid, name) not in skip:
                rel.tiled(f"{lead}{pid}/{name}.png", store, f"rgb/train/{pid}/{name}.jpg",
                          mode={("002", 1): "gray", ("004", 2): "rgba", ("007", 0): "gray16"}.get((pid, k), "rgb"))
    return rel


def run_items(store_path, name):
    """{(store path, variant): (image, prompt, pid, camera, target key, kept, seed)} of a run."""
    store = _store(store_path)
    run = store.run(name)
    src, var = run.source_index(), run.variant()
    out = {}
    for j in range(len(run)):
        key = (str(store.image_paths[src[j]]), int(var[j]))
        assert key not in out, f"item {key} twice"
        out[key] = (run.image(j), str(run.column("prompt")[j]), int(run.column("pid")[j]), int(run.column("camera")[j]),
                    str(run.column("target_clothes_key")[j]), bool(run.kept()[j]), int(run.column("seed")[j]))
    return out


def assert_run_holds(store_path, name, release: Release, variant_of=None):
    """Every tile of every release file is one item, equal to the tile written, with its line as prompt."""
    items = run_items(store_path, name)
    expected = 0
    for rel, (store_path_, tiles, lines) in release.files.items():
        for k, (tile, line) in enumerate(zip(tiles, lines)):
            v = variant_of(rel) if variant_of else k
            image, prompt, *_ = items[(store_path_, v)]
            assert image.dtype == np.uint8 and np.array_equal(image, tile), (rel, k)
            assert prompt == line
            expected += 1
    assert len(items) == expected
    return items


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _one_line_refusal(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# -- layout (a) ---------------------------------------------------------------------------------------------------
def test_prcc_tiles_equal_their_slices_prompts_ids_and_provenance(prcc, tmp_path):
    store = _store(prcc)
    rel = prcc_release(tmp_path / "release", store)
    root = rel.root
    # what an extracted macOS zip also holds: resource forks, Finder files, a note beside no image
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "001" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "__MACOSX" / "001").mkdir(parents=True)
    (root / "__MACOSX" / "001" / "._A_cropped_rgb001.png").write_bytes(b"\0\5\26\7")
    (root / "README.txt").write_text("DLCR generated data\n")
    (root / "002" / "notes.txt").write_text("an orphan\n")
    summary = _json(run_cli("import-dlcr", root, "--store", prcc, "--release-name", "ihaveamoose/DLCR",
                            "--release-revision", "0123abc", "--chunk-size", "7", "--json"))
    # DLCR's loader reads GEN/PERSON/NAME.png: the release lacks the store's 'rgb/train/'
    assert summary["alignment"] == {"release": "", "store": "rgb/train/", "option": "=rgb/train/", "estimated": True}
    assert summary["layout"] == "tiled" and summary["run"] == "dlcr-release-train"
    assert (summary["files"], summary["matched"], summary["imported_files"], summary["items"]) == (12, 12, 12, 120)
    assert summary["unmatched"] == 0 and summary["odd"] == {} and summary["floored"] == 0
    assert summary["ignored"] == {".DS_Store": 2, "__MACOSX": 1, "orphan .txt": 2}

    items = assert_run_holds(prcc, "dlcr-release-train", rel)
    # each tile against the release file decoded on its own (cv2) and cut by hand: columns k*w .. (k+1)*w
    for rel_path, (store_path, _, _) in rel.files.items():
        raw = cv2.imread(str(root / rel_path), cv2.IMREAD_UNCHANGED)
        raw = (raw >> 8).astype(np.uint8) if raw.dtype == np.uint16 else raw
        rgb = np.repeat(raw[..., None], 3, axis=2) if raw.ndim == 2 else cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)
        w = rgb.shape[1] // TILES
        for k in range(TILES):
            assert np.array_equal(items[(store_path, k)][0], rgb[:, k * w:(k + 1) * w])
    # identity from the path: PRCC's person folder and camera letter (A, B, C -> 0, 1, 2); nothing else set
    for (store_path, k), (_, _, pid, camera, target, kept, seed) in items.items():
        person, name = store_path.split("/")[2:4]
        assert (pid, camera) == (int(person), "ABC".index(name[0]))
        assert (target, kept, seed) == ("", True, -1)
    run_dir = prcc.parent / "prcc.h5.parts" / "runs" / "dlcr-release-train"
    info = json.loads((run_dir / "part.json").read_text())
    assert info["generator"] == "dlcr-release" and info["variants"] == TILES and info["split"] == "train"
    assert (info["release"]["name"], info["release"]["revision"]) == ("ihaveamoose/DLCR", "0123abc")
    assert info["release"]["alignment"]["option"] == "=rgb/train/"
    assert info["release"]["counts"]["ignored"] == {".DS_Store": 2, "__MACOSX": 1, "orphan .txt": 2}
    assert info["release"]["counts"]["unmatched_files"] == 0
    assert len(list((run_dir / "chunks").glob("import-*.h5"))) == 18  # 120 items in chunks of 7

    # everything that reads runs reads this one
    listed = _json(run_cli("info", prcc, "--json"))["runs"]["dlcr-release-train"]
    assert listed == {"items": 120, "kept": 120, "generator": "dlcr-release"}
    shown = run_cli("show", prcc, "--run", "dlcr-release-train", "--out", tmp_path / "sheet.png", "--sources", "2")
    assert shown.exit_code == 0, shown.output
    assert cv2.imread(str(tmp_path / "sheet.png")) is not None

    again = _json(run_cli("import-dlcr", root, "--store", prcc, "--release-name", "ihaveamoose/DLCR",
                          "--release-revision", "0123abc", "--chunk-size", "7", "--json"))
    assert (again["written"], again["already_present"], again["items"]) == (0, 120, 120)
    other = run_cli("import-dlcr", root, "--store", prcc, "--release-revision", "fff")
    assert "release_revision: \"0123abc\" -> \"fff\"" in _one_line_refusal(other)


def test_ltcc_release_under_extra_folders_is_aligned_and_strays_are_counted(stores, tmp_path):
    shutil.copy(stores / "ltcc.h5", tmp_path / "ltcc.h5")
    store = _store(tmp_path / "ltcc.h5")
    rel = Release(tmp_path / "release", seed=4)
    for j, name in enumerate(LTCC_TRAIN):  # the archive unpacked into DLCR/ and kept the dataset's own folder
        rel.tiled(f"DLCR/LTCC_ReID/train/{name}.png", store, f"train/{name}.png", txt=j % 5 != 0)  # some without .txt: prompt ''
    assert sum(lines == [""] * TILES for _, _, lines in rel.files.values()) == 3
    strays = Release(tmp_path / "release", seed=5)  # a preview image that is no training image
    strays.tiled("DLCR/previews/001_1_c11_015861.png", store, "train/001_1_c11_015861.png")
    summary = _json(run_cli("import-dlcr", rel.root, "--store", tmp_path / "ltcc.h5", "--json", "--name", "gen"))
    assert summary["alignment"]["option"] == "DLCR/LTCC_ReID/="
    assert (summary["files"], summary["matched"], summary["unmatched"], summary["items"]) == (13, 12, 1, 120)
    items = assert_run_holds(tmp_path / "ltcc.h5", "gen", rel)  # the stray's tiles are nowhere
    for (store_path, _), (_, _, pid, camera, *_rest) in items.items():
        fields = Path(store_path).stem.split("_")  # LTCC: person_outfit_cCAMERA_frame, cameras 1-based
        assert (pid, camera) == (int(fields[0]), int(fields[2][1:]) - 1)
    info = json.loads((tmp_path / "ltcc.h5.parts" / "runs" / "gen" / "part.json").read_text())
    assert info["release"]["examples"]["unmatched"] == ["DLCR/previews/001_1_c11_015861.png (not under 'DLCR/LTCC_ReID/')"]


def test_shuffled_release_is_aligned_by_path_never_by_person(prcc, tmp_path):
    store = _store(prcc)
    rel = prcc_release(tmp_path / "release", store, lead="gen/prcc_train/", skip={("001", "B_cropped_rgb002")})
    # person 001's B image put into person 004's folder: 004 has no such image, so it matches nothing (its label
    # would say person 1; its path says person 4)
    moved = Release(tmp_path / "release", seed=9)
    moved.tiled("gen/prcc_train/004/B_cropped_rgb002.png", store, "rgb/train/001/B_cropped_rgb002.jpg")
    summary = _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--json"))
    assert summary["alignment"]["option"] == "gen/prcc_train/=rgb/train/"
    assert (summary["matched"], summary["unmatched"], summary["items"]) == (11, 1, 110)
    items = assert_run_holds(prcc, "dlcr-release-train", rel)
    assert not any(path == "rgb/train/001/B_cropped_rgb002.jpg" for path, _ in items)
    # the alignment given instead of estimated: the same run
    given = _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--json", "--name", "given",
                          "--prefix", "gen/prcc_train/=rgb/train/"))
    assert given["alignment"]["estimated"] is False and given["items"] == 110
    assert_run_holds(prcc, "given", rel)
    wrong = _one_line_refusal(run_cli("import-dlcr", rel.root, "--store", prcc, "--prefix", "gen/=rgb/train/"))
    assert "only 0 of 12 image files" in wrong and "--prefix 'gen/=rgb/train/'" in wrong


def test_partial_release_below_min_match_is_refused_in_one_line(prcc, stores, tmp_path):
    store, ltcc = _store(prcc), _store(stores / "ltcc.h5")
    rel = Release(tmp_path / "release")
    for pid in ("001", "002"):
        for name in PRCC_TRAIN[pid]:
            rel.tiled(f"{pid}/{name}.png", store, f"rgb/train/{pid}/{name}.jpg")
    for name in LTCC_TRAIN[:4]:  # another benchmark's files in the same folder
        rel.tiled(f"ltcc/{name}.png", ltcc, f"train/{name}.png")
    line = _one_line_refusal(run_cli("import-dlcr", rel.root, "--store", prcc))
    assert "only 6 of 10 image files" in line and "(60%)" in line and "--min-match 0.9" in line
    assert "best alignment --prefix '=rgb/train/'" in line and "'ltcc/001_1_c11_015861.png' (no train image " in line
    assert not (prcc.parent / "prcc.h5.parts" / "runs" / "dlcr-release-train").exists()
    # the user accepts the share: the matching files are imported, the others counted
    summary = _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--min-match", "0.5", "--json"))
    assert (summary["items"], summary["unmatched"]) == (60, 4)
    # a release covering only part of the store is no refusal: its files all match
    assert _json(run_cli("import-dlcr", rel.root / "001", "--store", prcc, "--json", "--name", "one",
                         "--prefix", "=rgb/train/001/"))["items"] == 30


def test_two_files_for_one_image_are_refused_naming_both(prcc, tmp_path):
    store = _store(prcc)
    rel = prcc_release(tmp_path / "release", store)
    shutil.copy(rel.root / "002" / "A_cropped_rgb001.png", rel.root / "002" / "A_cropped_rgb001.jpg.png")
    line = _one_line_refusal(run_cli("import-dlcr", rel.root, "--store", prcc))
    assert "'002/A_cropped_rgb001.jpg.png' and '002/A_cropped_rgb001.png' -> rgb/train/002/A_cropped_rgb001.jpg" in line
    assert "--prefix '=rgb/train/'" in line


def test_width_not_divisible_is_refused_or_floored(prcc, tmp_path):
    store = _store(prcc)
    rel = prcc_release(tmp_path / "release", store, skip={("007", "C_cropped_rgb001")})
    rel.tiled("007/C_cropped_rgb001.png", store, "rgb/train/007/C_cropped_rgb001.jpg", extra_columns=3)
    width = cv2.imread(str(rel.root / "007" / "C_cropped_rgb001.png")).shape[1]
    assert width % TILES == 3
    line = _one_line_refusal(run_cli("import-dlcr", rel.root, "--store", prcc))
    assert f"007/C_cropped_rgb001.png is {width} px wide" in line and "--floor-width" in line
    summary = _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--floor-width", "--json"))
    assert (summary["floored"], summary["items"]) == (1, 120)
    assert_run_holds(prcc, "dlcr-release-train", rel)  # the 3 columns on the right are dropped


def test_tile_count_is_checked_against_txt_lines_and_source_width(prcc, tmp_path):
    store = _store(prcc)
    rel = prcc_release(tmp_path / "release", store, skip={("001", "A_cropped_rgb001")})
    short = [f"line {k}" for k in range(TILES - 1)]  # a .txt one line short: which tile has which prompt is unknown
    rel.tiled("001/A_cropped_rgb001.png", store, "rgb/train/001/A_cropped_rgb001.jpg", lines=short)
    summary = _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--json", "--min-match", "0.5"))
    assert summary["odd"] == {"txt lines": 1} and summary["items"] == 110
    assert all(path != "rgb/train/001/A_cropped_rgb001.jpg" for path, _ in run_items(prcc, "dlcr-release-train"))
    # the whole release read with the wrong count: 5 tiles of twice the source width; refused with the hint
    line = _one_line_refusal(run_cli("import-dlcr", rel.root, "--store", prcc, "--tiles", "5", "--name", "five"))
    assert "can be imported" in line and ".txt files mostly have 10 lines" in line and "10 source widths wide" in line


# -- layout (b) ---------------------------------------------------------------------------------------------------
def query_release(root: Path, store) -> Release:
    """PRCC clothes-changing query variants as DLCR's refinement reads them: VARIANT/PERSON/FILE, in a wrapper."""
    rel = Release(root, seed=6)
    for variant in QUERY_VARIANTS:
        for pid, names in PRCC_TEST["C"].items():
            for name in names:
                rel.unpacked(f"prcc_query/{variant}/{pid}/{name}.png", store, f"rgb/test/C/{pid}/{name}.jpg")
    return rel


def _query_variant(rel: str) -> int:
    return {"3_AB": 0, "7_AB": 1, "12_C": 2, "40_C": 3}[rel.split("/")[1]]


def test_unpacked_query_variants_are_imported_by_folder(prcc, tmp_path):
    rel = query_release(tmp_path / "query-release", _store(prcc))
    (rel.root / "prcc_query" / ".DS_Store").write_bytes(b"\0")
    summary = _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--split", "query", "--json"))
    assert summary["layout"] == "unpacked" and summary["variant_folders"] == ["3_AB", "7_AB", "12_C", "40_C"]
    assert summary["alignment"]["option"] == "=rgb/test/C/" and summary["items"] == 12
    assert summary["ignored"] == {".DS_Store": 1}
    items = assert_run_holds(prcc, "dlcr-release-query", rel, variant_of=_query_variant)
    assert all(prompt == "" and camera == 2 for _, prompt, _, camera, *_ in items.values())
    # a folder lacking one query: that query's variants stay 0, 1, 2 (the folders holding it, in order), the others 0-3
    (rel.root / "prcc_query" / "7_AB" / "006" / "cropped_rgb201.png").unlink()
    assert _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--split", "query", "--json", "--name", "sparse"))["items"] == 11
    sparse = run_items(prcc, "sparse")
    lacking = "rgb/test/C/006/cropped_rgb201.jpg"
    assert sorted(v for path, v in sparse if path == lacking) == [0, 1, 2]
    for folder, v in (("3_AB", 0), ("12_C", 1), ("40_C", 2)):
        assert np.array_equal(sparse[(lacking, v)][0], rel.files[f"prcc_query/{folder}/006/cropped_rgb201.png"][1][0])
    assert sorted(v for path, v in sparse if path == "rgb/test/C/003/cropped_rgb203.jpg") == [0, 1, 2, 3]


# -- resuming ------------------------------------------------------------------------------------------------------
def test_failure_after_the_first_chunk_resumes_to_the_same_bytes(prcc, tmp_path, monkeypatch):
    from reidkit.generation import dlcr_release

    rel = prcc_release(tmp_path / "release", _store(prcc))
    args = dict(split="train", chunk_size=10, show_progress=False)
    calls = {"n": 0}
    real = dlcr_release.read_rgb

    def failing(path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk gone")
        return real(path)

    monkeypatch.setattr(dlcr_release, "read_rgb", failing)
    with pytest.raises(RuntimeError, match="disk gone"):
        dlcr_release.import_release(rel.root, prcc, name="r", **args)
    assert len(_store(prcc).run("r")) == 20  # two files' items published, nothing of the third
    monkeypatch.setattr(dlcr_release, "read_rgb", real)
    resumed = dlcr_release.import_release(rel.root, prcc, name="r", **args)
    assert (resumed["written"], resumed["already_present"], resumed["items"]) == (100, 20, 120)
    dlcr_release.import_release(rel.root, prcc, name="straight", **args)
    a, b = run_items(prcc, "r"), run_items(prcc, "straight")
    assert a.keys() == b.keys() and all(np.array_equal(a[k][0], b[k][0]) and a[k][1:] == b[k][1:] for k in a)
    assert_run_holds(prcc, "r", rel)


def test_sigkill_mid_chunk_leaves_whole_chunks_and_a_rerun_finishes(prcc, tmp_path):
    rel = prcc_release(tmp_path / "release", _store(prcc))
    run_dir = prcc.parent / "prcc.h5.parts" / "runs" / "killed"
    # the second chunk's image column is half written when the process is killed
    script = textwrap.dedent(f"""
        import os, signal, sys
        from reidkit.store import chunks
        real, seen = chunks._write_column, []
        def dying(h5, name, values):
            if name == "image":
                seen.append(1)
                if len(seen) == 2:
                    real(h5, name, values[:3])
                    h5.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(h5, name, values)
        chunks._write_column = dying
        from reidkit.cli import main
        sys.argv = ["reidkit", "import-dlcr", {str(rel.root)!r}, "--store", {str(prcc)!r}, "--name", "killed",
                    "--chunk-size", "25"]
        main()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [p.name for p in (run_dir / "chunks").iterdir() if ".partial-" in p.name]
    assert leftovers and leftovers[0].startswith(".import-000001.h5")  # the half-written chunk, never published
    assert [p.name for p in (run_dir / "chunks").glob("import-*.h5")] == ["import-000000.h5"]
    assert len(_store(prcc).run("killed")) == 25
    resumed = _json(run_cli("import-dlcr", rel.root, "--store", prcc, "--name", "killed", "--chunk-size", "25", "--json"))
    assert (resumed["already_present"], resumed["written"], resumed["items"]) == (25, 95, 120)
    assert not [p for p in (run_dir / "chunks").iterdir() if ".partial-" in p.name]
    assert_run_holds(prcc, "killed", rel)


# -- the imported runs in training and refinement ------------------------------------------------------------------
@pytest.mark.slow
def test_train_progressive_on_the_imported_run_and_refine_with_query_variants(prcc, tmp_path):
    store = _store(prcc)
    assert run_cli("import-dlcr", prcc_release(tmp_path / "release", store).root, "--store", prcc).exit_code == 0
    assert run_cli("import-dlcr", query_release(tmp_path / "query", store).root, "--store", prcc, "--split", "query").exit_code == 0
    trained = run_cli("train", prcc, "--strategy", "progressive", "--generated", "dlcr-release-train", "--out", tmp_path / "run",
                      *TRAIN_ARGS)
    assert trained.exit_code == 0, trained.output
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "dlcr-release-train" in config
    refined = _json(run_cli("eval", prcc, "--checkpoint", tmp_path / "run", "--refine", "dlcr-release-query", "--protocol", "cc",
                            "--json"))
    (cc,) = refined
    assert cc["refine"] == "dlcr-release-query" and cc["refined_queries"] == 3 and cc["variants"] == 12
