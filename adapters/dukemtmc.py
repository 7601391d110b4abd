"""DukeMTMC-reID (Zheng et al., ICCV 2017): Market-1501 naming, ``0001_c2_f0046182.jpg``, cameras 1-8.

The gallery holds 408 distractor identities that never appear as queries;
they are flagged ``distractor`` (kept as negatives, counted apart by ``reidkit info``).
"""
from reidkit.adapters.common import FolderAdapter, NameRule
from reidkit.adapters.market1501 import STANDARD, bounding_box_sources


class DukeMTMC(FolderAdapter):
    """DukeMTMC-reID from its distributed folder (DukeMTMC-reID or the folder it was unpacked into).

    \b
    Splits: train (bounding_box_train), query, gallery (bounding_box_test).
    Gallery identities absent from the query set are flagged as distractors.
    Protocol: standard.
    """

    name = "dukemtmc"
    summary = "DukeMTMC-reID (Market-1501 layout, 8 cameras)."
    dataset = "dukemtmc"
    folder = "DukeMTMC-reID"
    sources = bounding_box_sources()
    rule = NameRule(r"(?P<pid>-?\d+)_c(?P<cam>\d)[^/]*", example="0001_c2_f0046182.jpg")
    protocols = [STANDARD]

    def finish(self, records):
        queried = {r.pid for r in records if "query" in r.splits}
        for r in records:
            if "gallery" in r.splits and r.pid not in queried:
                r.distractor = True
