"""CCVID (Gu et al., CVPR 2022), video: ``{train,query,gallery}.txt`` list tracklet folders.

A line is ``session1/001_01 001 u1_l1_s1_c1_b1`` = tracklet folder, person,
outfit label. The camera is the second ``_`` field of the tracklet name;
session3 cameras are offset by 12 (as in the CAL reference code), then made
0-based. Every frame is stored with its tracklet id and frame number;
evaluation works per tracklet.
"""
from pathlib import Path

from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord, find_dataset_root
from reidkit.errors import DatasetLayoutError

from reidkit.adapters.common import image_files, inside, list_entries, require_paths, to_int

SESSION_CAMERA_OFFSET = {"session3": 12}
SPLITS = ("train", "query", "gallery")


def camera_of(tracklet_dir: str) -> int:
    session, _, name = tracklet_dir.partition("/")
    fields = name.split("_")
    if not session or len(fields) < 2:
        raise ValueError("tracklet folder is not session<k>/<pid>_<camera> (e.g. session1/001_01)")
    return to_int(fields[1], "camera field") - 1 + SESSION_CAMERA_OFFSET.get(session, 0)


class CCVID(Adapter):
    """CCVID from its distributed folder (CCVID or the folder it was unpacked into).

    \b
    Splits: train, query, gallery (tracklets from the list files).
    Columns: pid, camera (session3 +12), outfit key person_label, tracklet, frame.
    Protocols: standard and cc, per tracklet (frame features averaged).
    """

    name = "ccvid"
    summary = "CCVID video clothes-changing (tracklet lists, sessions 1-3)."
    needs_root = True
    folder_names = ("CCVID",)  # without --root: looked for here, then under $REIDKIT_DATA
    store_name = "ccvid.h5"

    def scan(self, root, settings):
        if root is None:
            raise DatasetLayoutError("ccvid needs --root (the CCVID folder)")
        base = find_dataset_root(Path(root), "train.txt", ("CCVID",))
        require_paths(base, [f"{s}.txt" for s in SPLITS], "CCVID layout")
        records, problems = [], []
        tracklet = 0
        for split in SPLITS:
            for where, (tracklet_dir, pid_text, outfit) in list_entries(base / f"{split}.txt", 3, problems=problems):
                folder = inside(base, tracklet_dir)
                if folder is None:
                    problems.append((where, f"{tracklet_dir} points outside the dataset folder"))
                    continue
                try:
                    pid, camera = to_int(pid_text, "person id"), camera_of(tracklet_dir)
                except ValueError as exc:
                    problems.append((where, str(exc)))
                    continue
                frames = image_files(folder) if folder.is_dir() else []
                if not frames:
                    problems.append((where, f"tracklet folder {tracklet_dir} is missing or holds no images"))
                    continue
                for position, frame in enumerate(frames):
                    stem = frame.rsplit(".", 1)[0]
                    records.append(ImageRecord(
                        path=f"{tracklet_dir}/{frame}", pid=pid, camera=camera, splits=(split,),
                        clothes_key=f"{pid}_{outfit}", tracklet=tracklet,
                        frame=int(stem) if stem.isdigit() else position, source=folder / frame,
                    ))
                tracklet += 1
        protocols = [
            EvalProtocol("standard", rule="standard", unit="tracklet", description="per tracklet: drop same person in the same camera"),
            EvalProtocol("cc", rule="cc", unit="tracklet", description="per tracklet, clothes-changing: also drop same person in the same clothes"),
        ]
        settings = {"session_camera_offset": SESSION_CAMERA_OFFSET, "camera": "tracklet name field 2, 0-based, + session offset"}
        return DatasetLayout("ccvid", records, protocols, settings=settings, problems=problems)
