"""How long work shows itself, in a terminal and outside one (CI logs, ``| tee``, Slurm).

- In a terminal: rich progress bars on standard error.
- Elsewhere: no bars, no hard wrapping; progress as a plain timestamped line every ``THRESHER_LOG_EVERY`` seconds
  (default 10) and when a task ends: ``[12:03:44] training 120/3000 loss 1.234``.
- ``say(line)``: the one way a command reports a step; ``-q`` silences it, ``-v`` shows ``level=2`` lines too,
  ``--log-file PATH`` appends every line (timestamped, whatever the verbosity) to a file.
- Third-party progress bars (transformers, huggingface_hub, datasets, tqdm) are silenced outside a terminal and
  with ``-q``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def console(stderr: bool = False) -> Console:
    """A console; outside a terminal (CI logs, ``| tee``, Slurm) lines are not hard-wrapped at 80 columns, so paths
    stay whole and copyable (``COLUMNS`` still sets a width)."""
    found = Console(stderr=stderr)
    if not found.is_terminal and "COLUMNS" not in os.environ:
        found = Console(stderr=stderr, width=1000, soft_wrap=True)
    return found


stderr_console = console(stderr=True)


class _Settings:
    verbosity = 1  # 0: -q, 1: default, 2: -v
    log_file: Path | None = None


settings = _Settings()


def configure(verbosity: int = 1, log_file: Path | None = None) -> None:
    """Set the verbosity (0 quiet, 1 default, 2 verbose) and the log file; silence third-party progress bars
    outside a terminal or when quiet."""
    settings.verbosity, settings.log_file = verbosity, log_file
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    if verbosity == 0 or not stderr_console.is_terminal:
        silence_third_party()


def quiet_now() -> None:
    """A command's own ``-q``: as the global one (the log file, if any, still gets every line)."""
    configure(0, settings.log_file)


def silence_third_party() -> None:
    """No progress bars or info chatter from transformers, the hub client, datasets or tqdm."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for module, call in (("transformers.utils.logging", "disable_progress_bar"), ("datasets.utils.logging", "disable_progress_bar")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            getattr(loaded, call)()


def stamp() -> str:
    return time.strftime("[%H:%M:%S]")


def _to_file(line: str) -> None:
    if settings.log_file is not None:
        with settings.log_file.open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def say(line: str, level: int = 1) -> None:
    """Report a step on standard error (timestamped outside a terminal) unless the verbosity is below ``level``;
    the log file gets it either way."""
    _to_file(line)
    if settings.verbosity >= level:
        shown = line if stderr_console.is_terminal else f"{stamp()} {line}"
        stderr_console.print(shown, highlight=False, markup=False)


class PlainProgress:
    """The ``Progress`` interface as plain lines: one per task every ``every`` seconds, and one when it ends."""

    def __init__(self, every: float, quiet: bool) -> None:
        self.every, self.quiet = every, quiet
        self.tasks: dict[int, dict[str, Any]] = {}
        self.console = stderr_console

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            for task in self.tasks.values():
                if task["completed"] and task["shown"] != task["completed"]:
                    self._show(task)

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = {"description": description, "total": total, "completed": 0, "fields": fields, "last": 0.0, "shown": None}
        return task_id

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task["total"] = total
        if completed is not None:
            task["completed"] = completed
        if advance is not None:
            task["completed"] += advance
        if description is not None:
            task["description"] = description
        task["fields"].update(fields)
        now = time.monotonic()
        done = task["total"] is not None and task["completed"] >= task["total"]
        if now - task["last"] >= self.every or done:
            task["last"] = now
            self._show(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _show(self, task: dict[str, Any]) -> None:
        task["shown"] = task["completed"]
        count = f"{int(task['completed']):,}" + (f"/{int(task['total']):,}" if task["total"] else "")
        rate = str(task["fields"].get("rate") or "")
        line = f"{task['description']} {count} {rate}".strip()
        _to_file(line)
        if not self.quiet and settings.verbosity >= 1:
            stderr_console.print(f"{stamp()} {line}", highlight=False, markup=False)


def progress_bar(transient: bool = True, disable: bool = False) -> Any:
    """A progress display for long work (rows done, rate, elapsed): rich bars in a terminal, periodic plain lines
    elsewhere; ``disable`` silences it (a caller shows its own)."""
    if not stderr_console.is_terminal:
        return PlainProgress(float(os.environ.get("THRESHER_LOG_EVERY", "10")), quiet=disable)
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=stderr_console,
        transient=transient,
        disable=disable or settings.verbosity == 0,
    )
