"""Miniature copies of the real benchmark layouts, written by tests: real folder and file naming, tiny images.

Each builder writes a handful of files (including each dataset's special
cases) and returns the dataset folder. ``write_image`` encodes every kind of
image once and copies the bytes, so thousands of files are cheap.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from tests.helpers import run_cli

KINDS = ("jpg", "png", "gray", "rgba", "png16")


@functools.lru_cache(maxsize=None)
def image_bytes(kind: str = "jpg", height: int = 8, width: int = 4) -> bytes:
    import cv2

    rng = np.random.default_rng(len(kind) * 1000 + height * width)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == "jpg":
        img, ext = rgb, ".jpg"
    elif kind == "png":
        img, ext = rgb, ".png"
    elif kind == "gray":
        img, ext = rgb[..., 0], ".png"
    elif kind == "rgba":
        img, ext = np.dstack([rgb, np.full((height, width), 200, np.uint8)]), ".png"
    elif kind == "png16":
        img, ext = rgb.astype(np.uint16) * 257, ".png"
    else:
        raise ValueError(kind)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def write_image(path: Path, kind: str | None = None, data: bytes | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = image_bytes(kind or ("png" if path.suffix == ".png" else "jpg"))
    path.write_bytes(data)
    return path


def write_images(base: Path, relpaths, kind: str | None = None) -> None:
    for rel in relpaths:
        write_image(Path(base) / rel, kind)


def link_images(base: Path, relpaths, template: Path) -> None:
    """Many files, one inode: real-size layouts without real-size disk use."""
    made = set()
    for rel in relpaths:
        path = Path(base) / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        try:
            os.link(template, path)
        except OSError:  # file systems without hard links
            path.write_bytes(Path(template).read_bytes())


# -- Market-1501 and DukeMTMC-reID ------------------------------------------------
MARKET = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077419_03.jpg"],
    "query": ["0003_c1s1_001051_00.jpg", "0005_c4s2_012345_00.jpg"],
    "bounding_box_test": [
        "0003_c2s1_001101_01.jpg",
        "0005_c6s3_054321_02.jpg",
        "0005_c4s2_012399_01.jpg",
        "0000_c1s1_000151_01.jpg",  # distractor
        "-1_c1s1_000401_03.jpg",  # junk
        "-1_c5s2_011111_01.jpg",  # junk
    ],
}


def build_market(root: Path) -> Path:
    base = Path(root) / "Market-1501-v15.09.15"
    for folder, names in MARKET.items():
        write_images(base / folder, names)
    (base / "bounding_box_test" / "Thumbs.db").write_bytes(b"\x00" * 10)  # shipped with the archive
    (base / "gt_bbox").mkdir()  # hand-drawn boxes: not part of the benchmark splits
    return base


DUKE = {
    "bounding_box_train": ["0002_c1_f0044158.jpg", "0002_c8_f0046532.jpg", "0004_c5_f0051345.jpg"],
    "query": ["0005_c2_f0046985.jpg", "0011_c6_f0070093.jpg"],
    "bounding_box_test": [
        "0005_c5_f0051781.jpg",
        "0011_c7_f0101913.jpg",
        "0009_c1_f0053444.jpg",  # gallery-only identity: a distractor
        "0009_c3_f0055000.jpg",
    ],
}


def build_duke(root: Path) -> Path:
    base = Path(root) / "DukeMTMC-reID"
    for folder, names in DUKE.items():
        write_images(base / folder, names)
    return base


# -- LTCC, PRCC, VC-Clothes, Celeb-reID, LaST -----------------------------------------
def build_ltcc(root: Path) -> Path:
    base = Path(root) / "LTCC_ReID"
    write_images(base / "train", ["001_1_c11_015861.png", "001_2_c3_000123.png", "002_1_c1_000001.png"])
    write_image(base / "train" / "002_1_c2_000002.png", "gray")
    write_image(base / "train" / "002_1_c4_000003.png", "rgba")
    write_image(base / "train" / "002_1_c5_000004.png", "png16")
    write_images(base / "query", ["010_1_c1_000010.png", "012_3_c12_000020.png"])
    write_images(base / "test", ["010_2_c4_000011.png", "010_1_c6_000012.png", "012_1_c2_000021.png"])
    (base / "info").mkdir()
    (base / "info" / "cloth-change_id_test.txt").write_text("010\n012\n")
    return base


def build_prcc(root: Path) -> Path:
    base = Path(root) / "prcc"
    rgb = base / "rgb"
    write_images(rgb / "train", ["001/A_cropped_rgb001.jpg", "001/B_cropped_rgb011.jpg", "001/C_cropped_rgb021.jpg", "004/A_cropped_rgb002.jpg"])
    write_images(rgb / "val", ["001/C_cropped_rgb031.jpg", "004/B_cropped_rgb012.jpg"])
    write_images(rgb / "test", ["A/003/cropped_rgb003.jpg", "A/003/cropped_rgb004.jpg", "A/006/cropped_rgb001.jpg"])
    write_images(rgb / "test", ["B/003/cropped_rgb103.jpg", "B/006/cropped_rgb101.jpg"])
    write_images(rgb / "test", ["C/003/cropped_rgb203.jpg", "C/006/cropped_rgb201.jpg"])
    return base


def build_vcclothes(root: Path) -> Path:
    base = Path(root) / "VC-Clothes"
    write_images(base / "train", ["0001-01-01-01.jpg", "0001-03-02-05.jpg", "0004-02-01-01.jpg"])
    write_images(base / "query", ["0002-03-02-01.jpg", "0003-04-01-07.jpg"])
    write_images(base / "gallery", ["0002-02-01-03.jpg", "0002-04-03-02.jpg", "0003-01-01-09.jpg"])
    return base


def build_celebreid(root: Path) -> Path:
    base = Path(root) / "Celeb-reID"
    write_images(base / "train", ["1_1_0.jpg", "1_2_0.jpg", "5_1_1.jpg"])
    write_images(base / "query", ["3_1_0.jpg", "4_3_1.jpg"])
    write_images(base / "gallery", ["3_2_0.jpg", "3_4_1.jpg", "4_1_0.jpg"])
    return base


def build_last(root: Path) -> Path:
    base = Path(root) / "last"
    write_images(base / "train", ["000000/000000_0_12_0.jpg", "000000/000000_1_13_1.jpg", "000007/000007_0_02_0.jpg"])
    write_images(base / "val", ["query/000100_0_01_0.jpg", "gallery/000100/000100_1_02_0.jpg", "gallery/000100/000100_2_03_1.jpg"])
    write_images(base / "test", ["query/005000_0_01_0.jpg", "query/005001_0_01_0.jpg"])
    write_images(base / "test", ["gallery/005000/005000_1_02_1.jpg", "gallery/005001/005001_3_05_0.jpg", "gallery/009999/009999_0_01_0.jpg"])
    return base


# -- running adapters and reading the result ------------------------------------------
def adapt(name: str, root: Path, out: Path, *extra):
    """Adapt through the CLI and open the store; fails the test with the CLI's output."""
    from reidkit.store import open_store

    result = run_cli("adapt", name, "--root", root, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return open_store(out)


def row(store, path: str) -> dict:
    """Everything the store recorded for the image at ``path`` (relative to the dataset folder)."""
    where = np.flatnonzero(store.columns["path"] == path)
    assert len(where) == 1, f"{path} not in store (or twice)"
    i = int(where[0])
    splits = sorted(name for name, idx in store.splits.items() if i in set(idx.tolist()))
    out = {name: store.columns[name][i] for name in ("pid", "label", "camera", "clothes_key", "clothes_id", "tracklet", "frame")}
    out.update(junk=bool(store.columns["junk"][i]), distractor=bool(store.columns["distractor"][i]), splits=splits)
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}


