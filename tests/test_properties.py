"""Property-based tests (hypothesis): the adapters' name and list-line parsers and the store reader on arbitrary input.

What a parser may do with bad input is its contract, nothing else:
- a folder adapter's ``NameRule.parse`` returns None (the scan reports the file as a problem);
- the list-line helpers (``to_int``, MSMT17/CCVID ``camera_of``, DeepChange ``parse_name``, CUHK03's
  ``FILE_NAME``) raise ValueError naming the field, which the scan turns into a problem line;
- a whole scan raises only DatasetLayoutError (one clear line), never anything else.
The store reader (``open_store``, what ``reidkit info`` runs) raises only StoreError on any damaged file.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from reidkit.adapters import ccvid, cuhk03, deepchange, msmt17
from reidkit.adapters.celebreid import CelebReID
from reidkit.adapters.common import FolderAdapter, to_int
from reidkit.adapters.dukemtmc import DukeMTMC
from reidkit.adapters.last import FLAT, NESTED, LaST
from reidkit.adapters.ltcc import LTCC
from reidkit.adapters.market1501 import MARKET_RULE, Market1501
from reidkit.adapters.prcc import CAMERAS, PRCC, TEST_RULE, TRAIN_RULE
from reidkit.adapters.vcclothes import VCClothes
from reidkit.errors import DatasetLayoutError, StoreError
from tests import miniature_layouts as ml

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILE_PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FOLDER_ADAPTERS = {
    Market1501: ml.build_market,
    DukeMTMC: ml.build_duke,
    LTCC: ml.build_ltcc,
    PRCC: ml.build_prcc,
    VCClothes: ml.build_vcclothes,
    CelebReID: ml.build_celebreid,
    LaST: ml.build_last,
}
ALL_RULES = list({(r.regex, r.example): r for cls in FOLDER_ADAPTERS for r in [cls.rule, *(s.rule for s in cls.sources if s.rule)]}.values())

# Names built to be near-valid: the characters every benchmark's names are made of.
NEAR = st.text(alphabet="0123456789_-csCSPWFABf./ ", max_size=40)
ANY_TEXT = st.text(max_size=60)
NAMEISH = st.one_of(ANY_TEXT, NEAR, NEAR.map(lambda s: s + ".jpg"), NEAR.map(lambda s: s + ".png"))


def test_every_builtin_folder_adapter_is_covered():
    """A new folder adapter must join FOLDER_ADAPTERS (and get its round-trip property below)."""
    from reidkit.adapters import BUILTIN_ADAPTERS
    from importlib import import_module

    folder = {getattr(import_module(f"reidkit.adapters.{m}"), c) for m, c in BUILTIN_ADAPTERS.values()}
    folder = {cls for cls in folder if issubclass(cls, FolderAdapter)}
    assert folder == set(FOLDER_ADAPTERS)


# -- file names of the folder adapters ----------------------------------------------------
@PROPS
@given(st.sampled_from(ALL_RULES), NAMEISH)
@example(MARKET_RULE, "-1_c1s1_000401_03.jpg")
@example(TRAIN_RULE, "001/D_cropped.jpg")
def test_name_rules_answer_none_or_integer_fields(rule, text):
    fields = rule.parse(text)
    if fields is None:
        return
    assert isinstance(fields["pid"], int)
    if "cam" in fields:
        assert isinstance(fields["cam"], int)
    if "frame" in fields:
        assert isinstance(fields["frame"], int)


PID = st.integers(0, 9999)
CAM9 = st.integers(1, 9)
SERIAL = st.integers(0, 999999)


@PROPS
@given(st.one_of(st.just(-1), PID), CAM9, st.integers(1, 6), SERIAL, st.integers(0, 99))
def test_market_names_round_trip(pid, cam, seq, frame, box):
    name = f"{pid:04d}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg" if pid >= 0 else f"-1_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg"
    fields = Market1501.rule.parse(name)
    assert (fields["pid"], fields["cam"]) == (pid, cam - 1)


@PROPS
@given(PID, st.integers(1, 8), SERIAL)
def test_duke_names_round_trip(pid, cam, frame):
    fields = DukeMTMC.rule.parse(f"{pid:04d}_c{cam}_f{frame:07d}.jpg")
    assert (fields["pid"], fields["cam"]) == (pid, cam - 1)


@PROPS
@given(st.integers(0, 999), st.integers(1, 20), st.integers(1, 99), SERIAL, st.sampled_from([".png", ".jpg"]))
def test_ltcc_names_round_trip(pid, clothes, cam, frame, ext):
    fields = LTCC.rule.parse(f"{pid:03d}_{clothes}_c{cam}_{frame:06d}{ext}")
    assert (fields["pid"], fields["cam"], fields["clothes"]) == (pid, cam - 1, str(clothes))


@PROPS
@given(st.integers(0, 999), st.sampled_from("ABC"), st.integers(0, 999), st.booleans())
def test_prcc_names_round_trip(pid, letter, serial, test_layout):
    if test_layout:
        fields = TEST_RULE.parse(f"{pid:03d}/cropped_rgb{serial:03d}.jpg")
        assert fields["pid"] == pid
    else:
        fields = TRAIN_RULE.parse(f"{pid:03d}/{letter}_cropped_rgb{serial:03d}.jpg")
        assert (fields["pid"], fields["cam"]) == (pid, CAMERAS[letter])


@PROPS
@given(PID, st.integers(1, 4), st.integers(1, 20), st.integers(0, 99))
def test_vcclothes_names_round_trip(pid, cam, clothes, frame):
    fields = VCClothes.rule.parse(f"{pid:04d}-{cam:02d}-{clothes:02d}-{frame:02d}.jpg")
    assert (fields["pid"], fields["cam"], fields["clothes"], fields["frame"]) == (pid, cam - 1, f"{clothes:02d}", frame)


@PROPS
@given(st.integers(1, 99999), st.integers(1, 999), st.integers(0, 1))
def test_celebreid_names_round_trip(pid, index, z):
    assert CelebReID.rule.parse(f"{pid}_{index}_{z}.jpg")["pid"] == pid


@PROPS
@given(st.integers(0, 999999), st.lists(st.integers(0, 99), max_size=3), st.integers(0, 9), st.booleans())
def test_last_names_round_trip(pid, middle, clothes, nested):
    stem = "_".join([f"{pid:06d}", *map(str, middle), str(clothes)])
    fields = NESTED.parse(f"{pid:06d}/{stem}.jpg") if nested else FLAT.parse(f"{stem}.jpg")
    assert (fields["pid"], fields["clothes"]) == (pid, str(clothes))


# -- list-line parsers ---------------------------------------------------------------------
def value_error_or(fn, *args):
    """fn(*args), or None when it raised ValueError (the parsers' one clear error)."""
    try:
        return fn(*args)
    except ValueError as exc:
        assert str(exc)  # says what was wrong
        return None


@PROPS
@given(NAMEISH)
def test_list_field_parsers_raise_only_value_error(text):
    value_error_or(to_int, text, "person id")
    camera = value_error_or(msmt17.camera_of, text)
    assert camera is None or isinstance(camera, int)
    camera = value_error_or(ccvid.camera_of, text)
    assert camera is None or isinstance(camera, int)
    parsed = value_error_or(deepchange.parse_name, text)
    assert parsed is None or (isinstance(parsed[0], int) and isinstance(parsed[1], int))
    cuhk03.FILE_NAME.fullmatch(text)


@PROPS
@given(PID, st.integers(0, 999), st.integers(1, 15), st.sampled_from(["morning", "noon", "afternoon"]), SERIAL, st.integers(0, 9))
def test_msmt17_names_round_trip(pid, track, cam, daytime, frame, k):
    rel = f"{pid:04d}/{pid:04d}_{track:03d}_{cam:02d}_0303{daytime}_{frame:04d}_{k}.jpg"
    assert msmt17.camera_of(rel) == cam - 1
    assert to_int(f"{pid}", "person id") == pid


@PROPS
@given(PID, st.integers(1, 17), st.integers(1, 9), SERIAL)
def test_deepchange_names_round_trip(pid, cam, outfit, frame):
    assert deepchange.parse_name(f"P{pid:04d}_C{cam}_W{outfit}_F{frame:04d}.jpg") == (pid, cam - 1, f"P{pid:04d}_W{outfit}")


@PROPS
@given(st.integers(1, 3), st.integers(0, 999), st.integers(1, 12))
def test_ccvid_tracklets_round_trip(session, pid, cam):
    offset = 12 if session == 3 else 0
    assert ccvid.camera_of(f"session{session}/{pid:03d}_{cam:02d}") == cam - 1 + offset


@PROPS
@given(st.integers(1, 5), st.integers(1, 999), st.integers(1, 2), st.integers(1, 10))
def test_cuhk03_names_round_trip(pair, person, view, image):
    match = cuhk03.FILE_NAME.fullmatch(f"{pair}_{person:03d}_{view}_{image:02d}.png")
    assert tuple(int(match.group(g)) for g in (1, 2, 3, 4)) == (pair, person, view, image)


# -- whole scans: a random file name or list line in a real (miniature) layout ------------------
def file_name(text: str) -> str | None:
    """``text`` as one file name this file system accepts, or None."""
    name = text.replace("/", "_").replace("\0", "_")
    if name in ("", ".", "..") or len(os.fsencode(name)) > 200:
        return None
    return name


def scan_outcome(adapter, root, settings=None):
    """(records, problems) of a scan, or None when it stopped with DatasetLayoutError; any other exception fails."""
    try:
        layout = adapter.scan(root, settings or {})
    except DatasetLayoutError as exc:
        assert "\n" not in str(exc)
        return None
    for record in layout.records:
        assert isinstance(record.pid, int) and isinstance(record.camera, int)
    return layout.records, layout.problems


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    out = {}
    for cls, build in FOLDER_ADAPTERS.items():
        out[cls] = build(tmp_path_factory.mktemp(cls.name))
    out["msmt17"] = ml.build_msmt17(tmp_path_factory.mktemp("msmt17"))
    out["deepchange"] = ml.build_deepchange(tmp_path_factory.mktemp("deepchange"))
    out["ccvid"] = ml.build_ccvid(tmp_path_factory.mktemp("ccvid"))
    return out


@PROPS
@given(cls=st.sampled_from(sorted(FOLDER_ADAPTERS, key=lambda c: c.name)), folder=NAMEISH, name=NAMEISH,
       ext=st.sampled_from([".jpg", ".png", ".JPG", ".bmp"]))
def test_folder_scan_of_any_file_name_reports_it_or_reads_it(layouts, cls, folder, name, ext):
    base = layouts[cls]
    source = cls.sources[0]
    leaf = file_name(name)
    assume(leaf is not None and len(os.fsencode(leaf + ext)) <= 200)
    rel = leaf + ext
    if source.depth == 2:
        sub = file_name(folder)
        assume(sub is not None)
        rel = f"{sub}/{rel}"
    path = base / source.folder / rel
    assume(not path.exists())
    path.parent.mkdir(parents=True, exist_ok=True)
    made_dir = source.depth == 2 and not any(path.parent.iterdir())
    path.write_bytes(ml.image_bytes("jpg"))
    try:
        records, problems = scan_outcome(cls(), base.parent)
        listed = f"{source.folder}/{rel}"
        # the new file is either a record or a problem naming it, never silently dropped
        assert any(r.path == listed for r in records) or any(where == listed for where, _ in problems)
    finally:
        path.unlink()
        if made_dir:
            shutil.rmtree(path.parent)


LIST_FILES = {"msmt17": "list_train.txt", "deepchange": "train-set-bbox.txt", "ccvid": "train.txt"}
ADAPTER_OF = {"msmt17": msmt17.MSMT17, "deepchange": deepchange.DeepChange, "ccvid": ccvid.CCVID}


@PROPS
@given(which=st.sampled_from(sorted(LIST_FILES)), lines=st.lists(st.one_of(ANY_TEXT, NEAR, NEAR.map(lambda s: s + ".jpg 1"),
                                                                          NEAR.map(lambda s: s + ".jpg,3")), min_size=1, max_size=3))
@example(which="msmt17", lines=["0000/0000_000_01_0303morning_0015_0.jpg 1_0"])
@example(which="deepchange", lines=["../P0001_C3_W1_F0001.jpg,1"])
@example(which="ccvid", lines=["session1/\x00_01 001 u1"])
def test_list_scan_of_any_line_reports_it_or_reads_it(layouts, which, lines):
    base = layouts[which]
    list_file = base / LIST_FILES[which]
    original = list_file.read_bytes()
    try:
        with open(list_file, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        outcome = scan_outcome(ADAPTER_OF[which](), base)
        assert outcome is not None  # the layout itself is intact: a bad line is a problem, not a failed scan
    finally:
        list_file.write_bytes(original)


# -- the store reader on damaged files -------------------------------------------------------
@pytest.fixture(scope="module")
def valid_store(tmp_path_factory):
    from tests.helpers import run_cli

    path = tmp_path_factory.mktemp("store") / "tiny.h5"
    result = run_cli("adapt", "synthetic", "--out", path, "--ids", 4, "--shots", 1)
    assert result.exit_code == 0, result.output
    return path.read_bytes()


def read_as_store(tmp_dir: Path, data: bytes):
    """Open ``data`` as a store and summarise it (what ``reidkit info`` does); only StoreError may escape."""
    from reidkit.store import open_store
    from reidkit.store.summary import store_summary

    path = tmp_dir / "candidate.h5"
    path.write_bytes(data)
    try:
        store = open_store(path)
        store_summary(store)
        store.close()
    except StoreError as exc:
        assert "\n" not in str(exc)
    finally:
        path.unlink()


@FILE_PROPS
@given(data=st.binary(max_size=4096))
@example(data=b"")
@example(data=b"\x89HDF\r\n\x1a\n")
def test_store_reader_on_random_bytes(tmp_path_factory, data):
    read_as_store(tmp_path_factory.getbasetemp(), data)


@FILE_PROPS
@given(cut=st.floats(0, 1, exclude_max=True))
def test_store_reader_on_truncated_store(tmp_path_factory, valid_store, cut):
    read_as_store(tmp_path_factory.getbasetemp(), valid_store[: int(cut * len(valid_store))])


@FILE_PROPS
@given(flips=st.lists(st.tuples(st.one_of(st.integers(0, 8191), st.floats(0, 1, exclude_max=True)), st.integers(0, 255)),
                      min_size=1, max_size=24))
# found by this property before the reader turned them into StoreError (KeyError, RuntimeError, AttributeError)
@example(flips=[(712, 157)])
@example(flips=[(3080, 132)])
@example(flips=[(3174, 221)])
def test_store_reader_on_store_with_flipped_bytes(tmp_path_factory, valid_store, flips):
    data = bytearray(valid_store)
    for where, value in flips:  # metadata sits mostly in the first few KiB; floats reach anywhere in the file
        position = where if isinstance(where, int) else int(where * len(data))
        data[position % len(data)] = value
    read_as_store(tmp_path_factory.getbasetemp(), bytes(data))
