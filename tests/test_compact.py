"""`reidkit compact`: one chunk file with the same items, order and bytes; refused while written; crash-safe."""
import json
import os
import shutil

import numpy as np
import pytest

import reidkit
from reidkit.store import chunks
from tests.helpers import make_world, run_cli
from tests.reliability.crash import h5_content, kill_at, kill_moment, run, timed_run, trials, visible_files

COLUMNS = ("source_index", "variant", "pid", "camera", "target_clothes_key", "prompt", "seed", "kept", "reject_reason",
           "scores")


def write_items(store_path, name="r", n_chunks=30, per_chunk=4, tags=("shard0of2", "shard1of2")):
    """A run written straight through the chunk API: real source images, so training can use it."""
    from reidkit.store.imagecodec import encode_png

    store = reidkit.open_store(store_path)
    train = store.split("train")
    d = chunks.create_part(store, "runs", name, {"generator": "test", "settings": {}})
    rng = np.random.default_rng(0)
    item = 0
    for c in range(n_chunks):
        cols = {k: [] for k in ("image", *COLUMNS)}
        for _ in range(per_chunk):
            src = int(train[item % len(train)])
            img = rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)
            for k, v in (("image", encode_png(img)), ("source_index", src), ("variant", item // len(train)),
                         ("pid", int(store.pid[src])), ("camera", int(store.camera[src])), ("target_clothes_key", "1_0"),
                         ("prompt", f"prompt é {item}"), ("seed", item), ("kept", item % 7 != 3),
                         ("reject_reason", "" if item % 7 != 3 else "test"), ("scores", json.dumps({"s": item}))):
                cols[k].append(v)
            item += 1
        chunks.write_chunk(d, tags[c % len(tags)], cols, attrs={"shard": tags[c % len(tags)], "batch_size": 4})
    return d


def items_of(store_path, name="r"):
    run_ = reidkit.open_store(store_path).run(name)
    values = {c: run_.column(c) for c in COLUMNS}
    return [(run_.image_bytes(i), *(values[c][i].item() if hasattr(values[c][i], "item") else values[c][i] for c in COLUMNS))
            for i in range(len(run_))]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("compact")
    store = make_world(d / "w.h5", ids=6, outfits=2, cameras=2, shots=1)
    write_items(store)
    return store


@pytest.fixture
def store(world, tmp_path):
    shutil.copy(world, tmp_path / "w.h5")
    shutil.copytree(f"{world}.parts", tmp_path / "w.h5.parts")
    return tmp_path / "w.h5"


def test_compact_keeps_items_order_and_bytes_in_one_file(store):
    before = items_of(store)
    reader = reidkit.open_store(store).run("r")  # opened before: keeps working after the old chunks are gone
    assert len(reader.files) == 30 and len(reader) == 120
    r = run_cli("compact", store, "--run", "r", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["rewritten"] and out["items"] == 120 and out["chunks_before"] == 30 and out["chunks_after"] == 1
    run_ = reidkit.open_store(store).run("r")
    assert [f.name for f in run_.files] == ["compacted-000000.h5"]
    assert sorted(p.name for p in (run_.dir / "chunks").iterdir()) == ["compacted-000000.h5", "compacted-000000.replaces.json"]
    assert items_of(store) == before
    assert [reader.image_bytes(i) for i in range(len(reader))] == [b[0] for b in before]
    assert list(reader.column("prompt")) == [b[1 + COLUMNS.index("prompt")] for b in before]
    lineage = chunks.read_lineage(run_.files[0])  # each old chunk's provenance attributes are kept
    assert [e["attrs"]["shard"] for e in lineage[:2]] == ["shard0of2", "shard0of2"]
    # again: nothing to do, nothing changes
    again = run_cli("compact", store, "--run", "r")
    assert again.exit_code == 0 and "already one chunk file" in again.output
    assert items_of(store) == before


def test_a_resumed_writer_after_compact_never_reuses_a_replaced_name(store):
    run_cli("compact", store, "--run", "r")
    d = reidkit.open_store(store).run("r").dir
    new = chunks.write_chunk(d, "shard0of2", {"image": [b"x"], **{c: [0] for c in ("source_index", "variant")}})
    assert new.name == "shard0of2-000015.h5"  # past every name the compaction replaced (seqs 0..14 of this tag)
    assert len(chunks.chunk_files(d)) == 2


def test_reader_skips_leftovers_of_an_interrupted_compaction(store):
    before = items_of(store)
    d = reidkit.open_store(store).run("r").dir
    saved = {p.name: p.read_bytes() for p in chunks.chunk_files(d)}
    run_cli("compact", store, "--run", "r")
    for name, data in saved.items():  # as if killed after publishing, before deleting the replaced chunks
        (d / "chunks" / name).write_bytes(data)
    assert items_of(store) == before  # every item exactly once
    r = run_cli("compact", store, "--run", "r", "--json")
    assert json.loads(r.stdout)["removed_files"] == 30
    assert sorted(p.name for p in (d / "chunks").iterdir()) == ["compacted-000000.h5", "compacted-000000.replaces.json"]


def test_compact_refused_while_written_and_for_unknown_run(store):
    from reidkit.store.lock import writer_lock

    with writer_lock(store, "expand", key="runs.r.shard1of2"):  # what expand of shard 1/2 holds while it writes
        r = run_cli("compact", store, "--run", "r")
    assert r.exit_code == 1
    line = r.output.strip()
    assert "\n" not in line and line.startswith("Error: cannot compact:") and "being written" in line
    assert len(chunks.chunk_files(reidkit.open_store(store).run("r").dir)) == 30  # untouched
    r = run_cli("compact", store, "--run", "nope")
    assert r.exit_code == 1 and "no generated run 'nope' (runs: r)" in r.output and "Traceback" not in r.output


def test_training_loader_reads_the_compacted_run(store):
    import torch

    from reidkit.training.data import GENERATED, TrainDataset, build_items

    def loaded():
        s = reidkit.open_store(store)
        items = build_items(s, ["r"])
        gen = np.flatnonzero(items.kind == GENERATED)
        ds = TrainDataset(s, items, 16, 8, augment_images=False)
        loader = torch.utils.data.DataLoader(ds, sampler=gen.tolist(), batch_size=16, num_workers=2)
        return torch.cat([b["image"] for b in loader]), len(gen)

    before, n = loaded()
    run_cli("compact", store, "--run", "r")
    after, m = loaded()
    assert n == m == 120 - 17 and torch.equal(before, after)  # the rejected (every 7th from 3) are left out


# -- crash trial: SIGKILL during compact, then a rerun -------------------------------------------------------------
def _compacting(store):
    return lambda: os.path.exists(store.parent / f".{store.name}.runs.r.compacting.lock")


@pytest.fixture(scope="module")
def compact_reference(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("compact-ref")
    shutil.copy(world, d / "w.h5")
    shutil.copytree(f"{world}.parts", d / "w.h5.parts")
    seconds = timed_run(["compact", d / "w.h5", "--run", "r"], _compacting(d / "w.h5"))
    chunk = d / "w.h5.parts/runs/r/chunks/compacted-000000.h5"
    return items_of(d / "w.h5"), visible_files(d / "w.h5.parts"), h5_content(chunk), seconds


@pytest.mark.parametrize("trial", trials())
def test_compact_killed_at_a_random_moment_then_rerun(compact_reference, store, trial):
    reference, files, content, window = compact_reference
    args = ["compact", store, "--run", "r"]
    kill_at(args, _compacting(store), kill_moment("compact", trial, window))
    assert items_of(store) == reference  # whatever the moment: every item once, same bytes, same order
    run(args)
    assert items_of(store) == reference
    parts = store.parent / "w.h5.parts"
    assert visible_files(parts) == files
    assert h5_content(parts / "runs/r/chunks/compacted-000000.h5") == content
    assert not [n for n in os.listdir(parts / "runs/r/chunks") if n.startswith(".")]  # no partial file left


def test_a_compacted_chunk_merged_into_another_store_is_a_plain_chunk_there(store, tmp_path):
    from reidkit.generation.merge import merge_run

    run_cli("compact", store, "--run", "r")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(store, other / "w.h5")
    out = merge_run(other / "w.h5", "r", [store])
    assert out["added"] == 120
    assert [f.name for f in chunks.chunk_files(other / "w.h5.parts/runs/r")] == ["merged-compacted-000000.h5"]
    assert items_of(other / "w.h5") == items_of(store)


def test_interrupted_before_publishing_leaves_an_orphan_record_that_a_rerun_replaces(store):
    before = items_of(store)
    d = reidkit.open_store(store).run("r").dir
    orphan = d / "chunks" / "compacted-000000.replaces.json"
    orphan.write_text(json.dumps({"chunk": orphan.name, "replaces": [{"name": "shard0of2-000000.h5", "offset": 0, "items": 4}]}))
    assert items_of(store) == before  # a record without its chunk means nothing
    assert run_cli("compact", store, "--run", "r").exit_code == 0
    assert [f.name for f in chunks.chunk_files(d)] == ["compacted-000000.h5"] and items_of(store) == before
