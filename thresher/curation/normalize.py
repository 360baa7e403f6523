"""Text normalization and word tokenization, vectorized over whole columns with Polars."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow.compute as pc


@dataclass(frozen=True)
class NormalizeConfig:
    """Which normalizations to apply, in this order: NFKC, diacritics, lowercase, punctuation, digits, whitespace."""

    nfkc: bool = True
    strip_diacritics: bool = True
    lowercase: bool = True
    punctuation_to_space: bool = True
    digits_to_zero: bool = False
    collapse_whitespace: bool = True


def ascii_expr(expr: pl.Expr, config: NormalizeConfig = NormalizeConfig(), words_only: bool = False) -> pl.Expr:
    """The steps after the Unicode ones: case, punctuation, digits, whitespace.

    ``words_only`` skips punctuation and whitespace, which word extraction ignores anyway.
    """
    if config.lowercase:
        expr = expr.str.to_lowercase()
    if config.punctuation_to_space and not words_only:
        expr = expr.str.replace_all(r"[\p{P}\p{S}]+", " ")
    if config.digits_to_zero:
        expr = expr.str.replace_all(r"\d", "0")
    if config.collapse_whitespace and not words_only:
        expr = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    return expr


def _as_series(texts: pl.Series | list[str]) -> pl.Series:
    return texts if isinstance(texts, pl.Series) else pl.Series("text", texts, dtype=pl.String)


def _unicode_steps(series: pl.Series, config: NormalizeConfig) -> pl.Series:
    """Unicode steps (Arrow's utf8proc, several times faster than Polars' here), applied only to
    the rows that are not pure ASCII: on ASCII they are a no-op."""
    if not (config.nfkc or config.strip_diacritics):
        return series
    rows = series.str.contains(r"[^\x00-\x7F]").fill_null(False).arg_true()
    if not len(rows):
        return series
    subset = series.gather(rows).to_arrow()
    if config.nfkc:
        subset = pc.utf8_normalize(subset, "NFKC")
    if config.strip_diacritics:
        # decompose, drop combining marks (é → e), recompose what is left
        subset = pc.utf8_normalize(subset, "NFD")
        subset = pl.Series(subset).str.replace_all(r"\p{Mn}+", "").to_arrow()
        subset = pc.utf8_normalize(subset, "NFC")
    changed = pl.Series(subset).cast(pl.String)
    return series.clone().scatter(rows, changed)


def normalize(texts: pl.Series | list[str], config: NormalizeConfig = NormalizeConfig()) -> pl.Series:
    """Normalized copies of ``texts``."""
    series = _unicode_steps(_as_series(texts), config)
    return pl.select(ascii_expr(pl.lit(series), config)).to_series().alias(series.name)


WORD = r"[^\W_]+"  # a run of letters and digits; "_" separates words


def word_tokens(texts: pl.Series | list[str], config: NormalizeConfig = NormalizeConfig()) -> pl.Series:
    """Each text normalized and split into words: a list column."""
    series = _unicode_steps(_as_series(texts), config)
    words = ascii_expr(pl.lit(series), config, words_only=True).str.extract_all(WORD)
    return pl.select(words).to_series().alias("tokens")


def words_of(normalized: pl.Series) -> pl.Series:
    """The words of already normalized texts: equal to ``word_tokens`` of the originals (punctuation
    and whitespace, which normalization rewrites, separate words either way)."""
    return normalized.str.extract_all(WORD).alias("tokens")
