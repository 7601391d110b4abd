"""Wall and CPU time and peak extra resident memory of a block of code (for the evaluation benchmarks).

Peak memory is sampled from /proc/self/statm by a thread every millisecond and
reported relative to the resident size when the block starts.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


@contextlib.contextmanager
def measure(record: dict):
    """Fill record['seconds'] and record['peak_extra_gb'] for the with-block."""
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = time.perf_counter() - t0
        stop.set()
        thread.join()
        peak[0] = max(peak[0], rss_bytes())
        record["peak_extra_gb"] = (peak[0] - start_rss) / 2**30


def machine() -> str:
    import platform

    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


class Clock:
    """Accumulates wall (perf_counter) and CPU (process_time: all threads) seconds over repeated with-blocks."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._t = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._t[0]
        self.cpu += time.process_time() - self._t[1]

    def report(self) -> dict:
        return {"wall": self.wall, "cpu": self.cpu}
