"""Your own labelled data (issue 28): ``reidkit adapt folder`` and ``reidkit adapt list`` on real layouts.

Every layout is written into a tmp folder with real JPEG/PNG files (cv2, 32x16) and read by the installed
console script; the store is then opened and checked column by column.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from reidkit.store import open_store
from tests.helpers import one_error_line, run_console


# -- building layouts -------------------------------------------------------------------------------------------
def image(path: Path) -> Path:
    """A real 32x16 image (JPEG or PNG by the suffix), its pixels seeded by its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path.name).encode()))
    assert cv2.imwrite(str(path), rng.integers(0, 256, (32, 16, 3), dtype=np.uint8))
    return path


def adapt(*args):
    done = run_console("adapt", *args)
    assert done.returncode == 0, done.stderr
    return done


def info_json(store: Path) -> dict:
    done = run_console("info", store, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def table(store) -> dict[str, dict]:
    """path -> what the store recorded for it (pid, camera, outfit key, tracklet, split)."""
    cols = store.columns
    split_of = {int(i): name for name, idx in store.splits.items() for i in idx}
    return {str(cols["path"][i]): {"pid": int(cols["pid"][i]), "camera": int(cols["camera"][i]), "label": int(cols["label"][i]),
                                   "clothes_key": str(cols["clothes_key"][i]), "tracklet": int(cols["tracklet"][i]),
                                   "split": split_of[i]} for i in range(len(store))}


def no_store_left(folder: Path, out: Path):
    assert not out.exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(f".{out.name}")]  # no partial file, no lock


# -- person folders -----------------------------------------------------------------------------------------------
PERSON_LAYOUT = {
    "train": {"zoe": 3, "Adam": 2, "007": 2},
    "query": {"carol": 1, "dave": 1},
    "gallery": {"carol": 2, "dave": 2, "eve": 1},  # eve: a gallery-only person
}


def build_person_folders(root: Path) -> Path:
    for split, persons in PERSON_LAYOUT.items():
        for person, n in persons.items():
            for k in range(n):
                image(root / split / person / f"shot{k}.{'png' if k % 2 else 'jpg'}")
    (root / "train" / ".DS_Store").write_bytes(b"\0")  # dot files are nobody's data
    (root / "train" / "zoe" / "notes.txt").write_text("not an image")
    return root


def test_person_folders_any_names_sorted_pids_and_own_cameras(tmp_path):
    root = build_person_folders(tmp_path / "mydata")
    out = tmp_path / "s.h5"
    adapt("folder", root, "--out", out)
    store = open_store(out)
    rows = table(store)
    names = sorted({p for persons in PERSON_LAYOUT.values() for p in persons})
    assert names == ["007", "Adam", "carol", "dave", "eve", "zoe"]  # sorted as text; '007' is a name among names
    assert store.settings["person_names"] == {name: pid for pid, name in enumerate(names)}
    for path, r in rows.items():
        split, person, _ = path.split("/")
        assert (r["split"], r["pid"]) == (split, names.index(person))
    # the same person name in query and gallery is one pid
    assert {r["pid"] for p, r in rows.items() if p.startswith("query/carol/")} == {r["pid"] for p, r in rows.items() if p.startswith("gallery/carol/")} == {2}
    assert len(store) == 14 and sorted(r["label"] for r in rows.values() if r["split"] == "train") == [0, 0, 1, 1, 2, 2, 2]
    # no camera given: every image is its own camera (LaST's convention), said in info and in the protocol
    assert sorted(r["camera"] for r in rows.values()) == list(range(14))
    info = info_json(out)
    assert info["settings"]["camera"] == "each image is its own camera (none given)"
    assert {s: (v["ids"], v["images"], v["cameras"], v["outfits"]) for s, v in info["splits"].items()} == {
        "train": (3, 7, 7, 0), "query": (2, 2, 2, 0), "gallery": (3, 5, 5, 0)}
    assert [p["name"] for p in info["protocols"]] == ["standard"]
    assert "every image is its own camera" in info["protocols"][0]["description"]
    assert "each image is its own camera" in run_console("info", out).stdout  # the plain summary says it too
    assert info["settings"]["split"] == "given" and info["settings"]["layout"] == {"train": "person folders", "query": "person folders", "gallery": "person folders"}
    # --root names the same folder as the positional ROOT
    adapt("folder", "--root", root, "--out", tmp_path / "t.h5")
    assert open_store(tmp_path / "t.h5").fingerprint == store.fingerprint


