"""What every command shares: consoles, exit codes, and turning bad input into a message and an exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from thresher.errors import InputError, RowError

out_console = Console()
err_console = Console(stderr=True)

EXIT_BAD_ROW = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    """A bad row exits 1 (fail mode: nothing written), a bad input or option exits 2, each with its message."""
    try:
        yield
    except RowError as e:
        fail(f"{e}\n(nothing was written; --on-error quarantine sets bad rows aside and goes on)", EXIT_BAD_ROW)
    except InputError as e:
        fail(str(e), EXIT_BAD_INPUT)
