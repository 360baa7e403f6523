"""Shared fixtures: the real data in ../shared/data (read in place, never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests run offline: a hub lookup would otherwise hang for over a minute before failing.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("THRESHER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; its absence is an error, not a reason to skip."""
    if not (SHARED_DATA / "SOURCES.md").is_file():
        pytest.fail(f"real test data not found at {SHARED_DATA} (set THRESHER_SHARED_DATA)")
    return SHARED_DATA
