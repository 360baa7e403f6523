"""The steps a spec runs on all sources, in order, before sampling: normalize, length filters,
dedup (within or across sources) and decontaminate. Each takes the rows of every source in one
frame and returns the rows it keeps and the rows it removes, each with a reason and a detail."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from thresher.config import resolve_path
from thresher.curation.dedup import KEPT, DedupConfig, Features, add_text_features, decide, dedup_texts
from thresher.decontam.audit import AuditConfig, run_audit
from thresher.decontam.benchmarks import BenchmarkItems, load_benchmarks, parse_bench_spec
from thresher.decontam.ngram import NgramConfig
from thresher.decontam.similarity import EmbeddingMatchConfig, MinhashMatchConfig
from thresher.mixing.load import TokenCounter
from thresher.mixing.spec import DecontaminateStep, DedupStep, LengthStep, NormalizeStep, SourceSpec, Step
from thresher.parallel import ordered_map
from thresher.records import Kind, schema_for
from thresher.stats import chars_expr, message_fields


@dataclass
class StepContext:
    kind: Kind
    base: Path  # the spec's folder: relative paths start here
    sources: list[SourceSpec]
    tokens: TokenCounter | None = None


@dataclass
class StepResult:
    kept: pl.DataFrame
    removed: pl.DataFrame  # the removed rows with ``reason`` and ``detail``


def _split(frame: pl.DataFrame, drop: pl.Series, reason: pl.Series | str, detail: pl.Series | str = "") -> StepResult:
    """Rows where ``drop`` is false are kept; the others are removed with their reason and detail."""
    marked = frame.with_columns(
        reason if isinstance(reason, pl.Series) else pl.lit(reason, dtype=pl.String).alias("reason"),
        detail if isinstance(detail, pl.Series) else pl.lit(detail, dtype=pl.String).alias("detail"),
    )
    removed = marked.filter(drop)
    return StepResult(frame.filter(~drop), removed.with_columns(pl.col("reason").cast(pl.String), pl.col("detail").cast(pl.String)))


def recount(frame: pl.DataFrame, kind: Kind, tokens: TokenCounter | None) -> pl.DataFrame:
    """Characters (and tokens) of each row again, after its text changed."""
    frame = frame.with_columns(chars_expr(kind).cast(pl.Int64).alias("chars"))
    if tokens is not None and frame.height:
        frame = frame.with_columns(tokens.count(frame, kind).alias("tokens"))
    return frame


def normalize(frame: pl.DataFrame, step: NormalizeStep, ctx: StepContext) -> StepResult:
    """Unicode normal form and stripped whitespace in every message; rows with an empty message removed."""

    def clean(text: pl.Expr) -> pl.Expr:
        if step.unicode != "none":
            text = text.str.normalize(step.unicode)
        if step.strip:
            text = text.str.replace_all("\r\n", "\n", literal=True).str.strip_chars()
        return text

    fields = message_fields(ctx.kind)
    frame = frame.with_columns(
        [pl.col(f).list.eval(pl.element().struct.with_fields(clean(pl.field("content")).alias("content"))) for f in fields]
    )
    if ctx.kind == Kind.RLVR:
        frame = frame.with_columns(clean(pl.col("ground_truth")).alias("ground_truth"))
    frame = recount(frame, ctx.kind, ctx.tokens)
    if not step.drop_empty:
        return _split(frame, pl.Series([False] * frame.height, dtype=pl.Boolean), "")
    empty = pl.any_horizontal(
        [pl.col(f).list.eval(pl.element().struct.field("content").str.len_chars() == 0).list.any() for f in fields]
        + [pl.col(fields[0]).list.len() == 0]
    )
    return _split(frame, frame.select(empty.alias("drop"))["drop"], "normalize: empty message")


def length(frame: pl.DataFrame, step: LengthStep, ctx: StepContext) -> StepResult:
    """Rows outside the limits removed; the reason names the first limit a row breaks."""
    checks: list[tuple[str, pl.Expr]] = []
    for bound in ("chars", "tokens", "turns"):
        low, high = getattr(step, f"min_{bound}"), getattr(step, f"max_{bound}")
        if low is not None:
            checks.append((f"length: min_{bound} {low}", pl.col(bound) < low))
        if high is not None:
            checks.append((f"length: max_{bound} {high}", pl.col(bound) > high))
    if not checks:
        return _split(frame, pl.Series([False] * frame.height, dtype=pl.Boolean), "")
    reason: Any = pl.when(checks[0][1]).then(pl.lit(checks[0][0]))
    for text, broken in checks[1:]:
        reason = reason.when(broken).then(pl.lit(text))
    reasons = frame.select(reason.otherwise(None).alias("reason"))["reason"]
    return _split(frame, reasons.is_not_null(), reasons)


def _priority_rank(frame: pl.DataFrame, sources: list[SourceSpec]) -> np.ndarray:
    """Per row, its source's rank for keeping duplicates: higher priority first, then spec order."""
    order = sorted(range(len(sources)), key=lambda i: (-sources[i].priority, i))
    rank_of = {sources[i].name: r for r, i in enumerate(order)}
    return frame["source"].replace_strict(rank_of, return_dtype=pl.Int64).to_numpy()


