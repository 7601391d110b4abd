"""Issue 14 regressions: bad training settings, long store names, and what Ctrl-C says per command."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import reidkit
from reidkit.errors import ReidkitError
from tests.helpers import reidkit_exe, run_console
from tests.train_helpers import make_store

QUICK = ("--batch", "2,2", "--height", "64", "--width", "32", "--num-workers", "0", "--device", "cpu",
         "--backbone", "resnet18", "--weights", "none", "--amp", "none")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("hardening"), ids=6, outfits=2)


def _one_line(r, *needles):
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- item: numeric training settings are checked before anything is written -------------------------------------
@pytest.mark.parametrize("option, value", [("--epochs", "-2"), ("--epochs", "0"), ("--height", "0"), ("--width", "4"),
                                           ("--ids-per-batch", "1"), ("--images-per-id", "0"), ("--lr", "-1e-3"),
                                           ("--num-workers", "-1"), ("--steps-per-epoch", "0")])
def test_train_option_out_of_range_is_a_usage_error(store, tmp_path, option, value):
    out = tmp_path / "run"
    args = [a for a in QUICK]
    if option in ("--height", "--width", "--num-workers"):
        i = args.index(option)
        del args[i:i + 2]
    if option in ("--ids-per-batch", "--images-per-id"):
        i = args.index("--batch")
        del args[i:i + 2]
    r = run_console("train", store, *args, option, value, "--out", out)
    assert r.returncode == 2, r.stdout + r.stderr
    assert option in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("yaml_text, key, expected", [
    ("epochs: abc\n", "epochs", "an integer >= 1"),
    ("epochs: -2\n", "epochs", "an integer >= 1"),
    ("ids_per_batch: [1, 2]\n", "ids_per_batch", "an integer >= 2"),
    ("height: 0\n", "height", "an integer >= 8"),
    ("lr: fast\n", "lr", "a number >= 0"),
    ("num_workers: -1\n", "num_workers", "an integer >= 0"),
    ("milestones: [10, x]\n", "milestones", "a list of integers"),
    ("scale_schedule: maybe\n", "scale_schedule", "true or false"),
])
def test_train_yaml_setting_of_wrong_type_or_range_names_key_and_file(store, tmp_path, yaml_text, key, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    out = tmp_path / "run"
    r = run_console("train", store, "--config", config, "--out", out, timeout=120)  # no option overrides the key
    assert r.returncode == 1, r.stdout + r.stderr
    _one_line(r, f"'{key}'", str(config), expected)
    assert not out.exists()  # no config.yaml left behind


def test_resolve_config_checks_options_and_accepts_good_values():
    from reidkit.training.config import resolve_config

    with pytest.raises(ReidkitError, match=r"setting 'epochs' from option --epochs: expected an integer >= 1, got -2"):
        resolve_config("baseline", {}, {"epochs": -2})
    with pytest.raises(ReidkitError, match=r"'max_steps_per_epoch' from option --steps-per-epoch"):
        resolve_config("baseline", {}, {"max_steps_per_epoch": 0})
    with pytest.raises(ReidkitError, match=r"'epochs' from strategy 'baseline' defaults|'epochs' from x.yaml"):
        resolve_config("baseline", {"epochs": True}, {}, file_source="x.yaml")  # a bool is not an integer
    good = resolve_config("cal", {"lr": "1e-3", "milestones": [2, 4]}, {"epochs": 5, "max_steps_per_epoch": None})
    assert good["lr"] == "1e-3" and good["epochs"] == 5  # YAML 1.1 reads 1e-3 as a string; the engine takes float()
    for plugin in ("baseline", "cal", "pretrain"):
        resolve_config(plugin, {}, {})  # every strategy's own defaults pass
    resolve_config("progressive", {}, {"generated": ["gen"]})


# -- item: a long (legal) store name -----------------------------------------------------------------------------
def test_partial_names_stay_within_255_bytes_and_unique():
    from reidkit.store.atomic import partial_path

    for name in ("a.h5", "x" * 235, "x" * 236, "x" * 252 + ".h5", "\u00e9" * 127):
        p = partial_path(Path("/tmp") / name)
        assert len(os.fsencode(p.name)) <= 255 - (10 - len(str(os.getpid())))
    assert partial_path(Path("/tmp") / ("x" * 250 + "a")) != partial_path(Path("/tmp") / ("x" * 250 + "b"))
    assert partial_path(Path("/tmp/world.h5")).name == f".world.h5.partial-{os.getpid()}"  # short names as before


def test_adapt_with_a_long_out_name(tmp_path):
    name = "s" * 246 + ".h5"  # 249 bytes: the longest whose sidecar folder NAME.parts still fits in 255
    out = tmp_path / name
    r = run_console("adapt", "synthetic", "--out", out, "--ids", "4", "--outfits", "2", "--cameras", "2", "--height", "32",
                    "--width", "16")
    assert r.returncode == 0, r.stderr
    assert len(reidkit.open_store(out)) > 0
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no partial left
    r = run_console("expand", out, "--variants", "1", "--limit", "2")  # its sidecar folder works
    assert r.returncode == 0, r.stderr


def test_adapt_with_an_out_name_too_long_for_its_sidecar_is_refused(tmp_path):
    out = tmp_path / ("s" * 247 + ".h5")  # 250 bytes: legal, but NAME.parts would be 256
    r = run_console("adapt", "synthetic", "--out", out, "--ids", "4")
    assert r.returncode == 1
    _one_line(r, "--out name is 250 bytes long", "at most 249 bytes")
    assert list(tmp_path.iterdir()) == []


# -- item: what Ctrl-C says, per command -------------------------------------------------------------------------
def test_interrupted_train_says_resume(store, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([reidkit_exe(), "train", str(store), *QUICK, "--epochs", "500", "--steps-per-epoch", "1",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (out / "log.csv").exists():
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]
        assert (out / "log.csv").exists(), "training did not start in time"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Interrupted") and "--resume" in last, last


def test_interrupted_adapt_says_nothing_is_kept(tmp_path, monkeypatch, capsys):
    import reidkit.store.writer as writer
    from reidkit.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "write_store", interrupted)
    with pytest.raises(SystemExit) as stop:
        main(["adapt", "synthetic", "--out", str(tmp_path / "w.h5")])
    assert stop.value.code == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no store was written" in last and "resume" not in last, last


def test_interrupted_message_per_command():
    from reidkit.cli import interrupted_message

    assert "--resume" in interrupted_message(["--debug", "train", "s.h5"])
    assert "rerun the same command to resume" in interrupted_message(["expand", "s.h5"])
    assert interrupted_message(["eval", "s.h5"]) == "Interrupted."
    assert interrupted_message([]) == "Interrupted."


# -- item: corrupt image data and huge declared sizes are caught at adapt time ------------------------------------
def _error_line(r, *needles):
    """The one 'Error:' line (a progress bar's closing line may precede it), with no traceback."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in r.stderr and "Caught" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose every chunk CRC is right, whatever ``idat`` holds."""
    import struct

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _rows(width: int, height: int, filter_byte: int = 0) -> bytes:
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 256, (height, width * 3), dtype=np.uint8)
    return b"".join(bytes([filter_byte]) + pixels[y].tobytes() for y in range(height))


