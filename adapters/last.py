"""LaST (Shu et al., 2021): ``_``-separated names, person = first field, outfit = first + last field (train only).

No camera labels: every image is its own camera. Test and val clothes are
not published, so those images carry no outfit key.
"""
from reidkit.adapter import EvalProtocol

from reidkit.adapters.common import FolderAdapter, NameRule, SplitSource

FLAT = NameRule(r"(?P<pid>\d+)(?:_[^/_]*)*_(?P<clothes>[^/_.]+)\.\w+", example="000000_0_2_1.jpg")
NESTED = NameRule(r"[^/]+/(?P<pid>\d+)(?:_[^/_]*)*_(?P<clothes>[^/_.]+)\.\w+", example="000000/000000_0_2_1.jpg")


class LaST(FolderAdapter):
    """LaST from its distributed folder (last or the folder it was unpacked into).

    \b
    Splits: train (train/<pid>/), val_query, val_gallery, query, gallery
    (test/query, test/gallery/<dir>/). Every image is its own camera.
    Protocols: standard (test), val (val query -> val gallery).
    """

    name = "last"
    summary = "LaST large-scale clothes-changing (train, val, test; no cameras)."
    dataset = "last"
    folder = "last"
    sources = [
        SplitSource("train", "train", 2, NESTED),
        SplitSource("val_query", "val/query", 1, FLAT, clothes=False),
        SplitSource("val_gallery", "val/gallery", 2, NESTED, clothes=False),
        SplitSource("query", "test/query", 1, FLAT, clothes=False),
        SplitSource("gallery", "test/gallery", 2, NESTED, clothes=False),
    ]
    rule = NESTED
    protocols = [
        EvalProtocol("standard", rule="standard", description="test query -> test gallery; every image its own camera"),
        EvalProtocol("val", query="val_query", gallery="val_gallery", rule="standard", description="validation split"),
    ]
    own_camera = True
