"""What every command shares: consoles, exit codes, and the one place an error a user can fix becomes a message
and an exit code (``Handled``, the root command group): a ``ThresherError`` anywhere under a command exits with its
code and its message, never a traceback."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from thresher.errors import EXIT_BAD_INPUT, EXIT_BAD_ROW, EXIT_CANNOT_GO_ON, ThresherError

out_console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class Handled(TyperGroup):
    """The root command group: runs the command and turns a ``ThresherError`` into its message and exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ThresherError as e:
            fail(f"{e}\n{e.hint}" if e.hint else str(e), e.exit_code)


__all__ = ["EXIT_BAD_INPUT", "EXIT_BAD_ROW", "EXIT_CANNOT_GO_ON", "Handled", "err_console", "fail", "out_console"]
