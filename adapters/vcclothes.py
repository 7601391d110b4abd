"""VC-Clothes (Wang et al., CVPRW 2020): ``0001-01-01-01.jpg`` = person, camera, outfit, frame; 4 cameras."""
from reidkit.adapter import EvalProtocol

from reidkit.adapters.common import FolderAdapter, NameRule, SplitSource


class VCClothes(FolderAdapter):
    """VC-Clothes from its distributed folder (VC-Clothes or the folder it was unpacked into).

    \b
    Splits: train, query, gallery. Cameras 1-4 -> 0-3.
    Protocols: standard (all cameras); sc = cameras 2,3 (stored 1,2: same
    clothes); cc = cameras 3,4 (stored 2,3: other clothes), as camera subsets.
    """

    name = "vcclothes"
    summary = "VC-Clothes synthetic clothes-changing (train / query / gallery)."
    dataset = "vcclothes"
    folder = "VC-Clothes"
    sources = [SplitSource("train", "train"), SplitSource("query", "query"), SplitSource("gallery", "gallery")]
    rule = NameRule(r"(?P<pid>\d+)-(?P<cam>\d+)-(?P<clothes>\d+)-(?P<frame>\d+)\.\w+", example="0001-01-01-01.jpg")
    protocols = [
        EvalProtocol("standard", rule="standard", description="all cameras"),
        EvalProtocol("sc", rule="standard", query_cameras=[1, 2], gallery_cameras=[1, 2],
                     description="same-clothes setting: cameras 2 and 3 only (0-based 1, 2)"),
        EvalProtocol("cc", rule="standard", query_cameras=[2, 3], gallery_cameras=[2, 3],
                     description="clothes-changing setting: cameras 3 and 4 only (0-based 2, 3)"),
    ]