def info_json(store_path: Path) -> dict:
    import json

    result = run_cli("info", store_path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- list-file benchmarks: MSMT17, DeepChange, CCVID ------------------------------------
MSMT_LISTS = {
    "train": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0000/0000_001_05_0303noon_0032_1.jpg 0", "0001/0001_000_15_0303afternoon_0100_0.jpg 1"],
    "val": ["0001/0001_002_07_0303morning_0200_2.jpg 1"],
    "query": ["0000/0000_000_02_0303morning_0040_0.jpg 0", "0003/0003_004_10_0113noon_0500_1.jpg 3"],
    "gallery": ["0000/0000_010_11_0303noon_0201_0.jpg 0", "0003/0003_001_03_0113morning_0300_0.jpg 3"],
}


def build_msmt17(root: Path, version: str = "MSMT17_V1", extra_lines: dict | None = None) -> Path:
    base = Path(root) / version
    train_dir, test_dir = ("train", "test") if version == "MSMT17_V1" else ("mask_train_v2", "mask_test_v2")
    for split, lines in MSMT_LISTS.items():
        folder = base / (test_dir if split in ("query", "gallery") else train_dir)
        write_images(folder, [line.split()[0] for line in lines])
        text = "\n".join(lines + list((extra_lines or {}).get(split, []))) + "\n"
        (base / f"list_{split}.txt").write_text(text)
    return base


DEEPCHANGE = {
    "train-set": ["P0001_C3_W1_F0001.jpg,10", "P0001_C5_W2_F0100.jpg,11", "P0002_C17_W1_F0003.jpg,12"],
    "val-set-query": ["P0500_C1_W1_F0001.jpg,1"],
    "val-set-gallery": ["P0500_C2_W1_F0002.jpg,2"],
    "test-set-query": ["P0900_C4_W3_F0007.jpg,5"],
    "test-set-gallery": ["P0900_C4_W3_F0009.jpg,6", "P0900_C9_W1_F0020.jpg,7"],
}


def build_deepchange(root: Path) -> Path:
    base = Path(root) / "DeepChangeDataset"
    for folder, lines in DEEPCHANGE.items():
        write_images(base / folder, [line.split(",")[0] for line in lines])
        (base / f"{folder}-bbox.txt").write_text("\n".join(lines) + "\n")
    return base


CCVID = {
    "train": [("session1/001_01", "001", "u1_l1_s1_c1_b1", 3), ("session3/001_02", "001", "u2_l1_s1_c1_b1", 2)],
    "query": [("session2/005_03", "005", "u1_l1_s1_c1_b1", 2)],
    "gallery": [("session3/005_01", "005", "u3_l2_s1_c1_b1", 2), ("session1/005_12", "005", "u1_l1_s1_c1_b1", 1)],
}


def build_ccvid(root: Path) -> Path:
    base = Path(root) / "CCVID"
    for split, tracklets in CCVID.items():
        lines = []
        for folder, pid, outfit, frames in tracklets:
            write_images(base / folder, [f"{100 + f:05d}.jpg" for f in range(frames)])
            lines.append(f"{folder}\t{pid}\t{outfit}")
        (base / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return base


# enough for video training: 3 training persons, each in 2 outfits and 2 tracklets; test persons seen in several cameras
CCVID_VIDEO = {
    "train": [(f"session{s}/{p:03d}_{c:02d}", f"{p:03d}", f"u{s}_l1_s1_c1_b1", n)
              for p in (1, 2, 3) for s, c, n in ((1, 1, 9), (3, 2, 3))],
    "query": [("session2/010_03", "010", "u1_l1_s1_c1_b1", 5), ("session2/011_03", "011", "u1_l1_s1_c1_b1", 4)],
    "gallery": [("session1/010_01", "010", "u1_l1_s1_c1_b1", 4), ("session3/010_02", "010", "u2_l1_s1_c1_b1", 6),
                ("session1/011_01", "011", "u1_l1_s1_c1_b1", 3), ("session3/011_02", "011", "u2_l1_s1_c1_b1", 5)],
}


def build_ccvid_video(root: Path) -> Path:
    """CCVID's layout with tracklets long and many enough to train clips on (video training tests)."""
    base = Path(root) / "CCVID"
    for split, tracklets in CCVID_VIDEO.items():
        lines = []
        for folder, pid, outfit, frames in tracklets:
            for f in range(frames):  # pixels that differ by person and frame (sizes seed the pattern)
                write_image(base / folder / f"{100 + f:05d}.jpg", data=image_bytes("jpg", 8 + int(pid) % 7, 4 + f % 3))
            lines.append(f"{folder}\t{pid}\t{outfit}")
        (base / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return base


# -- CUHK03: the .mat files in their real structure ---------------------------------------
def write_mat73_cuhk03(path: Path, persons_per_pair=(3, 2), empty=frozenset({(1, 2, 9)}), height=10, width=6, pool=0) -> dict:
    """cuhk-03.mat as MATLAB v7.3 writes it: HDF5 with a 512-byte header block, data under #refs#.

    ``detected`` and ``labeled`` are 1x5 cells (stored 5x1 transposed), each
    pair a persons x 10 cell of 3 x W x H uint8 images; ``empty`` lists
    (pair, person, image) cells left empty (MATLAB's empty double). ``pool``
    > 0 makes cells share that many image datasets (cheap layouts of the real
    size). Returns {(kind, pair, person, image): HxWx3 image} for the non-empty cells.
    """
    import h5py

    pixels = {}
    with h5py.File(path, "w", userblock_size=512) as h5:
        refs = h5.create_group("#refs#")
        counter = iter(range(10**6))

        def put(data, cls, **attrs):
            ds = refs.create_dataset(f"r{next(counter)}", data=data)
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            for k, v in attrs.items():
                ds.attrs[k] = v
            return ds.ref

        for k_index, kind in enumerate(("detected", "labeled")):
            shared = []
            for i in range(pool):
                img = np.random.default_rng([k_index, i]).integers(0, 256, (height, width, 3), dtype=np.uint8)
                shared.append((img, put(img.T, "uint8")))
            pair_refs = []
            for pair in range(1, 6):
                persons = persons_per_pair[pair - 1] if pair <= len(persons_per_pair) else 1
                cells = np.empty((10, persons), dtype=h5py.ref_dtype)  # MATLAB persons x 10, transposed
                for person in range(1, persons + 1):
                    for image in range(1, 11):
                        if (pair, person, image) in empty:
                            cells[image - 1, person - 1] = put(np.zeros(2, np.uint64), "double", MATLAB_empty=np.uint8(1))
                            continue
                        if pool:
                            img, ref = shared[(person * 10 + image) % pool]
                        else:
                            img = np.random.default_rng([k_index, pair, person, image]).integers(0, 256, (height, width, 3), dtype=np.uint8)
                            ref = put(img.T, "uint8")
                        pixels[(kind, pair, person, image)] = img
                        cells[image - 1, person - 1] = ref
                pair_refs.append(put(cells, "cell"))
            top = h5.create_dataset(kind, data=np.array(pair_refs, dtype=h5py.ref_dtype).reshape(1, 5))
            top.attrs["MATLAB_class"] = np.bytes_("cell")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".ljust(116)
    with open(path, "r+b") as f:
        f.write(header + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return pixels


def write_mat5(path: Path, variables: dict, compress: bool = True) -> None:
    """A level-5 MAT-file written by scipy.io.savemat (as MATLAB's save: lists of strings become cell columns)."""
    import scipy.io

    def matlab(value):
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            cell = np.empty((len(value), 1), dtype=object)
            cell[:, 0] = value
            return cell
        return value if isinstance(value, str) else np.asarray(value, dtype=np.float64)

    scipy.io.savemat(path, {k: matlab(v) for k, v in variables.items()}, do_compression=compress)


def build_cuhk03(root: Path, images: str = "detected", extra_train=()) -> tuple[Path, dict, dict]:
    """cuhk03/cuhk03_release/cuhk-03.mat plus the new-protocol split file; returns (folder, pixels, split)."""
    base = Path(root) / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True)
    pixels = write_mat73_cuhk03(base / "cuhk03_release" / "cuhk-03.mat")
    # global person labels: pair 1 persons 1-3 -> 1-3, pair 2 persons 1-2 -> 844, 845 (labels are not positional)
    persons = {(1, 1): 1, (1, 2): 2, (1, 3): 3, (2, 1): 844, (2, 2): 845}
    filelist, labels = [], []
    for (pair, person), label in persons.items():
        for image in (1, 2, 6, 9):
            if (pair, person, image) == (1, 2, 9):
                continue  # the empty cell is not listed (as in the real split files)
            filelist.append(f"{pair}_{person:03d}_{1 if image <= 5 else 2}_{image:02d}.png")
            labels.append(label)
    index = {name: i + 1 for i, name in enumerate(filelist)}
    train = [i for n, i in index.items() if n.startswith(("1_001", "1_002"))] + list(extra_train)
    query = [index["1_003_1_01.png"], index["2_001_2_06.png"], index["2_002_1_02.png"]]
    gallery = [i for n, i in index.items() if n.startswith(("1_003", "2_")) and i not in query]
    split = {"train_idx": train, "query_idx": query, "gallery_idx": gallery}
    write_mat5(base / f"cuhk03_new_protocol_config_{images}.mat", {
        "camId": [[1 if n.split("_")[2] == "1" else 2] for n in filelist],
        "filelist": filelist,
        "gallery_idx": [[i] for i in gallery],
        "labels": [[lab] for lab in labels],
        "query_idx": [[i] for i in query],
        "train_idx": [[i] for i in train],
    })
    return base, pixels, {k: [filelist[i - 1] if i <= len(filelist) else None for i in v] for k, v in split.items()}


# -- layouts of the real published sizes (names only; one tiny image hard-linked everywhere) -----
def _spread(n: int, pids, cameras: int):
    """n (pid, camera, serial) triples cycling over ``pids`` and then cameras: every pid gets an image."""
    pids = list(pids)
    return [(pids[i % len(pids)], (i // len(pids)) % cameras + 1, i) for i in range(n)]


def real_size_names(dataset: str) -> dict[str, list[str]]:
    """Relative paths of a layout with the published split sizes of shared/datasets.md."""
    if dataset == "market1501":
        train_ids, test_ids = range(1, 752), range(1001, 1751)
        gallery = [f"{p:04d}_c{c}s1_{i:06d}_01.jpg" for p, c, i in _spread(13120, test_ids, 6)]
        gallery += [f"0000_c{c}s2_{i:06d}_01.jpg" for _, c, i in _spread(2793, [0], 6)]
        gallery += [f"-1_c{c}s3_{i:06d}_01.jpg" for _, c, i in _spread(3819, [-1], 6)]
        return {
            "bounding_box_train": [f"{p:04d}_c{c}s1_{i:06d}_01.jpg" for p, c, i in _spread(12936, train_ids, 6)],
            "query": [f"{p:04d}_c{c}s4_{i:06d}_00.jpg" for p, c, i in _spread(3368, test_ids, 6)],
            "bounding_box_test": gallery,
        }
    if dataset == "ltcc":
        return {
            "train": [f"{p:03d}_{i % 3 + 1}_c{c}_{i:06d}.png" for p, c, i in _spread(9576, range(1, 78), 12)],
            "query": [f"{p:03d}_{i % 2 + 1}_c{c}_{i:06d}.png" for p, c, i in _spread(493, range(100, 175), 12)],
            "test": [f"{p:03d}_{i % 4 + 1}_c{c}_{i:06d}.png" for p, c, i in _spread(7050, range(100, 175), 12)],
        }
    if dataset == "vcclothes":
        return {
            split: [f"{p:04d}-{c:02d}-{i % 3 + 1:02d}-{i:05d}.jpg" for p, c, i in _spread(n, ids, 4)]
            for split, n, ids in (("train", 9449, range(1, 257)), ("query", 1020, range(257, 513)), ("gallery", 8591, range(257, 513)))
        }
    if dataset == "prcc":
        letters = "ABC"
        out = {
            f"rgb/{split}": [f"{p:03d}/{letters[c - 1]}_cropped_rgb{i:05d}.jpg" for p, c, i in _spread(n, range(1, 151), 3)]
            for split, n in (("train", 17896), ("val", 5002))
        }
        for letter, n in (("A", 3384), ("B", 3543), ("C", 3873)):
            out[f"rgb/test/{letter}"] = [f"{p:03d}/cropped_rgb{i:05d}.jpg" for p, _, i in _spread(n, range(151, 222), 1)]
        return out
    if dataset == "dukemtmc":
        test_ids, distractor_ids = range(1001, 1703), range(3001, 3409)
        return {
            "bounding_box_train": [f"{p:04d}_c{c}_f{i:07d}.jpg" for p, c, i in _spread(16522, range(1, 703), 8)],
            "query": [f"{p:04d}_c{c}_f{i:07d}.jpg" for p, c, i in _spread(2228, test_ids, 8)],
            "bounding_box_test": [f"{p:04d}_c{c}_f{i:07d}.jpg" for p, c, i in _spread(17661, list(test_ids) + list(distractor_ids), 8)],
        }
    if dataset == "celebreid":
        return {
            split: [f"{p}_{i}_{i % 2}.jpg" for p, _, i in _spread(n, ids, 1)]
            for split, n, ids in (("train", 20208, range(1, 633)), ("query", 2972, range(700, 1120)), ("gallery", 11006, range(700, 1120)))
        }
    if dataset == "msmt17":  # list_<split>.txt lines; the images live in train/ and test/
        def lines(n, ids, offset):
            return [f"{p:04d}/{p:04d}_{i:06d}_{c:02d}_0303morning_{i:04d}_0.jpg {p}" for p, c, i in _spread(n, ids, 15)]
        return {
            "list_train.txt": lines(30248, range(0, 1041), 0),
            "list_val.txt": lines(2373, range(0, 1041), 40000),
            "list_query.txt": lines(11659, range(1041, 4101), 0),
            "list_gallery.txt": lines(82161, range(1041, 4101), 20000),
        }
    if dataset == "ccvid":  # <split>.txt lines; one frame per tracklet keeps it cheap
        def lines(n, ids):
            return [f"session{i % 3 + 1}/{p:03d}_{c:02d}_{i:04d} {p:03d} u{i % 2}_l1_s1_c1_b1" for p, c, i in _spread(n, ids, 12)]
        return {"train.txt": lines(948, range(1, 76)), "query.txt": lines(834, range(76, 227)), "gallery.txt": lines(1074, range(76, 227))}
    if dataset == "last":  # person = first field, outfit = last field; test persons are disjoint from train
        return {
            "train": [f"{p:06d}/{p:06d}_{i:06d}_{i % 3}.jpg" for p, _, i in _spread(71248, range(0, 5000), 1)],
            "test/query": [f"{p:06d}_{i:06d}_0.jpg" for p, _, i in _spread(10176, range(5000, 15176), 1)],
            "test/gallery": [f"{p:06d}/{p:06d}_{i:06d}_1.jpg" for p, _, i in _spread(125353, range(5000, 15176), 1)],
            "val/query": [f"{p:06d}_{i:06d}_0.jpg" for p, _, i in _spread(4, range(20000, 20002), 1)],
            "val/gallery": [f"{p:06d}/{p:06d}_{i:06d}_1.jpg" for p, _, i in _spread(4, range(20000, 20002), 1)],
        }
    raise ValueError(dataset)


REAL_FOLDERS = {
    "market1501": "Market-1501-v15.09.15", "dukemtmc": "DukeMTMC-reID", "ltcc": "LTCC_ReID", "vcclothes": "VC-Clothes", "prcc": "prcc",
    "celebreid": "Celeb-reID", "msmt17": "MSMT17_V1", "ccvid": "CCVID", "last": "last",
}


def build_real_size(dataset: str, root: Path, kind: str = "jpg") -> Path:
    """The dataset folder with every published file name, each a hard link to one tiny image."""
    base = Path(root) / REAL_FOLDERS[dataset]
    names = real_size_names(dataset)
    template = write_image(Path(root) / f"template.{'png' if dataset == 'ltcc' else 'jpg'}", "png" if dataset == "ltcc" else kind)
    for folder, files in names.items():
        if folder.endswith(".txt"):  # a list file: write it, and the images it lists
            (base / folder).parent.mkdir(parents=True, exist_ok=True)
            (base / folder).write_text("\n".join(files) + "\n")
            if dataset == "msmt17":
                image_dir = base / ("test" if folder in ("list_query.txt", "list_gallery.txt") else "train")
                link_images(image_dir, [line.split()[0] for line in files], template)
            else:
                link_images(base, [line.split()[0] + "/00001.jpg" for line in files], template)
        else:
            link_images(base / folder, files, template)
    return base


CUHK03_PERSONS_PER_PAIR = (843, 440, 77, 58, 49)  # 1,467 persons over the 5 camera pairs


def build_cuhk03_real_size(root: Path) -> Path:
    """cuhk03/ with the published 767/700 detected sizes: train 767 / 7,365, query 700 / 1,400, gallery 700 / 5,332.

    Persons in pair order: the first 767 train, the rest test; 305 train and
    268 test persons miss their 10th image (an empty cell), which gives the
    published image counts; queries are each test person's images 1 and 6 (one per view).
    """
    base = Path(root) / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True)
    persons = [(pair, p) for pair, n in enumerate(CUHK03_PERSONS_PER_PAIR, start=1) for p in range(1, n + 1)]
    empty = {(*persons[i], 10) for i in list(range(305)) + list(range(767, 767 + 268))}
    write_mat73_cuhk03(base / "cuhk03_release" / "cuhk-03.mat", CUHK03_PERSONS_PER_PAIR, empty, height=4, width=2, pool=16)
    filelist, labels, train, query, gallery = [], [], [], [], []
    for k, (pair, person) in enumerate(persons):
        for image in range(1, 11):
            if (pair, person, image) in empty:
                continue
            filelist.append(f"{pair}_{person:03d}_{1 if image <= 5 else 2}_{image:02d}.png")
            labels.append(k + 1)
            target = train if k < 767 else query if image in (1, 6) else gallery
            target.append(len(filelist))
    write_mat5(base / "cuhk03_new_protocol_config_detected.mat", {
        "filelist": filelist, "labels": [[x] for x in labels],
        "train_idx": [[i] for i in train], "query_idx": [[i] for i in query], "gallery_idx": [[i] for i in gallery],
    })
    return base
