"""Content hashes of inputs, and a store of stage results keyed by the hash of everything they depend on.

A stage's key chains the key of the stage before it with its own settings, so a changed step
recomputes that step and the ones after it, and nothing before it.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import polars as pl

import thresher


@functools.cache
def code_hash() -> str:
    """A hash of Thresher's own source files: results cached by other code are never read back."""
    root = Path(thresher.__file__).parent
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def key_of(*parts: Any) -> str:
    """A stable key of JSON-able parts and of the code that computes them."""
    data = orjson.dumps([thresher.__version__, code_hash(), *parts], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _read(path: Path) -> Any:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".json":
        return orjson.loads(path.read_bytes())
    return path.read_bytes()


class StageStore:
    """Frames (.parquet), JSON (.json) and bytes saved under a key; a missing or unreadable entry is simply not found."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, name: str) -> Path:
        return self.root / key[:2] / f"{key}.{name}"

    def get(self, key: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        paths = {n: self._path(key, n) for n in names}
        if not all(p.exists() for p in paths.values()):
            return None
        try:
            return {n: _read(p) for n, p in paths.items()}
        except Exception:  # a half-written or foreign file: recompute
            return None

    def put(self, key: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            path = self._path(key, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            if isinstance(value, pl.DataFrame):
                value.write_parquet(tmp)
            elif isinstance(value, bytes):
                tmp.write_bytes(value)
            else:
                tmp.write_bytes(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
            tmp.replace(path)  # readers never see a partial file