def dedup(frame: pl.DataFrame, step: DedupStep, ctx: StepContext) -> StepResult:
    """Exact and near duplicates removed, within each source or across all; the kept copy is the one in
    the source with the higher priority (then the earlier source), then the earlier row."""
    config = DedupConfig(
        method=step.method,
        threshold=step.threshold,
        keep="source-priority",
        text_field=step.field,
        ngram=step.ngram,
        num_perm=step.num_perm,
        embedding_model=step.model,
    )
    content = frame.select(schema_for(ctx.kind).names)
    rank = _priority_rank(frame, ctx.sources)
    groups = (
        [np.arange(frame.height)] if step.scope == "across" else [np.flatnonzero(frame["source"].to_numpy() == s.name) for s in ctx.sources]
    )
    duplicate_of = np.full(frame.height, KEPT, dtype=np.int64)
    method = np.full(frame.height, "", dtype=object)
    score = np.full(frame.height, np.nan)
    ids = frame["id"].to_list()
    for rows in groups:
        if not len(rows):
            continue

        def batch_features(part: np.ndarray) -> Features:  # a batch's texts only while it is hashed: bounded memory
            found = Features()
            texts = dedup_texts(content[part].to_arrow(), ctx.kind, step.field)
            add_text_features(texts, [ids[i] for i in part], frame["source"].gather(part).to_list(), 0, config, found)
            return found

        features = Features()
        parts = (rows[start : start + config.batch_rows] for start in range(0, len(rows), config.batch_rows))
        for found in ordered_map(batch_features, parts):  # in order: the same for any core count
            features.extend(found)
        arrays = features.finish()
        arrays.input_index = rank[rows]
        decided = decide(arrays, config)
        dup = decided.duplicate_of != KEPT
        duplicate_of[rows[dup]] = rows[decided.duplicate_of[dup]]
        method[rows[dup]] = decided.method[dup]
        score[rows[dup]] = decided.score[dup]
    drop = duplicate_of != KEPT
    keeper = pl.Series(np.where(drop, duplicate_of, 0))
    marks = pl.DataFrame(
        {
            "drop": drop,
            "method": method.astype(str),
            "score": score,
            "kept": frame["source"].gather(keeper) + "/" + frame["id"].gather(keeper),
        }
    )
    notes = marks.select(
        pl.when("drop").then(pl.lit("dedup: ") + pl.col("method")).alias("reason"),
        pl.when("drop").then(pl.format("copy of {} ({})", "kept", pl.col("score").round(3))).alias("detail"),
    )
    return _split(frame, pl.Series(drop), notes["reason"], notes["detail"])


def resolve_benchmarks(step: DecontaminateStep, base: Path) -> list[str]:
    """``NAME=PATH`` specs with paths made absolute (relative ones start at the spec's folder)."""
    resolved = []
    for spec in step.benchmarks:
        name, path = parse_bench_spec(spec)
        if path is not None and not path.startswith("hf:"):
            path = str(resolve_path(path, base).resolve())
        resolved.append(f"{name}={path}" if path is not None else name)
    return resolved


def audit_config(step: DecontaminateStep) -> AuditConfig:
    t = step.thresholds
    return AuditConfig(
        methods=tuple(step.methods),
        fields=step.fields,
        ngram=NgramConfig(threshold=t.get("ngram", NgramConfig.threshold)),
        minhash=MinhashMatchConfig(threshold=t.get("minhash", MinhashMatchConfig.threshold)),
        embedding=EmbeddingMatchConfig(model=step.model, threshold=t.get("embedding", EmbeddingMatchConfig.threshold)),
    )


def decontaminate(
    frame: pl.DataFrame, step: DecontaminateStep, ctx: StepContext, benches: list[BenchmarkItems] | None = None
) -> StepResult:
    """Rows the audit flags against any of the step's benchmarks removed (reason names the benchmark)."""
    benches = benches if benches is not None else load_benchmarks(resolve_benchmarks(step, ctx.base))
    with tempfile.TemporaryDirectory(prefix="thresher-mix-") as tmp:
        path = Path(tmp) / "rows.parquet"
        schema = schema_for(ctx.kind)
        pq.write_table(frame.select(schema.names).to_arrow().cast(schema), path)
        result = run_audit([str(path)], benches, audit_config(step), kind=ctx.kind)
    flagged = result.flagged_rows().select(
        pl.col("row"),
        (pl.lit("decontaminate: ") + pl.col("bench")).alias("reason"),
        pl.format("{} {} {}", "bench_id", "method", pl.col("score").round(3)).alias("detail"),
    )
    notes = pl.DataFrame({"row": pl.int_range(frame.height, dtype=pl.Int64, eager=True)}).join(flagged, on="row", how="left").sort("row")
    return _split(frame, notes["reason"].is_not_null(), notes["reason"], notes["detail"])


def run_step(frame: pl.DataFrame, step: Step, ctx: StepContext) -> StepResult:
    if isinstance(step, NormalizeStep):
        return normalize(frame, step, ctx)
    if isinstance(step, LengthStep):
        return length(frame, step, ctx)
    if isinstance(step, DedupStep):
        return dedup(frame, step, ctx)
    return decontaminate(frame, step, ctx)
