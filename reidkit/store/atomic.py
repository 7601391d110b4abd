"""Atomic publication of files: write under a hidden partial name, fsync, rename.

HDF5 is not crash-safe when modified in place, so reidkit never modifies a
published file: every store and every addition to it is a new file that
appears under its final name only once complete.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from reidkit.errors import DiskFullError, is_disk_full

PARTIAL_MARK = ".partial-"


# File names are at most 255 bytes on the usual file systems. A partial name is "." + NAME + ".partial-" + PID:
# NAME gets what is left after the mark and a PID of up to 10 digits; a longer final name is cut (on a character
# boundary) and followed by "~" and a hash of the whole name, so two long names with a common start stay apart.
NAME_MAX = 255
_PID_DIGITS = 10
_HASH_CHARS = 12


def _partial_prefix(final: Path) -> str:
    """The partial name of ``final`` up to (not including) the writer's pid; within NAME_MAX with any pid."""
    import hashlib

    name = Path(final).name
    room = NAME_MAX - 1 - len(PARTIAL_MARK) - _PID_DIGITS
    raw = os.fsencode(name)
    if len(raw) > room:
        digest = hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
        head = raw[: room - 1 - _HASH_CHARS].decode("utf-8", "ignore")
        while len(os.fsencode(head)) > room - 1 - _HASH_CHARS:  # a name that is not UTF-8 (surrogate escapes)
            head = head[:-1]
        name = f"{head}~{digest}"
    return f".{name}{PARTIAL_MARK}"


def partial_path(final: Path) -> Path:
    final = Path(final)
    return final.with_name(f"{_partial_prefix(final)}{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a partial file or folder of a live writer is not stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(final: Path) -> int:
    """Delete partial files of ``final`` left by processes that no longer run (kill -9)."""
    final = Path(final)
    removed = 0
    if not final.parent.is_dir():
        return 0
    prefix = _partial_prefix(final)
    for leftover in final.parent.iterdir():  # not glob: a name may hold [ ] * ?
        if not leftover.name.startswith(prefix):
            continue
        suffix = leftover.name[len(prefix):]
        if suffix.isdigit() and not pid_alive(int(suffix)):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


# Room kept free beyond what a write needs: HDF5's own structures, and the file system's blocks.
SPACE_MARGIN = 1 << 20


def require_space(partial: Path, need: int, final: Path):
    """Refuse a write of about ``need`` bytes into ``partial`` (``DiskFullError`` naming ``final``) when its file
    system has less room: HDF5 may crash (SIGSEGV) instead of raising when a variable-length write hits a full disk."""
    import shutil

    try:
        usage = shutil.disk_usage(Path(partial).parent)
    except OSError:
        return
    if usage.total == 0:
        return  # a file system that reports no sizes (some FUSE mounts): let the write itself say
    if usage.free < need + need // 8 + SPACE_MARGIN:
        raise DiskFullError(final)


def fsync_path(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(partial: Path, final: Path, *, replace: bool = False):
    """Make ``partial`` visible as ``final`` in one step (same folder, so rename is atomic)."""
    fsync_path(partial)
    if replace:
        os.replace(partial, final)
    else:
        # link() fails if final exists, so two writers cannot both publish the same name.
        try:
            os.link(partial, final)
        except FileExistsError:
            Path(partial).unlink(missing_ok=True)
            raise
        Path(partial).unlink()
    fsync_path(Path(final).parent)


@contextlib.contextmanager
def atomic_output(final: Path, *, replace: bool = False):
    """Yield a partial path to write; publish it on success, delete it on any failure (a failure for lack of space
    becomes ``DiskFullError`` naming ``final``)."""
    final = Path(final)
    remove_stale_partials(final)
    partial = partial_path(final)
    try:
        yield partial
        publish(partial, final, replace=replace)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise DiskFullError(final) from None  # one line naming the file; the previous state is untouched
        raise


def write_json_atomic(final: Path, data, *, replace: bool = True):
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(final, replace=replace) as partial:
        partial.write_text(json.dumps(data, indent=2, sort_keys=True))
