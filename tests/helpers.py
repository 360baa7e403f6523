"""Small helpers for tests and benchmarks, without side effects on import: where the real data lives, reading
canonical outputs back, and reference hash arithmetic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

M64 = (1 << 64) - 1

REPO = Path(__file__).resolve().parents[1]
# The shared data folder, read in place (never copied into the repo).
SHARED_DATA = Path(os.environ.get("THRESHER_SHARED_DATA", REPO.parent / "shared" / "data"))


def ref_fmix(h: int) -> int:
    """MurmurHash3's 64-bit finalizer on Python ints: the reference for ``ngrams.fmix64``."""
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a canonical Parquet or JSONL output, as Python dicts."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def read_quarantine(path: str | Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]


def thresher(*args: str, cwd: Path | None = None, one_core: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the command line as a real subprocess (``one_core``: pinned to one core, so every default worker
    count is 1)."""
    env = {**os.environ, "COLUMNS": "200"}
    pin = (lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) if one_core else None
    command = [sys.executable, "-m", "thresher.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=cwd, preexec_fn=pin)
