"""Rich progress bars on standard error, quiet when it is not a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

stderr_console = Console(stderr=True)


def progress_bar(transient: bool = True, disable: bool = False) -> Progress:
    """A progress display for long work (rows done, rate, elapsed); ``disable`` silences it (a caller shows its own)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=stderr_console,
        transient=transient,
        disable=disable or not stderr_console.is_terminal,
    )