def _bad_images() -> dict:
    """name -> bytes of images whose structure checks out but whose data or declared size does not."""
    import struct
    import zlib

    import cv2
    import numpy as np

    good = zlib.compress(_rows(8, 16))
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    img = np.random.default_rng(1).integers(0, 256, (16, 8, 3), dtype=np.uint8)
    jpg = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
    sof = jpg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpg, sof + 5, 60000, 60000)
    bmp = bytearray(cv2.imencode(".bmp", img)[1].tobytes())
    struct.pack_into("<ii", bmp, 18, 60000, 60000)
    return {
        "png_corrupt_deflate": _png(8, 16, bytes(flipped)),
        "png_not_zlib": _png(8, 16, b"this is not a zlib stream"),
        "png_short_data": _png(8, 16, zlib.compress(_rows(8, 8))),
        "png_bad_filter": _png(8, 16, zlib.compress(_rows(8, 16, filter_byte=9))),
        "png_60000": _png(60000, 60000, good),
        "jpg_60000": bytes(jpg),
        "bmp_60000": bytes(bmp),
    }


def test_valid_crc_png_with_good_data_passes_and_bad_ones_are_rejected():
    import zlib

    from reidkit.store.imagecodec import probe

    assert probe(_png(8, 16, zlib.compress(_rows(8, 16)))) == (16, 8, "png")
    for name, data in _bad_images().items():
        with pytest.raises(ValueError, match="corrupt|declares 60000x60000"):
            probe(data)
        with pytest.raises(ValueError):
            probe(data, decode=True)


