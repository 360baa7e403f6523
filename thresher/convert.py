"""Conversion of inputs in any supported shape to canonical records.

``iter_canonical`` streams canonical records of one input; ``convert`` writes
several inputs to one output with a quarantine side file and a balanced account.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.accounting import Account, QuarantineWriter
from thresher.errors import InputError, Location, RowError
from thresher.formats import columnar
from thresher.formats.shapes import SHAPES_BY_NAME, ConvertOptions, Shape, allowed_kinds, default_kind, detect_shape
from thresher.io.sources import BATCH_ROWS, Block, InputSpec, RawRow, read_blocks, read_raw, resolve_input
from thresher.io.writers import open_writer
from thresher.parallel import ordered_map
from thresher.records import (
    CONTENT_FIELDS,
    Kind,
    as_kind,
    content_hash,
    content_hashes,
    derived_id,
    kind_of_columns,
    schema_for,
    suspect_rows,
)

OnError = Literal["fail", "quarantine"]


@dataclass
class Outcome:
    """One raw row's fate: a canonical record, or the error that stopped it."""

    record: dict[str, Any] | None
    error: RowError | None
    raw: Any = None


@dataclass
class InputPlan:
    """How one input is read: its spec, detected shape and the kind it becomes."""

    spec: InputSpec
    shape: Shape
    kind: Kind
    rows: Iterator[RawRow]


def _peek_columns(rows: Iterator[RawRow]) -> tuple[set[str] | None, list[RawRow]]:
    """The fields of the first parseable row, and the rows read to find it (to be replayed)."""
    seen: list[RawRow] = []
    for row in rows:
        seen.append(row)
        if row.data is not None:
            return set(row.data), seen
    return None, seen


def plan_input(spec: InputSpec, kind: Kind | None, shape_name: str | None = None) -> InputPlan | None:
    """Detect the shape of ``spec`` and check it can become ``kind``; None for an input with no parseable rows."""
    rows = read_raw(spec)
    columns, seen = _peek_columns(rows)
    replay = _chain(seen, rows)
    if columns is None:
        if not seen:
            return None
        # Only unparseable rows: convert them (all to errors) under any shape.
        shape = SHAPES_BY_NAME[shape_name or "messages"]
        return InputPlan(spec, shape, kind or Kind.SFT, replay)
    if shape_name:
        if shape_name not in SHAPES_BY_NAME:
            raise InputError(f"{spec.path}: unknown format {shape_name!r}; known: {sorted(SHAPES_BY_NAME)}")
        shape = SHAPES_BY_NAME[shape_name]
    else:
        found = detect_shape(columns)
        if found is None:
            raise InputError(
                f"{spec.path}: cannot tell the format of rows with fields {sorted(columns)}; "
                f"pass --format (one of {sorted(SHAPES_BY_NAME)})"
            )
        shape = found
    allowed = allowed_kinds(shape, columns)
    chosen = kind or default_kind(shape, columns)
    if chosen not in allowed:
        raise InputError(
            f"{spec.path}: rows in the {shape.name!r} format ({shape.description}) convert to "
            f"{'/'.join(k.value for k in allowed)}, not {chosen.value}"
        )
    return InputPlan(spec, shape, chosen, replay)


def _chain(first: list[RawRow], rest: Iterator[RawRow]) -> Iterator[RawRow]:
    yield from first
    yield from rest


def _metadata(row: dict[str, Any], used: set[str]) -> str | None:
    extra = {k: v for k, v in row.items() if k not in used and k != "id"}
    return orjson.dumps(extra, default=str, option=orjson.OPT_SORT_KEYS).decode() if extra else None


def _record_id(row: dict[str, Any], source: str, index: int) -> str:
    value = row.get("id")
    if value is None or value == "":
        return derived_id(source, index)
    if isinstance(value, (dict, list)):
        raise RowError("wrong_type", f"id: expected a string or number, got {type(value).__name__}")
    return str(value)


