"""LTCC (Qian et al., ACCV 2020): ``001_1_c11_015861.png`` = person, outfit, camera, frame; 12 cameras."""
from pathlib import Path

from reidkit.adapter import EvalProtocol

from reidkit.adapters.common import FolderAdapter, NameRule, SplitSource, read_lines

CC_LIST = "info/cloth-change_id_test.txt"


class LTCC(FolderAdapter):
    """LTCC from its distributed folder (LTCC_ReID or the folder it was unpacked into).

    \b
    Splits: train, query, gallery (= test/). Outfit key: person_outfit.
    Protocols: standard, cc (clothes-changing). The ids listed in
    info/cloth-change_id_test.txt are recorded in the settings when present.
    """

    name = "ltcc"
    summary = "LTCC long-term clothes-changing (train / query / test)."
    dataset = "ltcc"
    folder = "LTCC_ReID"
    sources = [SplitSource("train", "train"), SplitSource("query", "query"), SplitSource("gallery", "test")]
    rule = NameRule(r"(?P<pid>\d+)_(?P<clothes>\d+)_c(?P<cam>\d+)[^/]*", example="001_1_c11_015861.png")
    protocols = [
        EvalProtocol("standard", rule="standard", description="general setting: drop same person in the same camera"),
        EvalProtocol("cc", rule="cc", description="clothes-changing: also drop same person in the same clothes"),
    ]

    def scan(self, root, settings):
        layout = super().scan(root, settings)
        cc_list = self.locate(Path(root)) / CC_LIST
        if cc_list.exists():
            layout.settings["cloth_change_ids_test"] = sorted(int(x) for _, line in read_lines(cc_list) for x in line.split() if x.isdigit())
        return layout
