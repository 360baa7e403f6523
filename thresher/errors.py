"""Errors that name the file, the line or row, and what is wrong: one base, ``ThresherError``, whose exit code
the command line uses (a bad row 1, a bad input, spec or option 2, a run that cannot go on 3). The CLI handles
them in one place (``cli_common.Handled``): a message, never a traceback. Anything else reaching the user is a bug."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a row came from: file, 0-based row index, and 1-based line when the file has lines."""

    file: str
    row: int
    line: int | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file}: row {self.row}"


EXIT_BAD_ROW = 1
EXIT_BAD_INPUT = 2
EXIT_CANNOT_GO_ON = 3


class ThresherError(Exception):
    """A mistake the user can fix (or a run that cannot go on): the message says where and what."""

    exit_code = EXIT_BAD_INPUT
    hint = ""  # a line the command line adds under the message


class RowError(ThresherError, ValueError):
    """One input row is bad; ``reason`` says what is wrong with it."""

    exit_code = EXIT_BAD_ROW
    hint = "(nothing was written; --on-error quarantine sets bad rows aside and goes on)"

    def __init__(self, category: str, reason: str, location: Location | None = None) -> None:
        self.category = category  # a short stable name for counting: malformed_json, unknown_role, ...
        self.reason = reason
        self.location = location
        super().__init__(f"{location}: {reason}" if location else reason)

    def at(self, location: Location) -> RowError:
        """The same error, placed at ``location``."""
        return RowError(self.category, self.reason, location)


class InputError(ThresherError, ValueError):
    """A whole input cannot be read (unknown format, unreadable file, missing path), or a setting cannot be used."""


class SpecError(InputError):
    """A spec that cannot be used; the message names the file, the line and the field."""


class AccountingError(ThresherError, AssertionError):
    """A stage that lost or invented rows: a bug, never a user error; says so loudly."""

    exit_code = EXIT_CANNOT_GO_ON


class ExternalError(ThresherError, RuntimeError):
    """Something outside Thresher is missing or refused (a server, a GPU, an isolation tool)."""


def closest(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'CLOSEST'?`` for the known name closest to ``name``, or nothing: every "unknown NAME"
    message (options, spec fields, stage kinds, benchmarks, commands) says it the same way."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
