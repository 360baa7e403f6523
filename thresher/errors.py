"""Errors that name the file, the line or row, and what is wrong."""

from __future__ import annotations

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


class RowError(ValueError):
    """One input row is bad; ``reason`` says what is wrong with it."""

    def __init__(self, category: str, reason: str, location: Location | None = None) -> None:
        self.category = category  # a short stable name for counting: malformed_json, unknown_role, ...
        self.reason = reason
        self.location = location
        super().__init__(f"{location}: {reason}" if location else reason)

    def at(self, location: Location) -> RowError:
        """The same error, placed at ``location``."""
        return RowError(self.category, self.reason, location)


class InputError(ValueError):
    """A whole input cannot be read (unknown format, unreadable file, missing path)."""
