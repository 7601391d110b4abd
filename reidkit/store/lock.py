"""One writer at a time: an exclusive, non-blocking lock per thing being written (a store, a run's shard).

The lock is ``flock`` on a hidden file beside the target (``.NAME.lock``, or a hashed name when NAME is long).
The kernel drops it when the holder exits, also after ``kill -9``, so a lock is never stale; the file is
removed on release, and a writer that locked a file another writer just removed tries again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reidkit.errors import StoreError

LOCK_SUFFIX = ".lock"
NAME_MAX = 255


def lock_path(target: Path, key: str = "") -> Path:
    """Where the lock of ``target`` (and ``key``: e.g. a run's shard tag) lives: beside it, hidden."""
    target = Path(target)
    name = f".{target.name}{'.' + key if key else ''}{LOCK_SUFFIX}"
    if len(os.fsencode(name)) > NAME_MAX:  # long names: a hash keeps it within the limit and unique
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:24]
        name = f".reidkit-{digest}{LOCK_SUFFIX}"
    return target.with_name(name)


class WriterLock:
    """Held from ``acquire`` until ``release`` (or the end of a ``with`` block, or the object's end)."""

    def __init__(self, path: Path, what: str):
        self.path, self.what, self.fd = Path(path), what, None

    def acquire(self, wait_message: str | None = None) -> "WriterLock":
        """Take the lock now, or refuse in one line; with ``wait_message``, wait for the holder instead (saying so once)."""
        import fcntl

        import errno

        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    return self  # a read-only place: nothing can be written there, so there is nothing to guard
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    from reidkit.errors import DiskFullError

                    raise DiskFullError(self.path) from None
                raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if wait_message is not None:
                    import sys

                    print(wait_message, file=sys.stderr, flush=True)
                    fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel hands it over when the holder releases or dies
                    wait_message = None
                else:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise StoreError(f"{self.what} is being written by another reidkit process{holder}; expected one writer "
                                     "at a time (wait for it to finish, or stop it)") from None
            except OSError as exc:
                os.close(fd)
                raise StoreError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file the previous holder removed while we waited for it
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self.fd = fd
                return self
            os.close(fd)
        raise StoreError(f"cannot lock {self.path}: it keeps being replaced")

    def release(self):
        if self.fd is not None:
            try:
                os.unlink(self.path)  # while still held: nobody locks a file that is about to go
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # interpreter shutdown: the kernel drops the lock anyway
            pass


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def writer_lock(target: Path, what: str, key: str = "") -> WriterLock:
    """An unacquired lock for ``target``; use ``with writer_lock(...):`` or ``.acquire()``."""
    return WriterLock(lock_path(target, key), what)


def acquire(target: Path, what: str, key: str = "") -> WriterLock:
    """Take the lock now; it is held while the returned object lives (or until ``release()``)."""
    return writer_lock(target, what, key).acquire()


def one_writer_per_run_shard(store_path: Path, name: str, tag: str) -> WriterLock:
    """The lock of one shard of a generated run (``.STORE.runs.NAME.TAG.lock`` beside the store): a second expand of
    the same run and shard is refused while one runs.

    Two writers of one run shard would both plan the same missing items and publish them twice. ``run_expand``
    takes it once the run's name is final (a generator's provenance digest included), so runs that differ only by
    it are written side by side, and shards of one run each take their own.
    """
    store = Path(store_path)
    return writer_lock(store, f"generated run '{name}' (chunks '{tag}') of {store}", key=f"runs.{name}.{tag}")


def one_writer_per_run_folder(out: Path):
    """The lock of a training run folder (``.NAME.lock`` beside it): a second ``train`` into the same ``--out`` is
    refused while one runs. Taken by the main process only (torchrun's other ranks write nothing there)."""
    import contextlib

    if os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    out = Path(out)
    blocker = next((p for p in out.absolute().parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():  # e.g. --out somefile/run: say so, not NotADirectoryError
        raise StoreError(f"cannot write the training run {out}: {blocker} is a file, not a folder "
                         "(expected --out inside a folder)")
    out.absolute().parent.mkdir(parents=True, exist_ok=True)  # the run makes it anyway; the lock lives there
    return writer_lock(out, f"training run {out}")


def one_writer_per_mask_set(store_path: Path, name: str):
    """The lock of a computed mask set (``.STORE.masks.NAME.lock`` beside the store): a second ``mask`` writing the
    same set is refused while one runs."""
    return writer_lock(Path(store_path), f"mask set '{name}' of {store_path}", key=f"masks.{name}")