@pytest.mark.parametrize("kind", ["png_corrupt_deflate", "png_60000", "jpg_60000", "bmp_60000"])
def test_adapt_reports_a_corrupt_or_huge_image_in_one_line_and_skips_it_with_skip_bad(tmp_path, kind):
    from tests.miniature_layouts import build_market

    base = build_market(tmp_path / "data")
    bad = base / "query" / "0005_c4s2_012345_00.jpg"  # the name keeps the Market suffix; the bytes are what they are
    bad.write_bytes(_bad_images()[kind])
    out = tmp_path / "m.h5"
    r = run_console("adapt", "market1501", "--root", base, "--out", out)
    assert r.returncode == 1
    _error_line(r, "1 bad items", "query/0005_c4s2_012345_00.jpg", "--skip-bad")
    assert "libpng" not in r.stderr  # validated without the decoder's own messages
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    r = run_console("adapt", "market1501", "--root", base, "--out", out, "--skip-bad")
    assert r.returncode == 0, r.stderr
    store = reidkit.open_store(out)
    assert [s["path"] for s in store.skipped] == ["query/0005_c4s2_012345_00.jpg"]
    assert "query/0005_c4s2_012345_00.jpg" not in set(store.image_paths)
    for i in range(len(store)):
        store.image(i)  # everything that went in decodes


# -- item: a decode error later names the store index and the source path -----------------------------------------
@pytest.fixture
def damaged_store(tmp_path):
    """A store (written by adapt) whose every image then got bytes no decoder accepts, as a damaged disk would."""
    import h5py
    import numpy as np

    path = make_store(tmp_path, ids=6, outfits=2)
    with h5py.File(path, "r+") as h5:
        for i in range(len(h5["images/bytes"])):
            h5["images/bytes"][i] = np.frombuffer(b"\x89PNG\r\n\x1a\n but nothing after the signature", np.uint8)
        sources = list(h5["images/path"].asstr()[()])
    return path, sources


def _names_a_stored_image(text, path, sources):
    """The message names 'image N (its source path) of store PATH'."""
    import re

    found = re.search(r"image (\d+) \(([^)]*)\) of store (\S+)", text)
    assert found and sources[int(found[1])] == found[2] and found[3].rstrip(":;") == str(path), text


def test_store_image_decode_error_names_index_and_path(damaged_store):
    from reidkit.store.imagecodec import ImageDecodeError

    path, sources = damaged_store
    with pytest.raises(ImageDecodeError) as err:
        reidkit.open_store(path).image(1)
    text = err.value.format_message()
    assert f"image 1 ({sources[1]}) of store {path}" in text and "\n" not in text


def test_decode_error_in_a_dataloader_worker_stays_one_line(damaged_store):
    import torch

    from reidkit.store.imagecodec import ImageDecodeError
    from reidkit.training.data import ImageListDataset

    path, sources = damaged_store
    loader = torch.utils.data.DataLoader(ImageListDataset(reidkit.open_store(path), [3], 32, 16), num_workers=1)
    with pytest.raises(ImageDecodeError) as err:
        next(iter(loader))
    text = err.value.format_message()
    assert text.startswith(f"cannot decode image 3 ({sources[3]}) of store {path}") and "\n" not in text, text
    assert "Caught" not in text


