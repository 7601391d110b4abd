"""Progress bars with rate and ETA (rich), on stderr so that --json output stays clean."""
from __future__ import annotations

import contextlib


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
