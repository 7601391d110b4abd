"""PRCC (Yang et al., TPAMI 2019): cameras A, B, C; A and B share an outfit, C is another.

Train and val: ``rgb/{train,val}/<pid>/{A,B,C}_*.jpg``. Test:
``rgb/test/{A,B,C}/<pid>/*.jpg`` where A is the gallery, B the same-clothes
query and C the clothes-changing query.
"""
from reidkit.adapter import EvalProtocol

from reidkit.adapters.common import FolderAdapter, NameRule, SplitSource

CAMERAS = {"A": 0, "B": 1, "C": 2}
TRAIN_RULE = NameRule(r"(?P<pid>\d+)/(?P<cam>[ABC])[^/]*", example="001/A_cropped_rgb001.jpg", cameras=CAMERAS)
TEST_RULE = NameRule(r"(?P<pid>\d+)/[^/]+", example="001/cropped_rgb001.jpg")


def _test_source(split, letter):
    return SplitSource(split, f"rgb/test/{letter}", 2, TEST_RULE, fixed={"cam": CAMERAS[letter]})


def _protocols():
    out = []
    for sampling, trials, suffix in (("all", 1, ""), ("single_shot", 10, "_single_shot")):
        shots = "multi-shot (all of A)" if sampling == "all" else "single-shot (one random A image per person, 10 seeded trials)"
        out.append(EvalProtocol("sc" + suffix, query="query_sc", rule="sc", gallery_sampling=sampling, trials=trials,
                                description=f"same clothes B->A, {shots}"))
        out.append(EvalProtocol("cc" + suffix, query="query_cc", rule="cc", gallery_sampling=sampling, trials=trials,
                                description=f"clothes-changing C->A, {shots}"))
    return out


class PRCC(FolderAdapter):
    """PRCC from its distributed folder (prcc, holding rgb/, or the folder it was unpacked into).

    \b
    Splits: train, val, gallery (test A), query_sc (test B), query_cc (test C).
    Cameras A/B/C -> 0/1/2; outfit key person_AB or person_C.
    Protocols: sc (B->A) and cc (C->A), each multi-shot and single-shot (10 trials).
    """

    name = "prcc"
    summary = "PRCC clothes-changing (rgb/train, rgb/val, rgb/test/{A,B,C})."
    dataset = "prcc"
    folder = "prcc"
    sources = [
        SplitSource("train", "rgb/train", 2, TRAIN_RULE),
        SplitSource("val", "rgb/val", 2, TRAIN_RULE),
        _test_source("gallery", "A"),
        _test_source("query_sc", "B"),
        _test_source("query_cc", "C"),
    ]
    rule = TRAIN_RULE
    protocols = _protocols()

    def make_record(self, rel, path, source, fields, index):
        fields = {**fields, "clothes": "C" if fields["cam"] == CAMERAS["C"] else "AB"}
        return super().make_record(rel, path, source, fields, index)