@pytest.mark.parametrize("command", ["train", "info", "expand"])
def test_commands_name_the_bad_image(damaged_store, tmp_path, command):
    path, sources = damaged_store
    args = {"train": ("train", path, "--batch", "2,2", "--height", "64", "--width", "32", "--num-workers", "1",
                      "--device", "cpu", "--backbone", "resnet18", "--weights", "none", "--amp", "none", "--epochs", "1",
                      "--out", tmp_path / "run"),
            "info": ("info", path, "--preview", tmp_path / "p.png"),
            "expand": ("expand", path, "--variants", "1", "--split", "train")}[command]
    r = run_console(*args, timeout=240)
    assert r.returncode == 1, r.stdout + r.stderr
    _names_a_stored_image(_error_line(r), path, sources)


# -- item: symlinks in a dataset folder --------------------------------------------------------------------------
@pytest.mark.parametrize("link", ["loop", "dangling"])
def test_broken_image_symlinks_are_reported_like_bad_files(tmp_path, link):
    from tests.miniature_layouts import build_market

    base = build_market(tmp_path / "data")
    name = base / "bounding_box_train" / "0009_c1s1_000100_01.jpg"
    if link == "loop":
        os.symlink(name.name, name)  # points at itself: ELOOP on open
    else:
        os.symlink("gone.jpg", name)
    out = tmp_path / "m.h5"
    r = run_console("adapt", "market1501", "--root", base, "--out", out)
    assert r.returncode == 1
    _error_line(r, "bounding_box_train/0009_c1s1_000100_01.jpg", "broken symlink", "--skip-bad")
    assert not out.exists()
    r = run_console("adapt", "market1501", "--root", base, "--out", out, "--skip-bad")
    assert r.returncode == 0, r.stderr
    skipped = reidkit.open_store(out).skipped
    assert [s["path"] for s in skipped] == ["bounding_box_train/0009_c1s1_000100_01.jpg"]
    assert "broken symlink" in skipped[0]["why"]