def to_record(raw: RawRow, plan: InputPlan, options: ConvertOptions) -> Outcome:
    """Convert one raw row with the input's shape; errors come back, they are not raised."""
    if raw.error is not None:
        return Outcome(None, raw.error.at(raw.location), raw.raw)
    data = raw.data
    assert data is not None
    try:
        content, used = plan.shape.convert(data, plan.kind, options)
        loc = raw.location
        if plan.shape.name == "canonical":
            prov = data["provenance"]
            if not isinstance(prov, dict):
                raise RowError("wrong_type", "provenance: expected an object")
            record = {"id": str(data["id"]), "source": str(data["source"]), **content, "metadata": data.get("metadata")}
            provenance = {"file": prov.get("file"), "row": prov.get("row"), "line": prov.get("line")}
        else:
            record = {"id": _record_id(data, plan.spec.source, loc.row), "source": plan.spec.source, **content}
            record["metadata"] = _metadata(data, used)
            provenance = {"file": loc.file, "row": loc.row, "line": loc.line}
        provenance["content_hash"] = content_hash(plan.kind, record)
        record["provenance"] = provenance
        return Outcome(record, None)
    except RowError as e:
        return Outcome(None, e.at(raw.location), data)


def iter_canonical(
    spec: str | InputSpec,
    kind: Kind | str | None = None,
    shape_name: str | None = None,
    options: ConvertOptions | None = None,
) -> Iterator[Outcome]:
    """Every row of one input as an Outcome (record or error), in input order."""
    resolved = spec if isinstance(spec, InputSpec) else resolve_input(spec)
    plan = plan_input(resolved, as_kind(kind), shape_name)
    if plan is None:
        return
    opts = options or ConvertOptions()
    for raw in plan.rows:
        yield to_record(raw, plan, opts)


def good_records(
    rows: list[RawRow], plan: InputPlan, options: ConvertOptions, counts: Account, set_aside: Callable[[Outcome], None]
) -> list[dict[str, Any]]:
    """The records of the rows that convert; each bad one goes to ``set_aside`` (which may raise) and is counted."""
    records = []
    for raw in rows:
        outcome = to_record(raw, plan, options)
        counts.rows_in += 1
        if outcome.record is not None:
            records.append(outcome.record)
            continue
        assert outcome.error is not None
        set_aside(outcome)
        counts.quarantined[outcome.error.category] += 1
    return records


Prepared = tuple[Block, "tuple[pa.Table, np.ndarray] | None"]


def prepare_block(block: Block, plan: InputPlan, options: ConvertOptions) -> Prepared:
    """The part of converting a block that has no side effects (parsing, the column-wise converter): it may run
    on a worker thread; ``finish_block`` does the rest, in input order."""
    block = block.parsed()
    return block, _columnar(block, plan, options)


def finish_block(
    prepared: Prepared, plan: InputPlan, options: ConvertOptions, counts: Account, set_aside: Callable[[Outcome], None]
) -> pa.Table:
    """A prepared block's canonical rows, in order: the column-wise ones and, in their places, the rows the
    row-wise converter took (bad ones to ``set_aside``). ``counts`` is updated."""
    block, fast = prepared
    schema = schema_for(plan.kind)
    if fast is None:
        rows = block.rows if block.rows is not None else [block.raw(i) for i in range(block.num_rows)]
        records = good_records(rows, plan, options, counts, set_aside)
        counts.rows_out += len(records)
        return pa.Table.from_pylist(records, schema=schema)
    table, kept = fast
    rest = np.flatnonzero(~kept)
    counts.rows_in += int(kept.sum())
    records = good_records([block.raw(int(i)) for i in rest], plan, options, counts, set_aside)
    if records:  # rows the row-wise converter took: back in their places
        where = np.concatenate([np.flatnonzero(kept), [r["provenance"]["row"] - block.start for r in records]])
        table = pa.concat_tables([table, pa.Table.from_pylist(records, schema=schema)])
        table = table.take(pa.array(np.argsort(where, kind="stable")))
    counts.rows_out += table.num_rows
    return table


def converted_blocks(
    plan: InputPlan,
    options: ConvertOptions,
    counts: Account,
    set_aside: Callable[[Outcome], None],
    batch_rows: int = BATCH_ROWS,
    workers: int | None = None,
) -> Iterator[tuple[Block, pa.Table]]:
    """Every block of the input with its canonical rows, in input order; ``workers`` blocks (default: the
    cores) are prepared at once (the result does not depend on how many)."""
    blocks = read_blocks(plan.spec, batch_rows)
    for prepared in ordered_map(lambda block: prepare_block(block, plan, options), blocks, workers):
        yield prepared[0], finish_block(prepared, plan, options, counts, set_aside)


