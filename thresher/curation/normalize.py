"""Text normalization and word tokenization, vectorized over whole columns with Polars."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class NormalizeConfig:
    """Which normalizations to apply, in this order: NFKC, diacritics, lowercase, punctuation, digits, whitespace."""

    nfkc: bool = True
    strip_diacritics: bool = True
    lowercase: bool = True
    punctuation_to_space: bool = True
    digits_to_zero: bool = False
    collapse_whitespace: bool = True


def normalize_expr(expr: pl.Expr, config: NormalizeConfig = NormalizeConfig()) -> pl.Expr:
    """A Polars expression that normalizes the string column ``expr``."""
    if config.nfkc:
        expr = expr.str.normalize("NFKC")
    if config.strip_diacritics:
        # decompose, drop combining marks (é → e), recompose what is left
        expr = expr.str.normalize("NFD").str.replace_all(r"\p{Mn}+", "").str.normalize("NFC")
    if config.lowercase:
        expr = expr.str.to_lowercase()
    if config.punctuation_to_space:
        expr = expr.str.replace_all(r"[\p{P}\p{S}]+", " ")
    if config.digits_to_zero:
        expr = expr.str.replace_all(r"\d", "0")
    if config.collapse_whitespace:
        expr = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    return expr


def _as_series(texts: pl.Series | list[str]) -> pl.Series:
    return texts if isinstance(texts, pl.Series) else pl.Series("text", texts, dtype=pl.String)


def normalize(texts: pl.Series | list[str], config: NormalizeConfig = NormalizeConfig()) -> pl.Series:
    """Normalized copies of ``texts``."""
    series = _as_series(texts)
    return pl.select(normalize_expr(pl.lit(series), config)).to_series().alias(series.name)


def word_tokens(texts: pl.Series | list[str], config: NormalizeConfig = NormalizeConfig()) -> pl.Series:
    """Each text normalized and split into words (runs of letters, digits or underscore): a list column."""
    return pl.select(normalize_expr(pl.lit(_as_series(texts)), config).str.extract_all(r"\w+")).to_series().alias("tokens")