def test_a_folder_symlink_loop_is_a_bad_item_not_an_oserror(tmp_path):
    from tests.miniature_layouts import build_last

    base = build_last(tmp_path / "data")
    (base / "test" / "gallery" / "loop").symlink_to("loop")  # LaST's gallery has one folder per person
    out = tmp_path / "l.h5"
    r = run_console("adapt", "last", "--root", base, "--out", out)
    assert r.returncode == 1
    _error_line(r, "test/gallery/loop", "broken symlink", "--skip-bad")
    r = run_console("adapt", "last", "--root", base, "--out", out, "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert [s["path"] for s in reidkit.open_store(out).skipped] == ["test/gallery/loop"]


# -- item: Ctrl-C during adapt does not wait for the queued reads ------------------------------------------------
def test_interrupted_write_cancels_queued_reads(tmp_path):
    import threading
    import time as clock

    from reidkit.adapter import DatasetLayout, ImageRecord
    from reidkit.store.writer import BATCH, write_store
    from tests.miniature_layouts import image_bytes

    data, reads, lock = image_bytes("jpg"), [0], threading.Lock()

    def load():
        with lock:
            reads[0] += 1
        clock.sleep(0.01)  # a slow disk: the queue behind the interrupt is what must not be drained
        return data

    records = [ImageRecord(path=f"{i}.jpg", pid=i % 7, camera=0, splits=("train",), load=load) for i in range(8 * BATCH)]
    layout = DatasetLayout(dataset="slow", records=records, protocols=[])

    def progress(done):
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread, after the first batch

    with pytest.raises(KeyboardInterrupt):
        write_store(tmp_path / "s.h5", layout, progress=progress, workers=4)
    # Up to 4 x BATCH reads were queued when the interrupt came; only the few already running may finish.
    assert reads[0] < 2 * BATCH, reads[0]
    assert list(tmp_path.iterdir()) == []  # no store, no partial file, no lock file


# -- item: one writer at a time -----------------------------------------------------------------------------------
def test_writer_lock_refuses_a_second_holder_in_one_line_and_cleans_up(tmp_path):
    from reidkit.errors import StoreError
    from reidkit.store.lock import acquire, lock_path, writer_lock

    target = tmp_path / "w.h5"
    with writer_lock(target, f"store {target}"):
        assert lock_path(target).exists()
        with pytest.raises(StoreError, match=rf"store {target} is being written by another reidkit process \(pid {os.getpid()}\)"):
            acquire(target, f"store {target}")
        acquire(target, "run", key="shard-0-of-2").release()  # another key: another lock
    assert list(tmp_path.iterdir()) == []
    held = acquire(tmp_path / ("x" * 252 + ".h5"), "long")  # a long name still gets a lock file within 255 bytes
    assert len(held.path.name) <= 255
    held.release()


def test_adapt_force_while_another_process_writes_the_store_is_refused(tmp_path):
    """This test process holds the store's writer lock, as a running adapt does; adapt --force must not interleave."""
    from reidkit.store.lock import acquire

    out = tmp_path / "w.h5"
    world = ("--ids", "4", "--outfits", "2", "--cameras", "2", "--height", "32", "--width", "16")
    assert run_console("adapt", "synthetic", "--out", out, *world).returncode == 0
    before = out.read_bytes()
    held = acquire(out, f"store {out}")
    try:
        r = run_console("adapt", "synthetic", "--out", out, "--force", *world, "--seed", "7")
    finally:
        held.release()
    assert r.returncode == 1, r.stderr
    _error_line(r, f"store {out} is being written by another reidkit process (pid {os.getpid()})", "one writer at a time")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.h5"]
    r = run_console("adapt", "synthetic", "--out", out, "--force", *world, "--seed", "7")  # free again: it runs
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != before


def test_second_expand_of_the_same_run_shard_is_refused_while_one_runs(tmp_path):
    """This process holds the run shard's lock, as a running expand does: another expand of that run must refuse."""
    from reidkit.store.lock import acquire, lock_path

    store = make_store(tmp_path, ids=4, outfits=2)
    held = acquire(store, "a running expand", key="runs.r.all")
    try:
        r = run_console("expand", store, "--variants", "1", "--limit", "2", "--name", "r")
        other = run_console("expand", store, "--variants", "1", "--limit", "2", "--name", "other")  # another run: fine
    finally:
        held.release()
    assert r.returncode == 1, r.stderr
    _error_line(r, "generated run 'r' (chunks 'all')", "is being written by another reidkit process", "one writer")
    assert not (tmp_path / "world.h5.parts" / "runs" / "r").exists()
    assert other.returncode == 0, other.stderr
    r = run_console("expand", store, "--variants", "1", "--limit", "2", "--name", "r")
    assert r.returncode == 0, r.stderr
    assert len(reidkit.open_store(store).run("r")) == 2
    assert not lock_path(store, "runs.r.all").exists()


def test_ctrl_c_while_the_checkpoint_thread_starts_still_finishes_it(tmp_path, monkeypatch):
    # A Ctrl-C landing inside Thread.start() used to leave a half-started writer: the interrupted run's
    # writer.wait() then failed ("cannot join thread before it is started") or the interpreter exited under a
    # thread still writing (an abort). Now the interrupt is raised once the thread runs, and wait() finishes it.
    import threading

    from reidkit.training.checkpoint import CheckpointWriter

    start = threading.Thread.start

    def interrupted_start(self):
        os.kill(os.getpid(), signal.SIGINT)  # delivered while start() runs
        start(self)

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    writer, done = CheckpointWriter(), tmp_path / "written"
    with pytest.raises(KeyboardInterrupt):
        writer.submit(lambda: (time.sleep(0.2), done.write_text("ok")))
    writer.wait(raise_error=False)
    assert done.read_text() == "ok"


def test_training_takes_ctrl_c_at_a_step_boundary_and_a_second_one_at_once():
    # The trainer's Ctrl-C: a flag checked between steps (a KeyboardInterrupt raised at any bytecode can land in a
    # finaliser, be printed as 'ignored' and lost: a CI run kept training); a second Ctrl-C raises at once.
    from reidkit.interrupts import ctrl_c_at_safe_points

    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_at_safe_points() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs in the main thread at the next bytecode
        assert flag.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before
