"""Small helpers for tests: reading canonical outputs back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a canonical Parquet or JSONL output, as Python dicts."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def read_quarantine(path: str | Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]
