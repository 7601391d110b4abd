import json

import h5py
import numpy as np
import pytest

import reidkit
from reidkit.adapters.synthetic import CLOTHING, LABELS, WorldSpec, render
from reidkit.errors import StoreError
from reidkit.store import chunks
from reidkit.store.imagecodec import decode_rgb, encode_png
from tests.helpers import make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("w") / "world.h5", ids=6, outfits=2, cameras=3, shots=2)


def test_round_trip_columns_splits_and_bytes(world):
    store = reidkit.open_store(world)
    assert store.dataset == "synthetic"
    assert len(store) == 6 * 2 * 3 * 2
    train = store.split("train")
    # train labels are contiguous over sorted train pids; -1 everywhere else
    train_pids = sorted(set(store.pid[train].tolist()))
    assert sorted(set(store.label[train].tolist())) == list(range(len(train_pids)))
    for idx in train:
        assert store.label[idx] == train_pids.index(store.pid[idx])
    others = np.setdiff1d(np.arange(len(store)), train)
    assert (store.label[others] == -1).all()
    # splits partition the images, by identity
    q, g = store.split("query"), store.split("gallery")
    assert len(np.intersect1d(train, np.union1d(q, g))) == 0
    assert set(store.pid[train]).isdisjoint(set(store.pid[q]))
    assert len(train) + len(q) + len(g) == len(store)
    # clothes ids map one-to-one to clothes keys "pid_outfit"
    for key in set(store.clothes_key):
        ids = set(store.clothes_id[store.clothes_key == key].tolist())
        assert len(ids) == 1 and ids != {-1}
        assert key.split("_")[0] == str(store.pid[store.clothes_key == key][0])


def test_image_bytes_are_the_rendered_png(world):
    store = reidkit.open_store(world)
    i = 5
    name = store.image_paths[i]  # e.g. train/0003_o1_c0_s1.png
    pid, o, c, s = name.split("/")[1][:-4].split("_")
    spec = WorldSpec(6, 2, 3, 0)
    img, labels = render(spec, int(pid) - 1, int(o[1:]), int(c[1:]), int(s[1:]))
    assert store.image_bytes(i) == encode_png(img)  # stored as encoded, never re-encoded
    np.testing.assert_array_equal(store.image(i), img)
    masks = store.mask_sets()["ground_truth"]
    assert masks.labels == LABELS and masks.clothing == CLOTHING
    np.testing.assert_array_equal(masks.label_map(i), labels)
    assert masks.clothing_mask(i).sum() == np.isin(labels, [LABELS.index(c) for c in CLOTHING]).sum() > 0


def test_protocols_and_settings_recorded(world):
    store = reidkit.open_store(world)
    assert [p.name for p in store.protocols] == ["standard", "cc", "sc"]
    assert {p.rule for p in store.protocols} == {"standard", "cc", "sc"}
    assert store.settings["ids"] == 6 and store.settings["seed"] == 0 and store.settings["adapter"] == "synthetic"


def test_same_seed_same_store_other_seed_other_store(tmp_path, world):
    again = make_world(tmp_path / "again.h5", ids=6, outfits=2, cameras=3, shots=2)
    other = make_world(tmp_path / "other.h5", ids=6, outfits=2, cameras=3, shots=2, seed=1)
    assert reidkit.open_store(again).fingerprint == reidkit.open_store(world).fingerprint
    assert reidkit.open_store(other).fingerprint != reidkit.open_store(world).fingerprint


def test_store_is_picklable_and_reopens_per_process(world):
    import pickle

    store = reidkit.open_store(world)
    first = store.image_bytes(0)
    clone = pickle.loads(pickle.dumps(store))
    assert clone._h5 is None
    assert clone.image_bytes(0) == first


def test_rejects_non_store_files(tmp_path, world):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        reidkit.open_store(text)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(world.read_bytes()[:4096])
    with pytest.raises(StoreError, match="not an HDF5 file, or truncated"):
        reidkit.open_store(truncated)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as h5:
        h5["x"] = 1
    with pytest.raises(StoreError, match="not a reidkit store"):
        reidkit.open_store(plain)
    with pytest.raises(StoreError, match="does not exist"):
        reidkit.open_store(tmp_path / "missing.h5")


def test_rejects_other_schema_version(tmp_path, world):
    import shutil

    old = tmp_path / "old.h5"
    shutil.copy(world, old)
    with h5py.File(old, "a") as h5:
        h5.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        reidkit.open_store(old)


