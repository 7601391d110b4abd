"""Layouts with the real published sizes (shared/datasets.md): `reidkit info --json` must report them exactly."""
import os

import pytest

from tests.miniature_layouts import adapt, build_cuhk03_real_size, build_real_size, info_json

# split -> (ids, images) as published; None where the publication gives no number
PUBLISHED = {
    "market1501": {"train": (751, 12936), "query": (750, 3368), "gallery": (None, 15913)},
    "ltcc": {"train": (77, 9576), "query": (75, 493), "gallery": (75, 7050)},
    "vcclothes": {"train": (256, 9449), "query": (256, 1020), "gallery": (256, 8591)},
    "dukemtmc": {"train": (702, 16522), "query": (702, 2228), "gallery": (1110, 17661)},
    "celebreid": {"train": (632, 20208), "query": (420, 2972), "gallery": (420, 11006)},
    "msmt17": {"train": (1041, 32621), "query": (3060, 11659), "gallery": (3060, 82161)},
    "ccvid": {"train": (75, None), "query": (None, None), "gallery": (None, None)},
    "prcc": {"train": (150, None), "gallery": (71, 3384), "query_sc": (71, 3543), "query_cc": (71, 3873)},
    "last": {"train": (5000, 71248), "query": (None, 10176), "gallery": (None, 125353)},
}


# MSMT17's 126k and LaST's 207k files take about a minute each (file creation dominates):
# they run by default, REIDKIT_SKIP_LARGE=1 skips them for a quick local run.
LARGE = {"msmt17", "last"}
CASES = [
    pytest.param(d, marks=pytest.mark.skipif(bool(os.environ.get("REIDKIT_SKIP_LARGE")), reason="100k+ files; REIDKIT_SKIP_LARGE set"))
    if d in LARGE else d
    for d in sorted(PUBLISHED)
]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", CASES)
def test_info_reports_published_split_sizes(tmp_path, dataset):
    base = build_real_size(dataset, tmp_path)
    adapt(dataset, base, tmp_path / "s.h5")
    splits = info_json(tmp_path / "s.h5")["splits"]
    for split, (ids, images) in PUBLISHED[dataset].items():
        if ids is not None:
            assert splits[split]["ids"] == ids, split
        if images is not None:
            assert splits[split]["images"] == images, split
    if dataset == "market1501":
        gallery = splits["gallery"]
        assert (gallery["junk"], gallery["distractors"], gallery["stored_images"]) == (3819, 2793, 19732)
    if dataset == "dukemtmc":
        assert splits["gallery"]["distractor_ids"] == 408
    if dataset == "ccvid":
        tracklets = [splits[s]["tracklets"] for s in ("train", "query", "gallery")]
        assert tracklets == [948, 834, 1074] and sum(tracklets) == 2856
        assert splits["train"]["ids"] + splits["query"]["ids"] == 226  # disjoint train and test identities
    if dataset == "last":  # no camera labels: every image is its own camera
        assert splits["gallery"]["cameras"] == 125353 and splits["train"]["outfits"] == 5000 * 3
    if dataset == "prcc":
        assert splits["train"]["images"] + splits["val"]["images"] + 3384 + 3543 + 3873 == 33698
        assert splits["val"]["ids"] == 150


@pytest.mark.slow
def test_cuhk03_detected_reports_published_sizes(tmp_path):
    adapt("cuhk03", build_cuhk03_real_size(tmp_path), tmp_path / "c.h5")
    splits = info_json(tmp_path / "c.h5")["splits"]
    assert {k: (v["ids"], v["images"]) for k, v in splits.items()} == {
        "train": (767, 7365), "query": (700, 1400), "gallery": (700, 5332)}
