"""What kind of leak each match is, from evidence the report shows.

- ``verbatim``: the row holds 90% or more of the item (weighted coverage), with the item's numbers, and the item's
  question appears in the row as is (case and whitespace aside);
- ``reformatted``: the same, but only after normalization (layout, LaTeX spacing and macros, option labels, case);
- ``numbers_changed``: the item's template with other numbers: a number inside the shared stretch of the item is
  missing from the row (the class note says which);
- ``partial``: a distinctive part of the item, below 90%;
- ``rephrase``: found by meaning (the embedding, rephrase and judge methods);
- ``shared_boilerplate``: the overlap is confined to shared text — n-grams in several benchmark items or in many
  training rows (``NgramConfig.shared_*``: figure code, instructions, answer-format lines) — so the score over the
  item's other words (``distinct_score``) stays under the method's threshold. Never flagged by itself.

Which classes flag a row is the audit's policy (``AuditConfig.flag``, ``--flag``); by default all but boilerplate.
"""

from __future__ import annotations

import re

import polars as pl

CLASSES = ("verbatim", "reformatted", "numbers_changed", "partial", "rephrase", "shared_boilerplate")
DEFAULT_FLAG = ("verbatim", "reformatted", "numbers_changed", "partial", "rephrase")
BY_MEANING = ("embedding", "rephrase", "judge")
BANDS = (("0.9-1", 0.9, 2.0), ("0.7-0.9", 0.7, 0.9), ("below 0.7", 0.0, 0.7))  # score bands the summary and report count by
WHOLE = 0.9  # coverage from which a literal match holds the item whole
_NUMBER = r"\d+(?:\.\d+)?"


def _has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)  # "8x" in "x^2 + 8x" is a number too


def _compact(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_lowercase().str.replace_all(r"\s+", "")


def missing_numbers(matches: pl.DataFrame, words: list[pl.Series] | None) -> pl.Series:
    """Per match, the item's numbers (question words with a digit) inside the stretch its spans cover, or next to
    it, but not covered themselves (n-gram matches), or, without spans, the item's question numbers that do not
    occur in the row at all; joined by
    ", ", empty when none. ``matches`` needs ``item``, ``spans``, ``train_text`` and ``question``."""
    out: list[str] = []
    question_words = words[0] if words is not None else None
    prompt_words = words[2] if words is not None else None
    rows = matches.select("item", "spans", "train_text", "question").iter_rows()
    for item, spans, train_text, question in rows:
        found: list[str] = []
        spans = [s for s in (spans or []) if s["part"] in ("question", "prompt")]
        if spans and question_words is not None and prompt_words is not None:
            part = spans[0]["part"]
            chosen = [s for s in spans if s["part"] == part]
            item_words = (question_words if part == "question" else prompt_words)[item]
            covered: set[int] = set()
            for s in chosen:
                covered.update(range(s["bench_start"], s["bench_end"]))
            # the shared stretch and one word either side (a changed first or last number ends the run there)
            lo = max(min(s["bench_start"] for s in chosen) - 1, 0)
            hi = min(max(s["bench_end"] for s in chosen) + 1, len(item_words))
            found = [item_words[p] for p in range(lo, hi) if p not in covered and _has_digit(item_words[p])]
        elif not spans:
            have = set(re.findall(_NUMBER, train_text or ""))
            found = [n for n in dict.fromkeys(re.findall(_NUMBER, question or "")) if n not in have]
        out.append(", ".join(dict.fromkeys(found)))
    return pl.Series("missing_numbers", out, dtype=pl.String)


def classify(matches: pl.DataFrame, words: list[pl.Series] | None) -> pl.DataFrame:
    """``matches`` (enriched: ``method``, ``score``, ``threshold``, ``question_score``, ``distinct_score``,
    ``spans``, ``train_text``, ``question``) with ``match_class`` and ``class_note``."""
    missing = missing_numbers(matches, words)
    whole = pl.coalesce("question_score", "score") >= WHOLE
    boilerplate = pl.col("distinct_score").is_not_null() & (pl.col("distinct_score") < pl.min_horizontal("score", "threshold"))
    as_is = _compact(pl.col("train_text").fill_null("")).str.contains(_compact(pl.col("question").fill_null("")), literal=True)
    classed = matches.with_columns(missing).with_columns(
        pl.when(pl.col("method").is_in(BY_MEANING))
        .then(pl.lit("rephrase"))
        .when(boilerplate)
        .then(pl.lit("shared_boilerplate"))
        .when(pl.col("missing_numbers") != "")
        .then(pl.lit("numbers_changed"))
        .when(whole & as_is)
        .then(pl.lit("verbatim"))
        .when(whole)
        .then(pl.lit("reformatted"))
        .otherwise(pl.lit("partial"))
        .alias("match_class")
    )
    # a literal match of another method on a pair the n-gram method calls shared text is shared text too
    shared_pairs = classed.filter((pl.col("method") == "ngram") & (pl.col("match_class") == "shared_boilerplate")).select(
        "row", "item", pl.lit(True).alias("_shared")
    )
    classed = classed.join(shared_pairs, on=["row", "item"], how="left").with_columns(
        pl.when(pl.col("_shared").fill_null(False) & ~pl.col("method").is_in(BY_MEANING))
        .then(pl.lit("shared_boilerplate"))
        .otherwise("match_class")
        .alias("match_class")
    )
    note = (
        pl.when(pl.col("match_class") == "numbers_changed")
        .then(pl.format("item numbers not in the row: {}", "missing_numbers"))
        .when(pl.col("match_class") == "shared_boilerplate")
        .then(pl.format("score over the item's unshared words: {}", pl.col("distinct_score").round(2)))
        .otherwise(pl.lit(""))
        .alias("class_note")
    )
    return classed.with_columns(note).drop("missing_numbers", "_shared")