def test_a_store_from_adapt_folder_feeds_the_training_items(tmp_path):
    from reidkit.training.data import build_items

    root = tmp_path / "d"
    for split, persons in {"train": ["a", "b", "c"], "query": ["x"], "gallery": ["x"]}.items():
        for person in persons:
            for outfit in (1, 2):
                image(root / split / person / f"{person}_{outfit}_c{outfit}.jpg")
    adapt("folder", root, "--out", tmp_path / "s.h5", "--set", r"name_pattern=[a-z]+_(?P<outfit>\d)_c(?P<camera>\d)")
    store = open_store(tmp_path / "s.h5")
    items = build_items(store)
    assert items.num_classes == 3 and items.num_clothes == 6 and len(items.label) == 6
    assert items.clothes_of_class == [[0, 1], [2, 3], [4, 5]]
    assert store.image(int(store.split("train")[0])).shape == (32, 16, 3)


# -- Market-style file names and a name_pattern ----------------------------------------------------------------------
def build_market_like(root: Path) -> Path:
    names = {
        "train": ["0002_1_c1s1_000451_03.jpg", "0002_2_c3s1_000551_01.jpg", "0007_1_c2s3_070821_01.png"],
        "query": ["0011_1_c1s1_001051_00.jpg", "0012_1_c2s1_001101_00.jpg"],
        "gallery": ["0011_2_c3s2_002051_02.jpg", "0011_1_c2s2_003051_01.jpg", "0012_3_c1s4_001000_01.png"],
    }
    for split, files in names.items():
        for name in files:
            image(root / split / name)
    return root


def test_market_style_names_with_a_name_pattern_give_cameras_outfits_and_cc(tmp_path):
    root = build_market_like(tmp_path / "m")
    out = tmp_path / "m.h5"
    adapt("folder", root, "--out", out, "--set", r"name_pattern=(?P<pid>\d+)_(?P<outfit>\d+)_c(?P<camera>\d+)")
    store = open_store(out)
    rows = table(store)
    assert rows["train/0002_2_c3s1_000551_01.jpg"] == dict(pid=2, camera=2, label=0, clothes_key="2_2", tracklet=-1, split="train")
    assert rows["train/0007_1_c2s3_070821_01.png"] == dict(pid=7, camera=1, label=1, clothes_key="7_1", tracklet=-1, split="train")
    assert rows["gallery/0012_3_c1s4_001000_01.png"] == dict(pid=12, camera=0, label=-1, clothes_key="12_3", tracklet=-1, split="gallery")
    assert "person_names" not in store.settings and store.settings["camera_names"] == {"1": 0, "2": 1, "3": 2}
    assert [p.name for p in store.protocols] == ["standard", "cc", "sc"]
    assert [p.rule for p in store.protocols] == ["standard", "cc", "sc"]
    splits = info_json(out)["splits"]
    assert {s: (v["ids"], v["images"], v["cameras"], v["outfits"]) for s, v in splits.items()} == {
        "train": (2, 3, 3, 3), "query": (2, 2, 2, 2), "gallery": (2, 3, 3, 3)}
    shown = run_console("info", out)
    cells = [[c.strip() for c in line.split("│")[1:5]] for line in shown.stdout.splitlines()]
    assert shown.returncode == 0 and ["cc", "query", "gallery", "cc"] in cells, shown.stdout


