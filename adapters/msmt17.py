"""MSMT17 (Wei et al., CVPR 2018): images listed in ``list_{train,val,query,gallery}.txt``.

A list line is ``relpath pid``; the camera is the third ``_`` field of the
file name minus 1 (``0000_000_01_0303morning_0015_0.jpg`` -> camera 0).
V1 keeps images in ``train/`` and ``test/``; V2 in ``mask_train_v2/`` and
``mask_test_v2/`` with the same lists.
"""
from pathlib import Path

import click

from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord, find_dataset_root
from reidkit.errors import DatasetLayoutError

from reidkit.adapters.common import inside, list_entries, require_paths, to_int

VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
LISTS = (("train", "list_train.txt", 0), ("val", "list_val.txt", 0), ("query", "list_query.txt", 1), ("gallery", "list_gallery.txt", 1))


def camera_of(relpath: str) -> int:
    fields = Path(relpath).name.split("_")
    if len(fields) < 3:
        raise ValueError("file name has no third '_' field (the camera)")
    return to_int(fields[2], "camera field") - 1


def detect_version(base: Path) -> str:
    for version, (train_dir, _) in VERSIONS.items():
        if (base / train_dir).is_dir():
            return version
    raise DatasetLayoutError(f"expected {base / 'train'} (MSMT17_V1) or {base / 'mask_train_v2'} (MSMT17_V2), not found")


class MSMT17(Adapter):
    """MSMT17 V1 or V2 from its distributed folder (MSMT17_V1, MSMT17_V2, or the folder holding one).

    \b
    Splits: train (+ val, see --merge-val), query, gallery, from the list files.
    The published training set (32,621 images) is train + val; --no-merge-val
    keeps val apart as split 'val'. The choice is recorded in the store.
    Protocol: standard.
    """

    name = "msmt17"
    summary = "MSMT17 V1/V2 (list files; train+val merged by default)."
    needs_root = True
    folder_names = ("MSMT17_V1", "MSMT17_V2")  # without --root: looked for here, then under $REIDKIT_DATA
    store_name = "msmt17.h5"
    options = [
        click.Option(["--merge-val/--no-merge-val"], default=True, show_default=True,
                     help="Train on train + val (the published 32,621 images) or keep val as its own split."),
    ]

    def scan(self, root, settings):
        if root is None:
            raise DatasetLayoutError("msmt17 needs --root (the MSMT17_V1 or MSMT17_V2 folder)")
        base = find_dataset_root(Path(root), "list_train.txt", tuple(VERSIONS))
        version = detect_version(base)
        train_dir, test_dir = VERSIONS[version]
        require_paths(base, [test_dir] + [name for _, name, _ in LISTS], f"{version} layout")
        merge_val = settings.get("merge_val", True) is not False
        records, problems = [], []
        for split, list_name, is_test in LISTS:
            image_dir = base / (test_dir if is_test else train_dir)
            target = "train" if (split == "val" and merge_val) else split
            for where, (rel, pid_text) in list_entries(base / list_name, 2, problems=problems):
                path = inside(image_dir, rel)
                if path is None:
                    problems.append((where, f"{rel} points outside {image_dir.name}/"))
                    continue
                try:
                    pid, camera = to_int(pid_text, "person id"), camera_of(rel)
                except ValueError as exc:
                    problems.append((where, str(exc)))
                    continue
                if not path.is_file():
                    problems.append((where, f"listed image {path.relative_to(base).as_posix()} not found"))
                    continue
                records.append(ImageRecord(path=path.relative_to(base).as_posix(), pid=pid, camera=camera, splits=(target,), source=path))
        return DatasetLayout(
            dataset="msmt17",
            records=records,
            protocols=[EvalProtocol("standard", rule="standard", description="drop same person in the same camera")],
            settings={"version": version, "merge_val": merge_val},
            problems=problems,
        )
