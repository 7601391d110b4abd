"""DeepChange (Xu et al., 2021): images listed in ``*-bbox.txt`` as ``name.jpg,tracklet``.

Names split on ``_``: ``P<pid>``, ``C<camera>``, then the outfit field
(outfit key = first + third field), as in the CAL reference reader. The paper
lets true matches come from the same camera but another tracklet, so by
default the tracklet id stands in for the camera (``--camera-from``).
"""
from pathlib import Path

import click

from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord, find_dataset_root
from reidkit.errors import DatasetLayoutError

from reidkit.adapters.common import inside, list_entries, require_paths, to_int

# split -> (image folder, list file)
PARTS = {
    "train": ("train-set", "train-set-bbox.txt"),
    "val_query": ("val-set-query", "val-set-query-bbox.txt"),
    "val_gallery": ("val-set-gallery", "val-set-gallery-bbox.txt"),
    "query": ("test-set-query", "test-set-query-bbox.txt"),
    "gallery": ("test-set-gallery", "test-set-gallery-bbox.txt"),
}


def parse_name(name: str) -> tuple[int, int, str]:
    """(pid, 0-based camera, outfit key) of ``P0001_C3_<outfit>_...jpg``."""
    fields = Path(name).stem.split("_")
    if len(fields) < 3 or not fields[0].startswith("P") or not fields[1].startswith("C"):
        raise ValueError("name is not P<pid>_C<camera>_<outfit>_... (e.g. P0001_C3_W1_F0012.jpg)")
    return to_int(fields[0][1:], "person id"), to_int(fields[1][1:], "camera") - 1, f"{fields[0]}_{fields[2]}"


class DeepChange(Adapter):
    """DeepChange from its distributed folder (DeepChangeDataset or the folder it was unpacked into).

    \b
    Splits: train, val_query, val_gallery, query, gallery (the test sets).
    Columns: pid, outfit key, tracklet; camera = tracklet id (the paper's
    protocol) or the real camera with --camera-from camera.
    Protocols: standard (test), val.
    """

    name = "deepchange"
    summary = "DeepChange long-term (bbox lists; tracklet stands in for camera)."
    needs_root = True
    folder_names = ("DeepChangeDataset",)  # without --root: looked for here, then under $REIDKIT_DATA
    store_name = "deepchange.h5"
    options = [
        click.Option(["--camera-from"], type=click.Choice(["tracklet", "camera"]), default="tracklet", show_default=True,
                     help="What the camera column holds: the tracklet id (paper protocol) or the real camera."),
    ]

    def scan(self, root, settings):
        if root is None:
            raise DatasetLayoutError("deepchange needs --root (the DeepChangeDataset folder)")
        base = find_dataset_root(Path(root), "train-set-bbox.txt", ("DeepChangeDataset",))
        require_paths(base, [p for pair in PARTS.values() for p in pair], "DeepChange layout")
        camera_from = settings.get("camera_from") or "tracklet"
        records, problems = [], []
        for split, (folder, list_name) in PARTS.items():
            for where, (name, tracklet_text) in list_entries(base / list_name, 2, sep=",", problems=problems):
                path = inside(base / folder, name)
                if path is None:
                    problems.append((where, f"{name} points outside {folder}/"))
                    continue
                try:
                    pid, camera, outfit = parse_name(name)
                    tracklet = to_int(tracklet_text, "tracklet id")
                except ValueError as exc:
                    problems.append((where, str(exc)))
                    continue
                if not path.is_file():
                    problems.append((where, f"listed image {folder}/{name} not found"))
                    continue
                records.append(ImageRecord(
                    path=f"{folder}/{name}", pid=pid, camera=tracklet if camera_from == "tracklet" else camera,
                    splits=(split,), clothes_key=outfit, tracklet=tracklet, source=path,
                ))
        protocols = [
            EvalProtocol("standard", rule="standard", description=f"drop same person with the same {camera_from}"),
            EvalProtocol("val", query="val_query", gallery="val_gallery", rule="standard", description="validation split"),
        ]
        return DatasetLayout("deepchange", records, protocols, settings={"camera_from": camera_from}, problems=problems)