def _columnar(block: Block, plan: InputPlan, options: ConvertOptions) -> tuple[pa.Table, np.ndarray] | None:
    """The rows of ``block`` the column-wise converter is sure of, as canonical rows, and a mask of which;
    None leaves the whole block to the row-wise converter (also when Polars or Arrow cannot handle a column
    type the checks did not foresee: the row-wise path then decides, exactly as without this one)."""
    converter = columnar.CONVERTERS.get(plan.shape.name)
    if converter is None or block.table is None or block.num_rows == 0:
        return None
    try:
        return _columnar_rows(block, plan, options, converter)
    except (pl.exceptions.PolarsError, pa.ArrowException):
        return None


def _columnar_rows(
    block: Block, plan: InputPlan, options: ConvertOptions, converter: columnar.Converter
) -> tuple[pa.Table, np.ndarray] | None:
    assert block.table is not None
    frame = pl.from_arrow(block.table)
    assert isinstance(frame, pl.DataFrame)
    if block.lines is not None:
        frame = frame.with_columns(pl.Series(columnar.LINE, block.lines, pl.Binary).cast(pl.String))
    columns = columnar.Columns(frame, block.missing_as_null)
    converted = converter(columns, plan.kind, options)
    if converted is None:
        return None
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    ids, ids_exact = columnar.record_ids(columns, plan.spec.source, index + block.start)
    metadata, metadata_exact = columnar.metadata(columns, converted.used)
    first_line = pl.lit(None, pl.Int64) if block.first_line is None else index + block.first_line
    out = frame.select(
        keep=converted.keep & ids_exact & metadata_exact,
        id=ids,
        source=pl.lit(plan.spec.source),
        **converted.content,
        metadata=metadata,
        file=pl.lit(block.path),
        row=index + block.start,
        line=first_line,
    )
    keep = out.get_column("keep").to_numpy()
    out = out.filter(pl.col("keep"))
    out = out.with_columns(content_hash=pl.Series(content_hashes(plan.kind, out), dtype=pl.String))
    out = out.select("id", "source", *CONTENT_FIELDS[plan.kind], "metadata", provenance=pl.struct("file", "row", "line", "content_hash"))
    return out.to_arrow().cast(schema_for(plan.kind)), keep


def canonical_batches(
    spec: str | InputSpec,
    kind: Kind | str | None = None,
    counts: Account | None = None,
    quarantine: QuarantineWriter | None = None,
    batch_rows: int = BATCH_ROWS,
    skip_bad: bool = False,
    shape_name: str | None = None,
    workers: int | None = None,
) -> Iterator[tuple[Kind, pa.Table]]:
    """One input as Arrow tables of canonical rows, streamed in batches.

    A canonical Parquet file is read as it is; anything else is converted (``workers`` blocks at once,
    default the cores; the result does not depend on it), bad rows going to ``quarantine``, or counted
    only with ``skip_bad`` (a second pass over an input whose bad rows were already quarantined), or
    else raising their RowError. ``counts`` is updated.
    """
    resolved = spec if isinstance(spec, InputSpec) else resolve_input(spec)
    counts = counts if counts is not None else Account(resolved.path)
    wanted = as_kind(kind)
    if resolved.format == "parquet" and Path(resolved.path).is_file():
        file = open_parquet(resolved.path)
        found = kind_of_columns(file.schema_arrow.names)
        if found is not None and (wanted is None or wanted == found):
            yield from _canonical_parquet(resolved, file, found, counts, quarantine, batch_rows, skip_bad)
            return
    plan = plan_input(resolved, wanted, shape_name)
    if plan is None:
        return
    options = ConvertOptions()

    def set_aside(outcome: Outcome) -> None:
        assert outcome.error is not None
        if quarantine is None and not skip_bad:
            raise outcome.error
        if quarantine is not None:
            quarantine.write(outcome.error, outcome.raw)

    for _, table in converted_blocks(plan, options, counts, set_aside, batch_rows, workers):
        yield plan.kind, table