def test_market_names_without_a_pattern_give_persons_and_cameras(tmp_path):
    root = tmp_path / "market"
    for rel in ["train/0002_c1s1_000451_03.jpg", "train/0002_c3s1_000551_01.jpg", "query/0011_c2s1_001051_00.jpg",
                "gallery/0011_c1s2_002051_02.png", "gallery/0020_c6s2_002051_02.jpg"]:
        image(root / rel)
    adapt("folder", root, "--out", tmp_path / "plain.h5")
    plain = open_store(tmp_path / "plain.h5")
    rows = table(plain)
    assert rows["query/0011_c2s1_001051_00.jpg"] == dict(pid=11, camera=1, label=-1, clothes_key="", tracklet=-1, split="query")
    assert rows["gallery/0020_c6s2_002051_02.jpg"]["camera"] == 3  # cameras 1, 2, 3, 6 -> 0, 1, 2, 3 (recorded)
    assert plain.settings["camera_names"] == {"1": 0, "2": 1, "3": 2, "6": 3}
    assert plain.settings["name_pattern"] == r"(?P<pid>\d+)_c(?P<camera>\d+)"
    assert [p.name for p in plain.protocols] == ["standard"] and plain.settings["outfits"] == "none given"


def test_a_name_that_does_not_match_is_one_line_or_skipped(tmp_path):
    root = build_market_like(tmp_path / "m")
    image(root / "gallery" / "holiday.jpg")
    out = tmp_path / "m.h5"
    pattern = ["--set", r"name_pattern=(?P<pid>\d+)_(?P<outfit>\d+)_c(?P<camera>\d+)"]
    line = one_error_line(run_console("adapt", "folder", root, "--out", out, *pattern))
    assert "gallery/holiday.jpg: file name does not match name_pattern" in line and "--skip-bad" in line
    no_store_left(tmp_path, out)
    adapt("folder", root, "--out", out, "--skip-bad", *pattern)
    assert open_store(out).skipped == [{"path": "gallery/holiday.jpg", "why": line.split("gallery/holiday.jpg: ")[1].split(" (use")[0]}]


# -- CSV and TSV lists ------------------------------------------------------------------------------------------------
LIST_ROWS = [  # path, pid, camera, outfit, split, tracklet
    ("imgs/a1.jpg", "12", "cam A", "red", "train", "1"),
    ("imgs/a2.png", "12", "cam B", "blue", "train", "2"),
    ("imgs/b1.jpg", "30", "cam A", "red", "train", "3"),
    ("more/q1.jpg", "40", "cam B", "coat", "query", "4"),
    ("more/g1.jpg", "40", "cam A", "shirt", "gallery", "5"),
    ("more/g2.png", "41", "cam C", "coat", "gallery", "6"),
]


