"""Real text for the curation benchmarks: answers and instructions from ../shared/data, cut or
joined into documents of about ``size`` characters."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("THRESHER_SHARED_DATA", REPO.parent / "shared" / "data"))


def paragraphs() -> list[str]:
    """Distinct real texts (LIMA, Alpaca, Code Alpaca answers and instructions)."""
    texts: list[str] = []
    for name in ("sft/lima.json", "sft/alpaca_en_demo.json", "sft/code_alpaca_2k.json", "sft/new_codealpaca.json"):
        path = SHARED / name
        if path.exists():
            for row in json.loads(path.read_text()):
                texts += [row.get("instruction", ""), row.get("output", "")]
    return sorted({t.strip() for t in texts if len(t.split()) >= 20})


def documents(count: int, size: int = 1000, seed: int = 0) -> list[str]:
    """``count`` documents of about ``size`` characters: random runs of real paragraphs."""
    rng = random.Random(seed)
    pool = paragraphs()
    docs = []
    for _ in range(count):
        parts, length = [], 0
        while length < size:
            text = pool[rng.randrange(len(pool))]
            parts.append(text)
            length += len(text) + 1
        docs.append(" ".join(parts)[:size])
    return docs
