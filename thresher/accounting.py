"""Accounting: every stage reports ``in = out + removed (with reasons) + quarantined`` as one type, ``Account``
(convert, dedup, decontamination, each mixing step, each synthesis output, each pipeline stage).

Rows that cannot be used are written, with their reason and location, to a
quarantine file (JSONL) instead of being lost.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from thresher.errors import AccountingError, RowError
from thresher.io.outputs import temp_beside


@dataclass
class Account:
    """Rows through one stage, over one input or in total: ``in = out + removed (by reason) + quarantined (by
    category)``. ``check()`` raises an ``AccountingError`` (a bug, never the user's) when that does not hold."""

    name: str
    rows_in: int = 0
    rows_out: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)  # by error category
    removed: Counter[str] = field(default_factory=Counter)  # by reason

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    @property
    def removed_total(self) -> int:
        return sum(self.removed.values())

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.rows_out + self.removed_total + self.quarantined_total

    def line(self) -> str:
        """``in N = out N + removed N + quarantined N`` (with reasons when there are any)."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((self.removed + self.quarantined).items()))
        text = f"in {self.rows_in} = out {self.rows_out} + removed {self.removed_total} + quarantined {self.quarantined_total}"
        return text + (f" ({reasons})" if reasons else "")

    def check(self) -> Account:
        """This account, if it balances; else an AccountingError naming the stage and the numbers."""
        if not self.balanced:
            raise AccountingError(f"{self.name}: row accounting does not balance: {self.as_dict()}")
        return self

    @classmethod
    def of(
        cls, name: str, rows_in: int, rows_out: int, removed: dict[str, int] | None = None, quarantined: dict[str, int] | None = None
    ) -> Account:
        """An account from counts (reasons with zero rows are dropped)."""
        return cls(
            name,
            int(rows_in),
            int(rows_out),
            Counter({k: int(v) for k, v in (quarantined or {}).items() if v}),
            Counter({k: int(v) for k, v in (removed or {}).items() if v}),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        """The account ``as_dict`` wrote (e.g. read back from a stage's summary)."""
        return cls.of(data.get("name", ""), data["in"], data["out"], data.get("removed_by_reason"), data.get("quarantined_by_reason"))

    @classmethod
    def summed(cls, name: str, parts: Iterable[Account]) -> Account:
        """One account over several (e.g. a stage's inputs)."""
        total = cls(name)
        for part in parts:
            total.add(part)
        return total

    def add(self, other: Account) -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.quarantined.update(other.quarantined)
        self.removed.update(other.removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.rows_in,
            "out": self.rows_out,
            "removed": self.removed_total,
            "removed_by_reason": dict(sorted(self.removed.items())),
            "quarantined": self.quarantined_total,
            "quarantined_by_reason": dict(sorted(self.quarantined.items())),
            "balanced": self.balanced,
        }


class QuarantineWriter:
    """Appends bad rows, with where they were and what is wrong, to a JSONL side file. Rows go to a
    temporary file beside it, renamed into place on ``close()``; with no rows, ``close()`` removes
    an older file of that name, so no stale quarantine is left beside a run that quarantined nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._file: Any = None
        self._tmp = temp_beside(self.path)

    def write(self, error: RowError, raw: Any) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._tmp, "wb")  # noqa: SIM115
        loc = error.location
        entry = {
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "row": loc.row if loc else None,
            "category": error.category,
            "reason": error.reason,
            "raw": raw,
        }
        self._file.write(orjson.dumps(entry, default=str) + b"\n")
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            os.replace(self._tmp, self.path)
        else:
            self.path.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop what was written; an older file of that name stays as it was."""
        if self._file is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
