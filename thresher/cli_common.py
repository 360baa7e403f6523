"""What every command shares: consoles, exit codes, and the one place an error a user can fix becomes a message
and an exit code (``Handled``, the root command group): a ``ThresherError`` anywhere under a command exits with its
code and its message, never a traceback."""

from __future__ import annotations

import difflib
import errno
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from thresher.errors import EXIT_BAD_INPUT, EXIT_BAD_ROW, EXIT_CANNOT_GO_ON, InputError, ThresherError
from thresher.progress import console, stderr_console

out_console = console()
err_console = stderr_console  # one console on standard error: progress, steps and errors alike


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c != 0x0A}


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape sequences, bells, carriage returns) shown escaped."""
    return text.translate(_CONTROL)


def fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {escape(printable(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# errors of the disk or the system a user can run into: one line each, and whether the run can go on
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space or write elsewhere; no partial output was kept", EXIT_CANNOT_GO_ON),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write elsewhere; no partial output was kept", EXIT_CANNOT_GO_ON),
    errno.EFBIG: (
        "file too large (a file-size limit, ulimit -f, or the file system's)",
        "raise the limit or write elsewhere",
        EXIT_CANNOT_GO_ON,
    ),
    errno.EMFILE: ("too many open files", "raise ulimit -n", EXIT_CANNOT_GO_ON),
}


def os_error_message(e: OSError) -> tuple[str, int]:
    """One line for an OS error a user can cause, naming the path, and its exit code."""
    where = f"{e.filename}: " if e.filename else ""
    if e.errno in _OS_ERRORS:
        what, hint, code = _OS_ERRORS[e.errno]
        return f"{where}{what}; {hint}", code
    return f"{where}{e.strerror or e}", EXIT_BAD_INPUT


_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "path": "PATH", "file": "PATH", "directory": "DIR"}


def plain_metavars(command: Any) -> None:
    """Help a person reads at 80 columns: ``--ngram N``, ``--out PATH``, ``SPEC [KEY=VALUE]...`` (not typer's
    ``<list[str]>``), for ``command`` and everything under it."""
    for param in getattr(command, "params", []):
        if param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        if param.param_type_name == "argument":
            name = param.name.upper()
            shown = "[KEY=VALUE]..." if name == "OVERRIDES" else (f"{name}..." if param.nargs != 1 else name)
            param.metavar = shown
            # typer adds a type and braces to an argument's name; shown as click would
            param.display_type_rich = lambda ctx: None
            param.get_usage_pieces = lambda ctx, shown=shown: [shown]
            param._rich_display_name = lambda shown=shown: shown
            continue
        label = param.display_type(None).strip("<>") if hasattr(param, "display_type") else "TEXT"
        label = label.removeprefix("list[").removesuffix("]")
        param.metavar = _METAVARS.get(label, "[" + label + "]" if "|" in label else label.upper())
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)


class Handled(TyperGroup):
    """The root command group: runs the command and turns a ``ThresherError`` into its message and exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_metavars(self)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ThresherError as e:
            fail(f"{e}\n{e.hint}" if e.hint else str(e), e.exit_code)
        except OSError as e:
            fail(*os_error_message(e))
        except MemoryError:
            fail(
                "out of memory: an input may hold a row too large to load, or the run needs more memory than this machine "
                "has (try fewer --workers or smaller batches)",
                EXIT_CANNOT_GO_ON,
            )


__all__ = ["EXIT_BAD_INPUT", "EXIT_BAD_ROW", "EXIT_CANNOT_GO_ON", "Handled", "err_console", "fail", "out_console", "printable"]


ExecutorOption = Annotated[
    str | None, typer.Option(help="Run the heavy stages on datatrove's executors: local, or ray (a cluster); same outputs.")
]
TasksOption = Annotated[int, typer.Option(help="With --executor: tasks (and Ray CPUs when Ray starts here).")]
RayAddressOption = Annotated[str | None, typer.Option(help="With --executor ray: a running cluster's address (default: start one).")]


def executor_of(kind: str | None, tasks: int, ray_address: str | None) -> Any:
    """The ``thresher.executors.Executor`` the options ask for, or None (a bad value: a one-line InputError)."""
    if kind is None:
        return None
    from thresher.executors import Executor

    return Executor(kind, tasks, ray_address)  # type: ignore[arg-type]


OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Overrides of the file's settings: KEY=VALUE with dotted keys (optim.lr=1e-5, sources.0.amount.count=500); "
        "--KEY VALUE is the same.",
        show_default=False,
    ),
]


def checked_overrides(ctx: typer.Context, overrides: list[str] | None) -> list[str]:
    """The overrides, after refusing a mistyped option of the command itself (``--overwrit``: did you mean
    ``--overwrite``?), which would otherwise read as a setting of the file."""
    options = [o for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("--")]
    for item in overrides or []:
        if item.startswith("--"):
            key = item[2:].partition("=")[0]
            near = difflib.get_close_matches(f"--{key}", options, n=1, cutoff=0.8)
            if near:
                raise InputError(f"no such option --{key}; did you mean {near[0]}? (a setting of the file is KEY=VALUE or --KEY VALUE)")
    return list(overrides or [])


# commands that take a spec and overrides: an option the command does not have (--max_steps 3) is an override
OVERRIDE_CONTEXT = {"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}


def show_config(model: str) -> Any:
    """The callback of ``--help-config``: print every key of the file ``model`` ("module:Class") reads, with its
    type, default and meaning, and exit."""

    def show(value: bool) -> None:
        if value:
            import importlib

            from thresher.docs import config_help

            module, name = model.split(":")
            out_console.print(config_help(getattr(importlib.import_module(module), name)), highlight=False, markup=False)
            raise typer.Exit()

    return show


HELP_CONFIG = "List every key of the file (dotted, with type, default and meaning) and exit."
