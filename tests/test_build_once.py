"""Shared preparation happens once: while one process builds the clothing bank, another expand of the same store
waits for it and then reads it instead of building its own (torchrun/accelerate ranks of one sharded run)."""
import subprocess
import sys
import threading
import time

import reidkit
from reidkit.generation.bank import KIND as BANK_KIND
from reidkit.generation.bank import ensure_bank
from reidkit.store import chunks
from reidkit.store.build_once import built_once
from tests.helpers import make_world, reidkit_exe

BANK = "templates"  # the templates source with its defaults is stored under this name


def test_a_second_process_waits_for_the_bank_and_reads_it(tmp_path):
    store_path = make_world(tmp_path / "w.h5", ids=4, outfits=2, cameras=2)
    cmd = [reidkit_exe(), "expand", str(store_path), "--generator", "recolor", "--prompts", "templates",
           "--variants", "1", "--limit", "2", "--shard", "1/2", "--batch-size", "1", "--device", "cpu"]
    lines = []
    with built_once(store_path, f"bank.{BANK}", "the bank"):  # this test is the rank that builds
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 180
        while not any("waiting for another process to build the clothing bank" in ln for ln in lines):
            assert proc.poll() is None, (proc.returncode, lines)  # it must wait, not build or fail
            assert time.monotonic() < deadline, lines
            time.sleep(0.2)
        bank = ensure_bank(reidkit.open_store(store_path), "templates", {}, show_progress=False)
        built = chunks.chunk_files(chunks.part_dir(reidkit.open_store(store_path), BANK_KIND, BANK))
        assert proc.poll() is None  # still waiting while the lock is held
    assert proc.wait(timeout=300) == 0, lines
    reader.join(timeout=10)
    store = reidkit.open_store(store_path)
    assert chunks.chunk_files(chunks.part_dir(store, BANK_KIND, BANK)) == built  # read, not rebuilt
    assert not any(ln.startswith("prompts templates") for ln in lines)  # no bank-building progress of its own
    run = store.run(next(iter(store.runs())))
    assert len(run) >= 1 and bank.keys


def test_a_dead_builder_leaves_no_stale_lock(tmp_path):
    """The lock is the kernel's: a builder killed mid-build releases it, and the next process builds."""
    store_path = tmp_path / "w.h5"
    store_path.write_bytes(b"")
    code = ("import sys, time; from reidkit.store.build_once import built_once\n"
            f"with built_once({str(store_path)!r}, 'bank.x', 'x'):\n    print('holding', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "holding"
    finally:
        holder.kill()
        holder.wait()
    entered = []
    with built_once(store_path, "bank.x", "x"):  # would block forever on a stale lock
        entered.append(True)
    assert entered == [True]
    assert not list(tmp_path.glob(".*lock"))  # released and removed
