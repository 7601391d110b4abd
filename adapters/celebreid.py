"""Celeb-reID (Huang et al., 2019): ``1_1_0.jpg`` = person, index, z; no camera and no clothes labels."""
from reidkit.adapter import EvalProtocol

from reidkit.adapters.common import FolderAdapter, NameRule, SplitSource


class CelebReID(FolderAdapter):
    """Celeb-reID from its distributed folder (Celeb-reID or the folder it was unpacked into).

    \b
    Splits: train, query, gallery. No camera labels: every image is its own
    camera (so only the query image itself is ever excluded). No clothes labels.
    Protocol: standard.
    """

    name = "celebreid"
    summary = "Celeb-reID (train / query / gallery; no cameras, no clothes labels)."
    dataset = "celebreid"
    folder = "Celeb-reID"
    sources = [SplitSource("train", "train"), SplitSource("query", "query"), SplitSource("gallery", "gallery")]
    rule = NameRule(r"(?P<pid>-?\d+)_\d+[^/]*", example="1_1_0.jpg")
    protocols = [EvalProtocol("standard", rule="standard", description="every image its own camera")]
    own_camera = True
