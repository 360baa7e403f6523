"""Offline sentence-splitting data for the IFEval checks.

IFEval's sentence-count constraints split text with NLTK's Punkt model (``punkt_tab``), which NLTK
normally downloads from GitHub. When it is not installed, Thresher writes its own Punkt parameters
(a list of common English abbreviations, so "Dr. Smith" stays one sentence) into a folder NLTK
searches, so the checks run offline. ``python -m thresher.verifiers.punkt`` does it at install time.
"""

from __future__ import annotations

import os
from pathlib import Path

# Common English abbreviations that end in a period but rarely end a sentence (lower case, no final dot).
ABBREVIATIONS = (
    "mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e a.m p.m approx dept est fig inc ltd co corp no vol "
    "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k gen col lt sgt capt rev hon"
).split()


def data_dir() -> Path:
    """Where Thresher keeps NLTK data it writes: $THRESHER_NLTK_DATA, else ~/.cache/thresher/nltk_data."""
    return Path(os.environ.get("THRESHER_NLTK_DATA", Path.home() / ".cache" / "thresher" / "nltk_data"))


def ensure_punkt() -> str:
    """Make ``punkt_tab/english`` loadable; return where it was found or written."""
    import nltk

    folder = data_dir()
    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))
    try:
        return str(nltk.data.find("tokenizers/punkt_tab/english/"))
    except LookupError:
        pass
    target = folder / "tokenizers" / "punkt_tab" / "english"
    target.mkdir(parents=True, exist_ok=True)
    (target / "abbrev_types.txt").write_text("\n".join(ABBREVIATIONS) + "\n", encoding="utf-8")
    for name in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        (target / name).write_text("", encoding="utf-8")
    nltk.data.find("tokenizers/punkt_tab/english/")  # raises if NLTK still cannot see it
    return str(target)


if __name__ == "__main__":
    print(ensure_punkt())