def write_list(folder: Path, name: str, rows, header=("path", "pid", "camera", "outfit", "split", "tracklet"), sep=None,
               images=True) -> Path:
    """The list file and (``images``) a real image for each row's path."""
    folder.mkdir(parents=True, exist_ok=True)
    sep = sep or ("\t" if name.endswith(".tsv") else ",")
    for r in rows if images else ():
        image(folder / r[0])
    path = folder / name
    path.write_text("\n".join(sep.join(r) for r in [header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("name, sep", [("people.csv", ","), ("people.tsv", "\t"), ("people.txt", "\t")])  # .txt: sniffed
def test_a_csv_or_tsv_list_with_relative_paths(tmp_path, name, sep):
    listing = write_list(tmp_path / "data", name, LIST_ROWS, sep=sep)
    out = tmp_path / "l.h5"
    adapt("list", listing, "--out", out)
    store = open_store(out)
    rows = table(store)
    assert rows["imgs/a2.png"] == dict(pid=12, camera=1, label=0, clothes_key="12_blue", tracklet=2, split="train")
    assert rows["more/g2.png"] == dict(pid=41, camera=2, label=-1, clothes_key="41_coat", tracklet=6, split="gallery")
    assert list(rows) == [r[0] for r in LIST_ROWS]  # list order kept
    assert store.settings["camera_names"] == {"cam A": 0, "cam B": 1, "cam C": 2}
    assert store.settings["delimiter"] == ("comma" if sep == "," else "tab") and store.settings["split"] == "given"
    assert [p.name for p in store.protocols] == ["standard", "cc", "sc"]
    splits = info_json(out)["splits"]
    assert {s: (v["ids"], v["images"], v["cameras"], v["outfits"], v["tracklets"]) for s, v in splits.items()} == {
        "train": (2, 3, 2, 3, 3), "query": (1, 1, 1, 1, 1), "gallery": (2, 2, 2, 2, 2)}


def test_a_list_without_cameras_or_outfits_has_person_names_and_own_cameras(tmp_path):
    rows = [("x/1.jpg", "bob", "train"), ("x/2.jpg", "alice", "train"), ("x/3.jpg", "carl", "query"), ("x/4.jpg", "carl", "gallery"),
            (str(tmp_path / "x" / "5.jpg"), "dora", "gallery")]  # an absolute path inside the list's folder is fine
    listing = write_list(tmp_path, "l.csv", rows, header=("Path", "PID", "split"))  # header names in any case
    adapt("list", listing, "--out", tmp_path / "l.h5")
    store = open_store(tmp_path / "l.h5")
    assert store.settings["person_names"] == {"alice": 0, "bob": 1, "carl": 2, "dora": 3}
    assert {p: r["pid"] for p, r in table(store).items()} == {"x/1.jpg": 1, "x/2.jpg": 0, "x/3.jpg": 2, "x/4.jpg": 2, "x/5.jpg": 3}
    assert sorted(store.camera.tolist()) == [0, 1, 2, 3, 4]
    assert store.settings["camera"] == "each image is its own camera (none given)" and [p.name for p in store.protocols] == ["standard"]


# -- one labelled folder: the seeded holdout split -------------------------------------------------------------------------
def build_one_folder(root: Path, persons=10, cameras=2, shots=3) -> Path:
    for p in range(persons):
        for c in range(1, cameras + 1):
            for k in range(shots):
                image(root / f"person{p:02d}" / f"c{c}_{k}.jpg")
    return root


def holdout(root, out, *sets):
    adapt("folder", root, "--out", out, "--set", r"name_pattern=c(?P<camera>\d)", *sum((["--set", s] for s in sets), []))
    store = open_store(out)
    rows = table(store)
    test = {r["pid"] for r in rows.values() if r["split"] != "train"}
    queries = sorted(p for p, r in rows.items() if r["split"] == "query")
    return store, rows, test, queries


def test_one_labelled_folder_is_split_by_persons_seeded_and_recorded(tmp_path):
    root = build_one_folder(tmp_path / "one")
    store, rows, test, queries = holdout(root, tmp_path / "a.h5")
    assert store.settings["split"] == "holdout by persons"
    assert (store.settings["holdout"], store.settings["seed"], store.settings["holdout_persons"]) == (0.5, 0, {"train": 5, "test": 5})
    train = {r["pid"] for r in rows.values() if r["split"] == "train"}
    assert len(train) == len(test) == 5 and not train & test
    # one query per (person, camera) of the test persons; the rest of their images is the gallery
    per_key = {}
    for r in rows.values():
        if r["pid"] in test:
            per_key.setdefault((r["pid"], r["camera"]), []).append(r["split"])
    assert len(per_key) == 10 and all(sorted(v) == ["gallery", "gallery", "query"] for v in per_key.values())
    assert [p.name for p in store.protocols] == ["standard"]
    # the same seed gives the same split, another seed another one
    _, _, test_again, queries_again = holdout(root, tmp_path / "b.h5", "seed=0")
    assert (test_again, queries_again) == (test, queries)
    _, _, test_other, queries_other = holdout(root, tmp_path / "c.h5", "seed=1")
    assert test_other != test and queries_other != queries
    # the share is a setting; only train/ (no query/gallery) is one labelled folder too
    other = tmp_path / "only_train"
    build_one_folder(other / "train", persons=10)
    store, rows, test, _ = holdout(other, tmp_path / "d.h5", "holdout=0.3", "seed=4")
    assert len(test) == 3 and store.settings["holdout_persons"] == {"train": 7, "test": 3} and store.settings["seed"] == 4
    assert store.settings["layout"] == {"train": "person folders"}


def test_a_list_without_split_column_and_no_cameras_has_one_query_per_test_person(tmp_path):
    rows = [(f"p{p}/{k}.png", str(100 + p)) for p in range(6) for k in range(3)]
    listing = write_list(tmp_path, "l.tsv", rows, header=("path", "pid"))
    adapt("list", listing, "--out", tmp_path / "l.h5", "--set", "holdout=0.5", "--set", "seed=7")
    store = open_store(tmp_path / "l.h5")
    recorded = table(store)
    test = {r["pid"] for r in recorded.values() if r["split"] != "train"}
    assert len(test) == 3 and store.settings["seed"] == 7 and store.settings["queries"] == "one per test person (no cameras)"
    for pid in test:
        assert sorted(r["split"] for r in recorded.values() if r["pid"] == pid) == ["gallery", "gallery", "query"]


# -- bad input: one line naming the row and what was expected, exit 1, no store --------------------------------------------
GOOD = [("a/1.jpg", "1", "train"), ("a/2.jpg", "1", "query"), ("a/3.jpg", "1", "gallery"), ("b/1.jpg", "2", "gallery")]


def outside_file(tmp_path):
    return str(image(tmp_path / "elsewhere" / "x.jpg"))


LIST_DEFECTS = {
    # name: (rows, header (None: path, pid, split), [what the one line must say])
    "escaping path": (GOOD[:2] + [("../x.jpg", "1", "gallery")] + GOOD[2:], None,
                      ["l.csv:4", "../x.jpg points outside the list's folder", "expected a path inside it"]),
    "absolute path outside": (GOOD + [("ABS", "2", "gallery")], None, ["l.csv:6", "points outside the list's folder"]),
    "duplicated path": (GOOD + [("a/2.jpg", "2", "gallery")], None,
                        ["l.csv:6", "a/2.jpg is listed again (first on line 3)", "expected each image once"]),
    "person with no image": (GOOD + [("", "3", "gallery")], None,
                             ["l.csv:6", "no image path (a person with no image)", "expected a path relative to"]),
    "missing image": (GOOD + [("b/404.jpg", "2", "gallery")], None, ["l.csv:6", "listed image b/404.jpg not found"]),
    "unknown split": (GOOD + [("b/2.jpg", "2", "test")], None, ["l.csv:6", "split 'test'; expected train, query, gallery"]),
    "short row": (GOOD + [("b/1.jpg", "2")], None, ["l.csv:6", "expected 3 fields as in the header, found 2"]),
    "header without pid": (GOOD, ("path", "person", "split"),
                           ["l.csv:1", "no 'pid' column (found: path, person, split)", "expected at least path and pid"]),
    "mixed pid types": (GOOD + [("b/2.jpg", "abc", "gallery")], None,
                        ["l.csv:6", "pid 'abc' is a name, but the other pids are whole numbers (e.g. '1' at l.csv:2)",
                         "expected one kind per pid column"]),
    "mixed camera types": ([r + (c,) for r, c in zip(GOOD, ["1", "2", "A", "3"])], ("path", "pid", "split", "camera"),
                           ["l.csv:4", "camera 'A' is a name", "all whole numbers or all names"]),
}


@pytest.mark.parametrize("defect", sorted(LIST_DEFECTS))
def test_a_bad_list_is_one_line_naming_the_row_and_leaves_no_store(tmp_path, defect):
    rows, header, says = LIST_DEFECTS[defect]
    data = tmp_path / "data"
    for rel in ("a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg", "b/2.jpg"):
        image(data / rel)
    rows = [tuple(outside_file(tmp_path) if c == "ABS" else c for c in r) for r in rows]
    listing = write_list(data, "l.csv", rows, header=header or ("path", "pid", "split"), images=False)
    out = data / "s.h5"
    line = one_error_line(run_console("adapt", "list", listing, "--out", out))
    assert line.startswith("Error: ")
    for text in says:
        assert text in line, line
    no_store_left(data, out)


def test_skip_bad_leaves_out_bad_rows_and_corrupt_images_and_records_them(tmp_path):
    data = tmp_path / "data"
    listing = write_list(data, "l.csv", GOOD + [("a/2.jpg", "1", "gallery"), ("b/broken.jpg", "2", "gallery")], header=("path", "pid", "split"))
    good = (data / "b" / "1.jpg").read_bytes()
    (data / "b" / "broken.jpg").write_bytes(good[: len(good) // 2])  # a truncated JPEG
    out = data / "s.h5"
    line = one_error_line(run_console("adapt", "list", listing, "--out", out))
    assert "l.csv:6: a/2.jpg is listed again" in line
    no_store_left(data, out)
    adapt("list", listing, "--out", out, "--skip-bad")
    store = open_store(out)
    assert len(store) == 4 and [s["path"] for s in store.skipped] == ["l.csv:6", "b/broken.jpg"]
    # the corrupt image alone: one line naming the file
    listing.write_text("path,pid,split\n" + "\n".join(",".join(r) for r in GOOD + [("b/broken.jpg", "2", "gallery")]) + "\n")
    line = one_error_line(run_console("adapt", "list", listing, "--out", data / "t.h5"))
    assert "1 bad items: b/broken.jpg: " in line and "--skip-bad" in line
    no_store_left(data, data / "t.h5")


FOLDER_DEFECTS = {
    "person with no image": (lambda root: (root / "train" / "ghost").mkdir(), ["train/ghost/: person folder holds no image", "expected at least one"]),
    "corrupt image": (lambda root: (root / "gallery" / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really"), ["gallery/b/bad.png: "]),
    "query without gallery": (lambda root: [p.unlink() for p in (root / "gallery").rglob("*.jpg")], ["images in query but none in gallery", "expected both"]),
    "images beside person folders": (lambda root: image(root / "train" / "loose.jpg"), ["holds both images (loose.jpg) and person folders (a/)", "expected one or the other"]),
    "unknown pattern group": (None, ["unknown group 'cam'", "expected named groups among pid, camera, outfit"]),
    "holdout with given splits": (None, ["--set holdout: the data has its own query and gallery"]),
    "holdout out of range": (None, ["setting 'holdout' must be a number >= 0 and <= 1, got 1.5"]),
    "unknown setting": (None, ["adapter 'folder' has no setting 'holdot'"]),
}
FOLDER_SETS = {"unknown pattern group": r"name_pattern=(?P<cam>\d)", "holdout with given splits": "holdout=0.4",
               "holdout out of range": "holdout=1.5", "unknown setting": "holdot=0.2"}


@pytest.mark.parametrize("defect", sorted(FOLDER_DEFECTS))
def test_a_bad_folder_is_one_line_and_leaves_no_store(tmp_path, defect):
    root = tmp_path / "d"
    for split, person, k in [("train", "a", 1), ("train", "a", 2), ("query", "b", 1), ("gallery", "b", 2)]:
        image(root / split / person / f"{k}.jpg")
    damage, says = FOLDER_DEFECTS[defect]
    if damage is not None:
        damage(root)
    extra = ["--set", FOLDER_SETS[defect]] if defect in FOLDER_SETS else []
    out = tmp_path / "s.h5"
    line = one_error_line(run_console("adapt", "folder", root, "--out", out, *extra))
    for text in says:
        assert text in line, line
    no_store_left(tmp_path, out)


def test_both_adapters_are_registered_like_any_adapter():
    listed = run_console("adapt", "--help")
    assert listed.returncode == 0
    assert any(line.split()[:1] == ["folder"] for line in listed.stdout.splitlines())
    assert any(line.split()[:1] == ["list"] for line in listed.stdout.splitlines())
