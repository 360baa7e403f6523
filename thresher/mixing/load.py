"""Loading one source of a mixture: canonical rows named after the source, with lengths and the
declared skill, filtered by the source's expressions; bad rows go to the quarantine file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import polars as pl
import pyarrow as pa

from thresher.accounting import Account, QuarantineWriter
from thresher.config import resolve_path
from thresher.convert import canonical_batches
from thresher.errors import InputError, SpecError
from thresher.io.sources import HF_PREFIX, InputSpec, resolve_input
from thresher.mixing.spec import SourceSpec, TokenizerSpec
from thresher.records import Kind, schema_for, texts
from thresher.stats import chars_expr, count_tokens, load_tokenizer, row_texts, turns_expr

ROW = "_row"  # a row's ordinal in its source after conversion: its identity through every step
EXTRA_COLUMNS = {
    "skill": pl.String,
    "skill_from": pl.String,
    "skill_score": pl.Float64,
    "chars": pl.Int64,
    "turns": pl.Int64,
    "tokens": pl.Int64,
    ROW: pl.Int64,
}


def frame_schema(kind: Kind) -> dict[str, pl.DataType]:
    """The columns every stage of a mixture holds: canonical rows plus skill, lengths and row ordinal."""
    empty = pl.from_arrow(schema_for(kind).empty_table())
    assert isinstance(empty, pl.DataFrame)
    return {**dict(empty.schema), **cast(dict[str, pl.DataType], EXTRA_COLUMNS)}


def resolve_source(source: SourceSpec, base: Path) -> InputSpec:
    """Where a source is read from: a path relative to the spec's folder, or a hub dataset."""
    rename = tuple(sorted((theirs, ours) for ours, theirs in source.fields.items()))
    if source.hub is not None:
        spec = resolve_input(HF_PREFIX + source.hub, source=source.name, split=source.split)
    else:
        assert source.path is not None
        spec = resolve_input(str(resolve_path(source.path, base)), source=source.name, split=source.split)
    return dataclasses.replace(spec, rename=rename)


class TokenCounter:
    """Tokens per row: of the rendered chat when the tokenizer has a chat template and the spec asks
    for it, else of the message texts joined by newlines."""

    def __init__(self, spec: TokenizerSpec, base: Path) -> None:
        local = resolve_path(spec.path, base)
        self.tokenizer: Any = load_tokenizer(str(local) if local.exists() else spec.path)
        self.chat_template = spec.chat_template
        if spec.chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise SpecError(f"tokenizer {spec.path}: chat_template is set but the tokenizer has no chat template")

    def _rendered(self, conversations: list[list[dict[str, str]]]) -> list[int]:
        texts = self.tokenizer.apply_chat_template(conversations, tokenize=False)
        return count_tokens(self.tokenizer, texts)

    def count(self, frame: pl.DataFrame, kind: Kind) -> pl.Series:
        if not self.chat_template:
            return pl.Series("tokens", count_tokens(self.tokenizer, row_texts(frame, kind).to_list()), dtype=pl.Int64)
        if kind == Kind.PREFERENCE:
            prompt = frame["prompt"].to_list()
            chosen = self._rendered([p + c for p, c in zip(prompt, frame["chosen"].to_list(), strict=True)])
            rejected = self._rendered([p + r for p, r in zip(prompt, frame["rejected"].to_list(), strict=True)])
            return pl.Series("tokens", chosen, dtype=pl.Int64) + pl.Series("tokens", rejected, dtype=pl.Int64)
        return pl.Series("tokens", self._rendered(frame["messages"].to_list()), dtype=pl.Int64)


