"""The ``rephrase`` method: embedding candidates re-scored with evidence that survives rephrasing.

A rephrased item keeps what makes it *that* problem: its numbers (with their multiplicities), its rare
words and names, often its answer. A different problem that merely looks alike (GSM8K train next to
GSM8K test) shares the topic words and the embedding, not those. For each embedding candidate pair
(cosine from ``candidates_from`` on) the method computes

- ``cosine``: the embedding similarity (best training turn against the item);
- ``shared_numbers``: the share of the item's numbers, counted with multiplicity, found in the row;
- ``has_numbers``: whether the item has numbers at all;
- ``rare_words``: the share of the item's words present in the row, each weighted by its rarity among
  the audited items (``log(1 + items / items-with-the-word)``);
- ``answer_in_row``: whether the item's short answer (a final number, a short option) appears in the row;
- ``length_ratio``: log of the row's words over the item's;
- ``code_overlap``: for an item that defines a function, the share of its canonical token 4-grams (identifiers,
  numbers and strings anonymized, docstrings dropped: ``code_shape``) the row holds — what survives renaming;

and a logistic model turns them into the probability that the row holds the item. Its coefficients
were fitted by ``benchmarks/fit_rephrase.py`` on the LLM Decontaminator's dev rephrase sets (GSM8K,
HumanEval, MMLU; even items) with GSM8K train, LIMA, Alpaca and Code Alpaca rows as negatives, and checked on
the odd items; the features are stored with each match as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from thresher.curation.normalize import normalize, words_of
from thresher.decontam.code_shape import code_overlap
from thresher.decontam.matching import word_rarity
from thresher.errors import InputError

FEATURES = ("cosine", "shared_numbers", "has_numbers", "rare_words", "answer_in_row", "length_ratio", "code_overlap")
# fitted by benchmarks/fit_rephrase.py (see RESULTS.md); the last one is the intercept
COEFFICIENTS = (26.7796, 2.7237, -4.2518, 7.6431, 2.2377, -2.9930, 7.7396, -24.1383)
_NUMBER = r"\d+(?:\.\d+)?"


@dataclass(frozen=True)
class RephraseConfig:
    threshold: float = 0.5  # probability from which a pair is contamination
    candidates_from: float = 0.6  # embedding similarity from which a pair is re-scored

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0 or not 0.0 <= self.candidates_from <= 1.0:
            raise InputError(f"rephrase threshold must be in (0, 1] and candidates_from in [0, 1], got {self}")


def item_rarity(items: pl.DataFrame) -> pl.DataFrame:
    """``word`` → ``rarity`` over the items' questions (with options)."""
    texts = items.select(
        pl.concat_str(
            [pl.col("question"), pl.col("options") if "options" in items.columns else pl.lit("")], separator="\n", ignore_nulls=True
        )
    )["question"]
    owners = pl.DataFrame({"item": np.arange(items.height), "word": words_of(normalize(texts))}).explode("word").drop_nulls()
    return word_rarity(owners, items.height)


def short_answer(answers: pl.Series) -> pl.Series:
    """The part of an answer that a rephrasing keeps: a final "#### N", else the answer itself when it is
    at most five words (an option's text, a number); else ""."""
    final = answers.str.extract(r"####\s*([-\d.,/]+)\s*$", 1).str.replace_all(",", "")
    short = pl.when(answers.str.split(" ").list.len() <= 5).then(answers).otherwise(pl.lit(""))
    frame = pl.DataFrame({"final": final, "answer": answers})
    return frame.select(pl.coalesce(pl.col("final"), short.fill_null(""))).to_series().fill_null("").alias("short_answer")


