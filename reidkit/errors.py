"""Errors a user can cause: one clear line, non-zero exit, no traceback."""
import click


class ReidkitError(click.ClickException):
    """A failure caused by input or environment; printed as one line, exit code 1."""

    exit_code = 1

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class StoreError(ReidkitError):
    """A store is missing, unreadable, or of another schema version."""


class PluginError(ReidkitError):
    """A plugin name is unknown, or two plugins claim the same name."""


class DatasetLayoutError(ReidkitError):
    """A benchmark folder does not have the expected layout or holds bad files."""


# -- disk full: a write that fails for lack of space is one line naming what was being written --------------------
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from or during) is a write that failed for lack of space:
    errno ENOSPC or EDQUOT, or that text in a library's message (h5py puts the errno inside its own)."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(exc).lower() for text in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class DiskFullError(ReidkitError):
    """A write failed for lack of space; what was written before is intact (the CLI adds what to do next)."""

    def __init__(self, path):
        self.path = path
        super().__init__(f"no space left on device writing {path}")


def disk_full_path(exc: BaseException, default=None):
    """What a disk-full error was writing: the OSError's file name, the name in h5py's message, else ``default``."""
    import re

    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return exc.path
        if getattr(exc, "filename", None):
            return exc.filename
        found = re.search(r"filename = '([^']+)'", str(exc))
        if found:
            return found.group(1)
        exc = exc.__cause__ or exc.__context__
    return default


def _torch_writer_failed_for_space(exc: BaseException, path) -> bool:
    """torch.save reports a full disk as a RuntimeError of its zip writer, without errno: taken as disk full when
    the file system of ``path`` is (nearly) full right after it."""
    import shutil
    from pathlib import Path

    text = str(exc)
    if not isinstance(exc, RuntimeError) or not ("PytorchStreamWriter" in text or "inline_container" in text):
        return False
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free < 64 * 2**20
    except OSError:
        return False


class disk_full_names:
    """``with disk_full_names(out):`` turns a write that fails for lack of space into ``DiskFullError`` (naming the
    file when the error does, else ``out``); any other error passes through unchanged."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, DiskFullError) or not isinstance(exc, Exception):
            return False
        if is_disk_full(exc) or _torch_writer_failed_for_space(exc, self.path):
            raise DiskFullError(disk_full_path(exc, self.path)) from None
        return False


class Preempted(ReidkitError):
    """Training stopped by SIGTERM (a batch scheduler ending the job) after writing a checkpoint at the step it
    reached; the message is the one resume line. Exit status 143, as a process ended by SIGTERM."""

    exit_code = 143
