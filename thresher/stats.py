"""Statistics of canonical rows (counts per source, length distributions), computed with Polars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from thresher.accounting import Account
from thresher.convert import canonical_batches
from thresher.models import local_model
from thresher.records import CONTENT_FIELDS, Kind, schema_for

MESSAGE_FIELDS = ("messages", "prompt", "chosen", "rejected")
QUANTILES = (0.5, 0.9, 0.99)


def load_canonical(path: str, kind: Kind | None = None, shape_name: str | None = None) -> tuple[pl.DataFrame, Kind, Account]:
    """Canonical rows of ``path`` as a DataFrame; rows that fail to convert are counted, not kept."""
    counts = Account(path)
    found_kind: Kind | None = kind
    tables = []
    for batch_kind, table in canonical_batches(path, kind, counts, skip_bad=True, shape_name=shape_name):
        found_kind = batch_kind
        tables.append(table)
    found_kind = found_kind or Kind.SFT
    frame = pl.from_arrow(pa.concat_tables(tables) if tables else schema_for(found_kind).empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame, found_kind, counts


def message_fields(kind: Kind) -> list[str]:
    """The content columns of ``kind`` that hold messages."""
    return [f for f in CONTENT_FIELDS[kind] if f in MESSAGE_FIELDS]


def chars_expr(kind: Kind) -> pl.Expr:
    """Characters of all message contents of a row."""
    return pl.sum_horizontal(
        [pl.col(f).list.eval(pl.element().struct.field("content").str.len_chars()).list.sum() for f in message_fields(kind)]
    )


def turns_expr(kind: Kind) -> pl.Expr:
    """Messages in a row."""
    return pl.sum_horizontal([pl.col(f).list.len() for f in message_fields(kind)])


def row_texts(frame: pl.DataFrame, kind: Kind) -> pl.Series:
    """All message contents of each row joined by newlines (the text a tokenizer sees)."""
    fields = message_fields(kind)
    parts = [pl.col(f).list.eval(pl.element().struct.field("content")).list.join("\n") for f in fields]
    return frame.select(pl.concat_str(parts, separator="\n").alias("text"))["text"]


def add_lengths(frame: pl.DataFrame, kind: Kind, tokenizer: Any | None = None) -> pl.DataFrame:
    """Add ``chars`` (and ``turns``; ``tokens`` when a tokenizer is given) per row."""
    frame = frame.with_columns(chars_expr(kind).alias("chars"), turns_expr(kind).alias("turns"))
    if tokenizer is not None:
        texts = row_texts(frame, kind).to_list()
        frame = frame.with_columns(pl.Series("tokens", count_tokens(tokenizer, texts), dtype=pl.Int64))
    return frame


def load_tokenizer(name_or_path: str) -> Any:
    """A ``tokenizers.Tokenizer`` from a tokenizer.json, or a transformers tokenizer from a folder or hub id."""
    path = Path(name_or_path)
    if path.is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_model(name_or_path, "tokenizer"))


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts of ``texts``, encoded in one batch (the Rust tokenizer parallelises it)."""
    if hasattr(tokenizer, "encode_batch"):
        return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def length_table(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Per source and overall: rows, mean, min, quantiles and max of ``column``."""
    aggs = [
        pl.len().alias("rows"),
        pl.col(column).mean().round(1).alias("mean"),
        pl.col(column).min().alias("min"),
        *[pl.col(column).quantile(q, "nearest").alias(f"p{int(q * 100)}") for q in QUANTILES],
        pl.col(column).max().alias("max"),
    ]
    per_source = frame.group_by("source").agg(aggs).sort("source")
    overall = frame.select(aggs).with_columns(pl.lit("(all)").alias("source")).select(per_source.columns)
    return pl.concat([per_source, overall], how="vertical_relaxed")
