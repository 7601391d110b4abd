"""CUHK03 (Li et al., CVPR 2014) with the 767/700 split (Zhong et al., CVPR 2017), read from the original ``.mat`` files.

``cuhk03_release/cuhk-03.mat`` is a MATLAB v7.3 (HDF5) file: ``detected``
and ``labeled`` are 1x5 cell arrays, one per camera pair; each holds a
persons x 10 cell array of images (5 per view), stored transposed (3 x W x H
uint8, RGB) with empty cells where a person has fewer images. The split
files ``cuhk03_new_protocol_config_{detected,labeled}.mat`` (level-5 MAT)
hold ``filelist`` (names ``<pair>_<person:03>_<view>_<image:02>.png``),
``labels`` and 1-based ``train_idx``, ``query_idx``, ``gallery_idx``. This is
how torchreid and fast-reid read them; images are encoded as PNG on demand.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import click
import numpy as np

from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord
from reidkit.errors import DatasetLayoutError

MAT_NAME = "cuhk-03.mat"
FILE_NAME = re.compile(r"(\d)_(\d{3})_([12])_(\d{2})\.png")
SPLIT_INDEX = (("train", "train_idx"), ("query", "query_idx"), ("gallery", "gallery_idx"))


def config_name(images: str) -> str:
    return f"cuhk03_new_protocol_config_{images}.mat"


def locate(root: Path, images: str) -> tuple[Path, Path]:
    """(cuhk-03.mat, split file): ``root`` may be cuhk03/, cuhk03_release/ or the folder holding cuhk03/."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"--root {root} does not exist or is not a folder")
    for mat_dir in (root, root / "cuhk03_release", root / "cuhk03" / "cuhk03_release"):
        if (mat_dir / MAT_NAME).is_file():
            break
    else:
        raise DatasetLayoutError(f"expected cuhk03_release/{MAT_NAME} under {root}, not found")
    for config_dir in (mat_dir.parent, mat_dir):
        if (config_dir / config_name(images)).is_file():
            return mat_dir / MAT_NAME, config_dir / config_name(images)
    raise DatasetLayoutError(
        f"expected {mat_dir.parent / config_name(images)} (the 767/700 split, from zhunzhong07/person-re-ranking), not found"
    )


class MatImages:
    """Images of one kind (detected or labeled) in cuhk-03.mat, read and PNG-encoded one at a time."""

    def __init__(self, path: Path, images: str):
        import h5py

        self.path = path
        try:
            self.h5 = h5py.File(path, "r")
        except OSError:
            raise DatasetLayoutError(f"{path} is not a MATLAB v7.3 (HDF5) file") from None
        if images not in self.h5:
            raise DatasetLayoutError(f"{path} has no '{images}' cell array")
        self.lock = threading.Lock()  # one HDF5 handle shared by the writer's reader threads
        # One persons x 10 array of image references per camera pair.
        self.pairs = [self.h5[ref][()].T for ref in np.asarray(self.h5[images][()]).ravel()]

    def reference(self, pair: int, person: int, image: int):
        """The image reference for 1-based indices, or None when out of range."""
        if not (1 <= pair <= len(self.pairs)):
            return None
        refs = self.pairs[pair - 1]
        if not (1 <= person <= refs.shape[0] and 1 <= image <= refs.shape[1]):
            return None
        return refs[person - 1, image - 1]

    def png(self, ref) -> bytes:
        from reidkit.store.imagecodec import encode_png

        with self.lock:
            array = self.h5[ref][()]
        if array.ndim != 3 or array.size == 0:
            raise ValueError("empty cell in cuhk-03.mat")
        return encode_png(np.ascontiguousarray(array.T))


class CUHK03(Adapter):
    """CUHK03, 767/700 protocol, from cuhk-03.mat and the new-protocol split files.

    \b
    Expected: cuhk03/cuhk03_release/cuhk-03.mat and
    cuhk03/cuhk03_new_protocol_config_{detected,labeled}.mat (or inside cuhk03_release/).
    Splits: train, query, gallery. Camera = view (0, 1) within the camera pair.
    Protocol: standard. The old 20-split protocol is not built.
    """

    name = "cuhk03"
    summary = "CUHK03 767/700 protocol from the original .mat files (detected or labeled)."
    needs_root = True
    folder_names = ("cuhk03", "cuhk03_release")  # without --root: looked for here, then under $REIDKIT_DATA
    store_name = "cuhk03.h5"
    options = [
        click.Option(["--images"], type=click.Choice(["detected", "labeled"]), default="detected", show_default=True,
                     help="Detector boxes or hand-labelled boxes (toolkits differ in their default)."),
    ]

    def scan(self, root, settings):
        from reidkit.adapters.matfile import load_mat

        if root is None:
            raise DatasetLayoutError("cuhk03 needs --root (the cuhk03 folder holding cuhk03_release/)")
        images = settings.get("images") or "detected"
        mat_path, config_path = locate(Path(root), images)
        try:
            config = load_mat(config_path, ("filelist", "labels", "train_idx", "query_idx", "gallery_idx"))
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetLayoutError(f"{config_path} is not a readable split file: {exc}") from None
        source = MatImages(mat_path, images)
        files = [str(f if isinstance(f, str) else np.ravel(f)[0]) for f in np.ravel(config["filelist"])]
        labels = np.ravel(config["labels"]).astype(np.int64)
        if len(labels) != len(files):
            raise DatasetLayoutError(f"{config_path}: {len(files)} file names but {len(labels)} labels")
        records, problems = [], []
        for split, key in SPLIT_INDEX:
            for index in np.ravel(config[key]).astype(np.int64):
                where = f"{config_path.name}:{key}[{index}]"
                if not (1 <= index <= len(files)):
                    problems.append((where, f"index outside the file list (1..{len(files)})"))
                    continue
                name = files[index - 1]
                match = FILE_NAME.fullmatch(name)
                ref = source.reference(*(int(match.group(g)) for g in (1, 2, 4))) if match else None
                if ref is None:
                    problems.append((where, f"{name!r} names no image in {MAT_NAME}"))
                    continue
                records.append(ImageRecord(
                    path=f"{images}/{name}", pid=int(labels[index - 1]), camera=int(match.group(3)) - 1,
                    splits=(split,), load=lambda ref=ref: source.png(ref),
                ))
        protocols = [EvalProtocol("standard", rule="standard", description="767/700 split: drop same person in the same view")]
        settings = {"images": images, "protocol": "767/700 (new protocol)", "split_file": config_path.name}
        return DatasetLayout("cuhk03", records, protocols, settings=settings, problems=problems)
