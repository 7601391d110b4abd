"""Expensive shared preparation (a clothing bank, identity prompts) made by one process while the others wait.

Under torchrun/accelerate every rank of a sharded ``expand`` needs the same bank; without this each rank
would load the VLM and LLM and build it again. The first process to arrive takes the writer lock beside the
store (reidkit/store/lock.py) and builds; the others wait on it, then find the part published and read it.
The kernel drops the lock when its holder dies (also ``kill -9``), so a waiter then builds (resumably).
Needs a file system with working ``flock`` across the ranks (local disks; NFSv4 and Lustre with flock on).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from reidkit.store.lock import writer_lock


@contextlib.contextmanager
def built_once(target: Path, key: str, what: str):
    """Hold the build lock of ``key`` beside ``target`` for the block; tell the user once when waiting for it."""
    lock = writer_lock(Path(target), what, key="build." + key).acquire(
        wait_message=f"waiting for another process to build {what}")
    try:
        yield
    finally:
        lock.release()
