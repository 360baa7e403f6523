"""Compare two output trees (e.g. out/demo before and after a refactor, both run in the same folder): files that are
byte-identical, files that differ only in timing fields (seconds, tokens/s, peak memory), and files that really differ.

    python benchmarks/compare_runs.py OLD_OUT NEW_OUT
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

TIMING = re.compile(r"seconds|per_s|_s$|_share$|peak_memory|elapsed|time|wall", re.I)
SKIPPED = ("tensorboard", "cache")  # event files are named by time; caches are keyed by content, not compared


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("select name from sqlite_master where type = 'table' order by name")]
        return sorted(repr(row) for table in tables for row in db.execute(f"select * from {table}"))


def same_but_timing(a: Path, b: Path) -> bool:
    if a.suffix == ".json":
        return bool(_strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text())))
    if a.suffix == ".jsonl":
        return [_strip(json.loads(x)) for x in a.read_text().splitlines()] == [_strip(json.loads(x)) for x in b.read_text().splitlines()]
    if a.suffix == ".sqlite":
        return _rows(a) == _rows(b)
    if a.suffix == ".html":  # numbers with a decimal point or a thousands comma are timings or rates in these reports
        number = re.compile(r"\d[\d,]*\.\d+|\d{1,3}(,\d{3})+")
        return number.sub("N", a.read_text()) == number.sub("N", b.read_text())
    return False


def files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and not set(SKIPPED) & set(p.parts)}


def main() -> None:
    old, new = Path(sys.argv[1]), Path(sys.argv[2])
    found_old, found_new = files(old), files(new)
    identical = timing = 0
    for rel in sorted(found_old | found_new):
        if rel not in found_old or rel not in found_new:
            print(f"only in {'old' if rel in found_old else 'new'}: {rel}")
        elif (old / rel).read_bytes() == (new / rel).read_bytes():
            identical += 1
        elif same_but_timing(old / rel, new / rel):
            timing += 1
        else:
            print(f"differs: {rel}")
    print(
        f"{identical} byte-identical, {timing} differ only in timing fields, of {len(found_old | found_new)} files "
        f"({', '.join(SKIPPED)} folders skipped)"
    )


if __name__ == "__main__":
    main()
