"""Market-1501 (Zheng et al., ICCV 2015): ``0002_c1s1_000451_03.jpg`` = person, camera, sequence, frame, box.

pid -1 marks junk boxes (kept in the store, flagged, dropped from
evaluation); pid 0000 marks distractors (kept in the gallery as negatives).
"""
from reidkit.adapter import EvalProtocol

from reidkit.adapters.common import FolderAdapter, NameRule, SplitSource

MARKET_RULE = NameRule(r"(?P<pid>-?\d+)_c(?P<cam>\d)[^/]*", example="0002_c1s1_000451_03.jpg")
STANDARD = EvalProtocol("standard", rule="standard", description="drop same person in the same camera; junk never counts")


def bounding_box_sources():
    """The Market-1501 folder convention, shared by DukeMTMC-reID."""
    return [
        SplitSource("train", "bounding_box_train"),
        SplitSource("query", "query"),
        SplitSource("gallery", "bounding_box_test"),
    ]


class Market1501(FolderAdapter):
    """Market-1501 from its distributed folder (Market-1501-v15.09.15 or the folder it was unpacked into).

    \b
    Splits: train (bounding_box_train), query, gallery (bounding_box_test).
    pid -1 = junk (flagged, kept), pid 0 = distractor (flagged, kept in gallery).
    Protocol: standard.
    """

    name = "market1501"
    summary = "Market-1501 (bounding_box_train / query / bounding_box_test)."
    dataset = "market1501"
    folder = "Market-1501-v15.09.15"
    sources = bounding_box_sources()
    rule = MARKET_RULE
    protocols = [STANDARD]
    junk_pids = frozenset({-1})
    distractor_pids = frozenset({0})