def open_parquet(path: str) -> pq.ParquetFile:
    """A Parquet file, or an InputError saying why it cannot be read as one."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


def _canonical_parquet(
    spec: InputSpec,
    file: pq.ParquetFile,
    kind: Kind,
    counts: Account,
    quarantine: QuarantineWriter | None,
    batch_rows: int,
    skip_bad: bool,
) -> Iterator[tuple[Kind, pa.Table]]:
    """A canonical Parquet file in batches, held to the converter's rules: rows the column-wise check
    suspects are judged by the converter and, when bad, set aside like any other input's bad rows."""
    schema = schema_for(kind)
    plan = InputPlan(spec, SHAPES_BY_NAME["canonical"], kind, iter(()))
    options = ConvertOptions()
    start = 0
    for batch in file.iter_batches(batch_size=batch_rows, columns=schema.names):
        try:
            table = pa.Table.from_batches([batch]).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise InputError(f"{spec.path}: columns do not have the canonical {kind.value} types ({str(e).splitlines()[0]})") from None
        counts.rows_in += table.num_rows
        suspects = np.flatnonzero(suspect_rows(table, kind))
        if len(suspects):
            keep = np.ones(table.num_rows, dtype=bool)
            for i, data in zip(suspects, table.take(pa.array(suspects)).to_pylist(), strict=True):
                outcome = to_record(RawRow(Location(spec.path, start + int(i)), data=data), plan, options)
                if outcome.error is None:
                    continue
                keep[i] = False
                counts.quarantined[outcome.error.category] += 1
                if quarantine is None and not skip_bad:
                    raise outcome.error
                if quarantine is not None:
                    quarantine.write(outcome.error, data)
            table = table.filter(pa.array(keep))
        counts.rows_out += table.num_rows
        start += batch.num_rows
        yield kind, table


@dataclass
class ConvertReport:
    """What a conversion did: the kind written, counts per input and in total, and where bad rows went."""

    kind: Kind | None
    output: str
    quarantine: str | None
    per_input: dict[str, Account] = field(default_factory=dict)
    total: Account = field(default_factory=lambda: Account("convert"))
    seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value if self.kind else None,
            "output": self.output,
            "quarantine": self.quarantine,
            "total": self.total.as_dict(),
            "inputs": {name: c.as_dict() for name, c in self.per_input.items()},
            "seconds": round(self.seconds, 3),
        }


def default_quarantine_path(out: str | Path) -> Path:
    out = Path(out)
    stem = out.name.split(".")[0]
    return out.with_name(f"{stem}.quarantine.jsonl")


def convert(
    inputs: list[str],
    out: str | Path,
    kind: Kind | str | None = None,
    on_error: OnError = "fail",
    quarantine: str | Path | None = None,
    shape_name: str | None = None,
    source: str | None = None,
    split: str | None = None,
    options: ConvertOptions | None = None,
    on_batch: Callable[[str, int], None] | None = None,
    max_reported_errors: int = 50,
    workers: int | None = None,
) -> ConvertReport:
    """Convert ``inputs`` to canonical rows of one kind in ``out``.

    ``on_error="fail"`` stops at the first bad row (raising RowError, nothing written);
    ``"quarantine"`` writes bad rows with their reasons to the quarantine file and goes on.
    ``workers`` blocks are converted at once (default: the cores); the output does not depend on it.
    """
    started = time.perf_counter()
    kind = as_kind(kind)
    options = options or ConvertOptions()
    specs = [resolve_input(s, source=source, split=split) for s in inputs]
    quarantine_path = Path(quarantine) if quarantine else default_quarantine_path(out)
    report = ConvertReport(kind, str(out), str(quarantine_path) if on_error == "quarantine" else None)
    writer = None
    bad = QuarantineWriter(quarantine_path)
    try:
        for spec in specs:
            plan = plan_input(spec, kind or report.kind, shape_name)
            counts = report.per_input.setdefault(spec.path, Account(spec.path))
            if plan is None:
                continue
            if report.kind is None:
                report.kind = plan.kind
            if writer is None:
                writer = open_writer(out, plan.kind)

            def set_aside(outcome: Outcome) -> None:
                assert outcome.error is not None
                if on_error == "fail":
                    raise outcome.error
                bad.write(outcome.error, outcome.raw)
                if len(report.first_errors) < max_reported_errors:
                    report.first_errors.append(str(outcome.error))

            for block, table in converted_blocks(plan, options, counts, set_aside, BATCH_ROWS, workers):
                writer.write_table(table)
                if on_batch:
                    on_batch(spec.path, block.num_rows)
            report.total.add(counts)
        if writer is None:
            writer = open_writer(out, report.kind or kind or Kind.SFT)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        bad.abort()
        raise
    bad.close()
    report.seconds = time.perf_counter() - started
    return report
