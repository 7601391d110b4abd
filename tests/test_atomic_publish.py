"""A store appears only when complete: killed or interrupted adapts leave nothing at --out."""
import signal
import subprocess
import time

import pytest

import reidkit
from tests.helpers import reidkit_exe

BIG = ["--ids", "160", "--outfits", "3", "--cameras", "4", "--shots", "2"]


def _start_adapt(out):
    return subprocess.Popen([reidkit_exe(), "adapt", "synthetic", "--out", str(out), *BIG], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_partial(folder, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(folder.glob(".*partial-*")):
            time.sleep(0.5)  # let it write a while
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_adapt_leaves_no_store(tmp_path, sig):
    out = tmp_path / "world.h5"
    proc = _start_adapt(out)
    assert _wait_for_partial(tmp_path, proc), "adapt finished before it could be interrupted"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert not out.exists()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Interrupted" in stderr and "Traceback" not in stderr
        assert not list(tmp_path.glob(".*partial-*")), "Ctrl-C must clean up its partial file"
    # A rerun succeeds, and cleans what a kill -9 left behind.
    done = subprocess.run([reidkit_exe(), "adapt", "synthetic", "--out", str(out), "--ids", "6"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(reidkit.open_store(out)) > 0
    assert not list(tmp_path.glob(".*partial-*"))
