"""Where Thresher keeps what it can compute again but should not have to: ``$THRESHER_CACHE_DIR``, else
``$XDG_CACHE_HOME/thresher``, else ``~/.cache/thresher`` (embeddings, reference log-probs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("THRESHER_CACHE_DIR"):
        return Path(os.environ["THRESHER_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "thresher"


def folder_megabytes(folder: Path) -> float:
    """The size of everything under ``folder`` (0 when it does not exist)."""
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 2) if folder.is_dir() else 0.0