def features(pairs: pl.DataFrame, rarity: pl.DataFrame) -> pl.DataFrame:
    """Feature columns for (``train_text``, ``question``, ``short_answer``, ``cosine``[, ``answer``]) pairs; with
    ``answer``, a code item's canonical solution counts in ``code_overlap`` too."""
    pid = pairs.with_row_index("pair").with_columns(pl.col("pair").cast(pl.Int64))
    # numbers, with multiplicity
    item_nums = pid.select("pair", pl.col("question").str.extract_all(_NUMBER).alias("n")).explode("n").drop_nulls()
    row_nums = pid.select("pair", pl.col("train_text").str.extract_all(_NUMBER).alias("n")).explode("n").drop_nulls()
    item_counts = item_nums.group_by("pair", "n").agg(pl.len().alias("a"))
    row_counts = row_nums.group_by("pair", "n").agg(pl.len().alias("b"))
    shared = (
        item_counts.join(row_counts, on=["pair", "n"], how="left")
        .with_columns(pl.col("b").fill_null(0))
        .group_by("pair")
        .agg((pl.min_horizontal("a", "b").sum() / pl.col("a").sum()).alias("shared_numbers"))
    )
    # rare words
    normalized_row = normalize(pid["train_text"])
    item_words = pid.select("pair", words_of(normalize(pid["question"])).alias("word")).explode("word").drop_nulls().unique()
    row_words = pid.select("pair", words_of(normalized_row).alias("word")).explode("word").drop_nulls().unique()
    present = row_words.with_columns(pl.lit(True).alias("present"))
    weighted = (
        item_words.join(rarity, on="word", how="left")
        .with_columns(pl.col("rarity").fill_null(float(np.log1p(1e6))))
        .join(present, on=["pair", "word"], how="left")
        .group_by("pair")
        .agg(
            (pl.col("rarity").filter(pl.col("present").fill_null(False)).sum() / pl.col("rarity").sum()).alias("rare_words"),
            pl.len().alias("item_words"),
        )
    )
    row_len = row_words.group_by("pair").agg(pl.len().alias("row_words"))
    answer = normalize(pid["short_answer"])
    out = (
        pid.select("pair", "cosine")
        .join(shared, on="pair", how="left")
        .join(weighted, on="pair", how="left")
        .join(row_len, on="pair", how="left")
        .sort("pair")
        .with_columns(
            pl.col("shared_numbers").fill_null(0.0),
            pl.col("pair").is_in(item_nums["pair"].unique().implode()).cast(pl.Float64).alias("has_numbers"),
            pl.col("rare_words").fill_null(0.0),
            pl.DataFrame({"row": normalized_row, "answer": answer})
            .select(
                ((pl.col("answer") != "") & (" " + pl.col("row") + " ").str.contains(" " + pl.col("answer") + " ", literal=True))
                .cast(pl.Float64)
                .alias("answer_in_row")
            )
            .to_series(),
            ((pl.col("row_words").fill_null(0) + 1) / (pl.col("item_words").fill_null(0) + 1)).log().clip(-3, 3).alias("length_ratio"),
        )
    )
    code = pid["question"] + ("\n" + pid["answer"].fill_null("") if "answer" in pid.columns else "")
    overlap = [code_overlap(row or "", item or "") for row, item in zip(pid["train_text"].to_list(), code.to_list(), strict=True)]
    return out.with_columns(pl.Series("code_overlap", overlap, dtype=pl.Float64)).select(*FEATURES)


def probability(frame: pl.DataFrame, coefficients: tuple[float, ...] = COEFFICIENTS) -> np.ndarray:
    x = frame.select(FEATURES).to_numpy().astype(np.float64)
    z = x @ np.asarray(coefficients[:-1]) + coefficients[-1]
    return 1.0 / (1.0 + np.exp(-z))


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method (weights then intercept); ``l2`` keeps separable data finite."""
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - y) + l2 * np.r_[w[:-1], 0.0]
        hess = (design * (p * (1 - p))[:, None]).T @ design + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def rephrase_matches(
    matches: pl.DataFrame, items: pl.DataFrame, ledger: pl.DataFrame, config: RephraseConfig
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ``rephrase`` matches of embedding candidates from ``candidates_from`` on, and their features as
    readable evidence (``row``, ``item``, ``method``, ``features``)."""
    candidates = matches.filter((pl.col("method") == "embedding") & (pl.col("score") >= config.candidates_from))
    options = pl.col("options") if "options" in items.columns else pl.lit("").alias("options")
    pairs = (
        candidates.join(ledger.select("row", "train_text"), on="row")
        .join(items.select("item", "question", "answer", options), on="item")
        .with_columns(pl.col("score").alias("cosine"))
    )
    pairs = pairs.with_columns(short_answer(pairs["answer"]))
    x = features(pairs.select("train_text", "question", "short_answer", "cosine", "answer"), item_rarity(items))
    p = probability(x)
    scored = pairs.select(candidates.columns).with_columns(pl.lit("rephrase").alias("method"), pl.Series("score", p))
    evidence = pl.concat([pairs.select("row", "item"), x], how="horizontal").select(
        "row",
        "item",
        pl.lit("rephrase").alias("method"),
        pl.format(
            "cosine {}, numbers shared {}, rare words {}, answer in row {}, length ratio {}, code shape {}",
            *[pl.col(f).round(2) for f in ("cosine", "shared_numbers", "rare_words", "answer_in_row", "length_ratio", "code_overlap")],
        ).alias("features"),
    )
    return scored, evidence
