"""Expensive shared preparation (a clothing bank, identity prompts) made by one process while the others wait.

Under torchrun/accelerate every rank of a sharded ``expand`` needs the same bank; without this each rank
would load the VLM and LLM and build it again. The first process to arrive takes a blocking ``flock``
beside the store and builds; the others block on it, then find the part published and read it.
The kernel drops the lock when its holder dies (also ``kill -9``), so a waiter then builds (resumably).
Needs a file system with working ``flock`` across the ranks (local disks; NFSv4 and Lustre with flock on).
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path

from reidkit.store.lock import lock_path


@contextlib.contextmanager
def built_once(target: Path, key: str, what: str):
    """Hold the build lock of ``key`` beside ``target`` for the block; tell the user once when waiting for it."""
    import fcntl

    path = lock_path(Path(target), "build." + key)
    fd = None
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                yield  # a read-only place: nothing will be written there, nothing to coordinate
                return
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process to build {what}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file the previous holder removed while we waited
            break
        os.close(fd)
        fd = None
    if fd is None:
        raise OSError(f"cannot lock {path}: it keeps being replaced")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still held: a later arrival creates a fresh file
        os.close(fd)
