"""Progress bars with rate and ETA, on stderr so that --json output stays clean.

On a terminal: rich's live bar. Written to a file or a pipe (a log, ``2>&1 |
tee``, a batch job): plain lines instead, one at most every
``$REIDKIT_PROGRESS_SECONDS`` seconds (default 5) plus a final one, e.g.
``expand r: 480/960 img (50%), 12.3 img/s, elapsed 0:00:39, ETA 0:00:39, 3 rejected``.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

PLAIN_INTERVAL_S = 5.0  # seconds between plain progress lines (REIDKIT_PROGRESS_SECONDS overrides)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PlainProgress:
    """Progress as plain text lines on stderr, for logs and pipes: no cursor moves, no bar characters."""

    def __init__(self, total, description, unit, interval=None, stream=None):
        self.total, self.description, self.unit = total, description, unit
        if interval is None:
            try:
                interval = float(os.environ.get("REIDKIT_PROGRESS_SECONDS", PLAIN_INTERVAL_S))
            except ValueError:
                interval = PLAIN_INTERVAL_S
        self.interval = max(0.0, interval)
        self.stream = stream
        self.completed, self.status = 0, ""
        self.start = self.last = time.monotonic()
        self.shown = None  # what the last line said (completed, status): a final line repeats nothing

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.completed / elapsed if elapsed > 0 and self.completed else 0.0
        done = f"{self.completed}/{self.total}" if self.total else str(self.completed)
        parts = [f"{self.description}: {done} {self.unit}" + (f" ({self.completed / self.total:.0%})" if self.total else ""),
                 f"{rate:,.1f} {self.unit}/s" if rate else f"- {self.unit}/s", f"elapsed {_clock(elapsed)}"]
        if self.total and rate and self.completed < self.total:
            parts.append(f"ETA {_clock((self.total - self.completed) / rate)}")
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)

    def emit(self, suffix=""):
        print(self.line() + suffix, file=self.stream or sys.stderr, flush=True)
        self.shown = (self.completed, self.status)
        self.last = time.monotonic()

    def update(self, completed=None, advance=None, status=None):
        if completed is not None:
            self.completed = int(completed)
        if advance is not None:
            self.completed += int(advance)
        if status is not None:
            self.status = str(status)
        if time.monotonic() - self.last >= self.interval and not (self.total and self.completed >= self.total):
            self.emit()  # the last step is left to the final line

    def finish(self, stopped=False):
        if stopped or self.shown != (self.completed, self.status):
            self.emit(" (stopped)" if stopped else "")


def _columns(unit):
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")

    return [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, unit: str = "img"):
    """Yield ``update(completed=None, advance=None, status=None)``."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    if not console.is_terminal:  # a file or a pipe: plain lines, not a live bar's cursor art
        if total == 0:
            yield lambda completed=None, advance=None, status=None: None
            return
        plain = PlainProgress(total, description, unit)
        try:
            yield plain.update
        except BaseException:
            plain.finish(stopped=True)
            raise
        plain.finish()
        return
    with Progress(*_columns(unit), console=console, transient=False, disable=total == 0) as progress:
        task = progress.add_task(description, total=total, status="")

        def update(completed=None, advance=None, status=None):
            kwargs = {}
            if completed is not None:
                kwargs["completed"] = completed
            if advance is not None:
                kwargs["advance"] = advance
            if status is not None:
                kwargs["status"] = status
            progress.update(task, **kwargs)

        yield update
