"""Evidence in the text the user wrote: n-gram spans (word positions in normalized texts) mapped back
to character offsets in the original training row and the original benchmark text.

Normalization keeps word boundaries: a word is a run of characters that are neither punctuation,
symbols nor spaces, after option labels and LaTeX layout are dropped (``matching.matchable``). So the k-th
normalized word is the k-th such run of the original text outside any of those. Where the counts disagree (NFKC can split a character
such as "½" into several words) the offsets are left out rather than guessed.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from thresher.curation.normalize import normalize, words_of
from thresher.decontam.matching import LATEX_LAYOUT, OPTION_LABEL, PARTS, matchable

_WORD = re.compile(r"[^\W_]+")
_SKIPPED = (re.compile(OPTION_LABEL), re.compile(LATEX_LAYOUT))  # what ``matchable`` drops
CHAR_SPAN = pl.Struct({"part": pl.String, "train_start": pl.Int64, "train_end": pl.Int64, "bench_start": pl.Int64, "bench_end": pl.Int64})


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Character ``[start, end)`` of each word of ``text`` as the detectors count words."""
    labels = sorted(m.span() for pattern in _SKIPPED for m in pattern.finditer(text))
    out = []
    at = 0
    for m in _WORD.finditer(text):
        while at < len(labels) and labels[at][1] <= m.start():
            at += 1
        if at < len(labels) and labels[at][0] <= m.start() < labels[at][1]:
            continue
        out.append(m.span())
    return out


def _aligned(texts: list[str]) -> list[list[tuple[int, int]] | None]:
    counts = words_of(normalize(matchable(pl.Series(texts, dtype=pl.String)))).list.len().to_list()
    out: list[list[tuple[int, int]] | None] = []
    for text, count in zip(texts, counts, strict=True):
        offsets = word_offsets(text)
        out.append(offsets if len(offsets) == count else None)
    return out


def char_spans(matches: pl.DataFrame, items: pl.DataFrame) -> pl.Series:
    """For each match with word ``spans``: the same runs in characters of ``train_text`` and of the item's
    original part text (question, answer, or question and options joined by a newline); null when a text
    cannot be aligned."""
    empty = pl.Series("char_spans", [None] * matches.height, dtype=pl.List(CHAR_SPAN))
    if matches.is_empty() or "spans" not in matches.columns:
        return empty
    has = matches["spans"].list.len().fill_null(0) > 0
    if not has.any():
        return empty
    chosen = (
        matches.filter(has)
        .select("train_text", "item", "spans")
        .join(
            items.select("item", "question", "answer", pl.col("options") if "options" in items.columns else pl.lit("").alias("options")),
            on="item",
            how="left",
            maintain_order="left",
        )
    )
    train = _aligned(chosen["train_text"].fill_null("").to_list())
    part_texts = {
        "question": chosen["question"].fill_null("").to_list(),
        "answer": chosen["answer"].fill_null("").to_list(),
        "prompt": [
            q + "\n" + o for q, o in zip(chosen["question"].fill_null("").to_list(), chosen["options"].fill_null("").to_list(), strict=True)
        ],
    }
    bench = {part: _aligned(part_texts[part]) for part in PARTS}
    values: list[list[dict[str, Any]] | None] = []
    for i, spans in enumerate(chosen["spans"].to_list()):
        row: list[dict[str, Any]] = []
        for s in spans:
            t, b = train[i], bench[s["part"]][i]
            if t is None or b is None or s["train_end"] > len(t) or s["bench_end"] > len(b):
                break
            row.append(
                {
                    "part": s["part"],
                    "train_start": t[s["train_start"]][0],
                    "train_end": t[s["train_end"] - 1][1],
                    "bench_start": b[s["bench_start"]][0],
                    "bench_end": b[s["bench_end"] - 1][1],
                }
            )
        values.append(row if len(row) == len(spans) else None)
    filled = iter(values)
    return pl.Series("char_spans", [next(filled) if h else None for h in has.to_list()], dtype=pl.List(CHAR_SPAN))