def test_chunked_parts_publish_whole_chunks_and_resume(world):
    store = reidkit.open_store(world)
    d = chunks.create_part(store, "runs", "unit", {"generator": "none", "settings": {"a": 1}}, must_match=("settings",))
    chunks.write_chunk(d, "shard-0-of-1", {"image": [b"\x01\x02", b"\x03"], "source_index": [0, 1], "variant": [0, 0]})
    chunks.write_chunk(d, "shard-0-of-1", {"image": [b"\x04"], "source_index": [2], "variant": [1]})
    run = reidkit.open_store(world).run("unit")
    assert len(run) == 3
    assert run.done_keys() == {(0, 0), (1, 0), (2, 1)}
    assert run.image_bytes(2) == b"\x04" and run.image_bytes(0) == b"\x01\x02"
    # no partial files remain and names are sequential
    names = sorted(p.name for p in (d / "chunks").iterdir())
    assert names == ["shard-0-of-1-000000.h5", "shard-0-of-1-000001.h5"]
    # reusing a run name with other settings is refused in one line
    with pytest.raises(StoreError, match="exists with other settings"):
        chunks.create_part(store, "runs", "unit", {"generator": "none", "settings": {"a": 2}}, must_match=("settings",))
    with pytest.raises(StoreError, match="invalid name"):
        chunks.part_dir(store, "runs", "../escape")


def test_decode_accepts_gray_rgba_and_16bit():
    import cv2

    gray = (np.arange(12, dtype=np.uint8) * 20).reshape(3, 4)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    deep = gray.astype(np.uint16) * 257
    for img in (gray, rgba, deep):
        ok, buf = cv2.imencode(".png", img)
        assert ok
        out = decode_rgb(buf.tobytes())
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[..., 0], gray)


def test_skipped_items_and_settings_are_json(world):
    store = reidkit.open_store(world)
    assert store.skipped == []
    with h5py.File(world, "r") as h5:
        json.loads(h5.attrs["protocols"])
        assert set(h5.keys()) >= {"images", "splits", "masks", "prompts", "runs"}


def _many_chunks(store_path, name, n=12):
    store = reidkit.open_store(store_path)
    d = chunks.create_part(store, "runs", name, {"generator": "none", "settings": {}})
    for c in range(n):
        chunks.write_chunk(d, "t", {"image": [bytes([c, j]) for j in range(c % 3 + 1)], "source_index": [c] * (c % 3 + 1),
                                    "variant": list(range(c % 3 + 1))})
    return d


def _open_fds():
    import os

    return len(os.listdir("/proc/self/fd"))


def test_open_chunk_handles_are_bounded_and_reopen_after_pickle(world, monkeypatch):
    import pickle

    _many_chunks(world, "lru")
    monkeypatch.setenv("REIDKIT_OPEN_CHUNKS", "3")
    run = reidkit.open_store(world).run("lru")
    fds = _open_fds()
    expected = [bytes([c, j]) for c in range(12) for j in range(c % 3 + 1)]
    assert [run.image_bytes(i) for i in range(len(run))] == expected
    assert len(run._handles) == 3 and _open_fds() <= fds + 3  # not one per chunk
    assert [run.image_bytes(i) for i in reversed(range(len(run)))] == expected[::-1]
    clone = pickle.loads(pickle.dumps(run))  # what a DataLoader worker gets: no handles, reopened on use
    assert len(clone._handles) == 0 and clone.image_bytes(5) == expected[5]
    monkeypatch.setenv("REIDKIT_OPEN_CHUNKS", "many")
    with pytest.raises(StoreError, match="REIDKIT_OPEN_CHUNKS must be a whole number"):
        reidkit.open_store(world).run("lru").image_bytes(0)


def test_item_counts_come_from_the_index_without_opening_chunks(world, monkeypatch):
    d = _many_chunks(world, "indexed")
    lines = (d / chunks.INDEX_NAME).read_text().splitlines()
    assert len(lines) == 12  # one line appended per published chunk
    monkeypatch.setattr(chunks, "chunk_items", lambda path: pytest.fail(f"opened {path} to count its items"))
    run = reidkit.open_store(world).run("indexed")
    assert len(run) == sum(c % 3 + 1 for c in range(12))


def test_part_without_index_is_read_without_writing_and_a_writer_indexes_it(world, monkeypatch):
    d = _many_chunks(world, "old")
    (d / chunks.INDEX_NAME).unlink()  # a part written before the index existed
    (d / "chunks" / "t-000004.h5").touch()  # and a stale record would be caught by its mtime
    opened = []
    real = chunks.chunk_items
    monkeypatch.setattr(chunks, "chunk_items", lambda path: opened.append(path) or real(path))
    run = reidkit.open_store(world).run("old")
    assert len(run) == 24 and len(opened) == 12
    assert not (d / chunks.INDEX_NAME).exists()  # a reader never writes to the store it reads
    chunks.write_chunk(d, "t", {"image": [b"z"], "source_index": [99], "variant": [0]})  # a writer indexes it all
    assert len((d / chunks.INDEX_NAME).read_text().splitlines()) == 13
    opened.clear()
    (d / "chunks" / "t-000004.h5").touch()  # changed since indexed: opened again, the rest not
    assert len(reidkit.open_store(world).run("old")) == 25 and [p.name for p in opened] == ["t-000004.h5"]
    with (d / chunks.INDEX_NAME).open("a") as f:
        f.write('{"chunk": "t-0000')  # a writer killed mid-append: the torn line is skipped
    opened.clear()
    assert len(reidkit.open_store(world).run("old")) == 25 and [p.name for p in opened] == ["t-000004.h5"]