def _as_sft(table: pa.Table, side: str) -> pl.DataFrame:
    """Preference rows as chats: the prompt followed by the chosen (or rejected) answer."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(pl.concat_list("prompt", side).alias("messages")).select(schema_for(Kind.SFT).names)


def _filter_view(frame: pl.DataFrame, kind: Kind) -> pl.DataFrame:
    """The columns filter expressions may use: id, chars, turns, tokens, text, prompt, response, metadata."""
    extra = [pl.col("ground_truth")] if kind == Kind.RLVR else []
    return frame.select(
        pl.col("id"),
        pl.col("chars"),
        pl.col("turns"),
        pl.col("tokens"),
        texts(kind, "all").alias("text"),
        texts(kind, "prompt").alias("prompt"),
        texts(kind, "response").alias("response"),
        pl.col("metadata"),
        *extra,
    )


def apply_filters(frame: pl.DataFrame, kind: Kind, source: SourceSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows meeting every filter of ``source``, and the others with the first filter each failed."""
    if not source.filter or frame.is_empty():
        return frame, frame.head(0).with_columns(pl.lit("").alias("reason"))
    view = _filter_view(frame, kind)
    failed_at = pl.Series("failed", [None] * frame.height, dtype=pl.Int64)
    for index, text in enumerate(source.filter):
        try:
            keep = view.select(pl.sql_expr(text).fill_null(False).alias("keep"))["keep"]
        except Exception as e:  # polars raises several kinds for a bad expression
            raise SpecError(
                f"source {source.name!r}: filter {text!r} cannot be used: {str(e).splitlines()[0]}; columns: {', '.join(view.columns)}"
            ) from None
        if keep.dtype != pl.Boolean:
            raise SpecError(f"source {source.name!r}: filter {text!r} gives {keep.dtype}, not true/false")
        failed_at = pl.select(pl.when(failed_at.is_null() & ~keep).then(index).otherwise(failed_at)).to_series()
    reasons = [f"filter: {f}" for f in source.filter]
    marked = frame.with_columns(failed_at.alias("_failed"))
    removed = (
        marked.filter(pl.col("_failed").is_not_null())
        .with_columns(pl.col("_failed").replace_strict(list(range(len(reasons))), reasons, return_dtype=pl.String).alias("reason"))
        .drop("_failed")
    )
    return marked.filter(pl.col("_failed").is_null()).drop("_failed"), removed


def load_source(
    source: SourceSpec, kind: Kind, base: Path, quarantine: QuarantineWriter, tokens: TokenCounter | None
) -> tuple[pl.DataFrame, pl.DataFrame, Account]:
    """The source's rows (columns of ``frame_schema``), the rows its filters removed (with ``reason``), and counts."""
    spec = resolve_source(source, base)
    counts = Account(source.name)
    read_kind = Kind.PREFERENCE if source.use else kind
    if source.use and kind != Kind.SFT:
        raise SpecError(f"source {source.name!r}: 'use: {source.use}' turns preference pairs into chats, for sft mixtures only")
    parts = []
    try:
        for found, table in canonical_batches(spec, read_kind, counts, quarantine, shape_name=source.format):
            if found != read_kind:
                raise InputError(f"{spec.path}: rows are {found.value}, the mixture needs {read_kind.value}")
            part = _as_sft(table, source.use) if source.use else pl.from_arrow(table)
            assert isinstance(part, pl.DataFrame)
            parts.append(part)
    except InputError as e:
        raise InputError(f"source {source.name!r}: {e}") from None
    empty = pl.from_arrow(schema_for(kind).empty_table())
    assert isinstance(empty, pl.DataFrame)
    frame = pl.concat(parts) if parts else empty
    frame = frame.with_columns(pl.lit(source.name).alias("source"))
    frame = frame.with_columns(
        pl.lit(source.skill, dtype=pl.String).alias("skill"),
        pl.lit("declared" if source.skill else None, dtype=pl.String).alias("skill_from"),
        pl.lit(1.0 if source.skill else None, dtype=pl.Float64).alias("skill_score"),
        chars_expr(kind).cast(pl.Int64).alias("chars"),
        turns_expr(kind).cast(pl.Int64).alias("turns"),
        (tokens.count(frame, kind) if tokens is not None and frame.height else pl.lit(None, dtype=pl.Int64)).alias("tokens"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW),
    ).select(list(frame_schema(kind)))
    kept, removed = apply_filters(frame, kind, source)
    counts.rows_out = kept.height
    counts.removed.update(dict(removed["reason"].value_counts().iter_rows()))
    return kept, removed, counts
