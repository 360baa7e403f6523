"""Raw readers: turn an input (file, folder, or hub dataset) into batches of raw rows.

Each reader streams: JSONL and CSV line by line, Parquet and Hugging Face datasets
by record batch. A row that cannot be parsed is yielded with an ``error`` (and its
raw text) instead of being dropped, so later stages can fail or quarantine it.
JSON arrays are the one exception to streaming: the array is parsed whole.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import orjson
import pyarrow as pa
import pyarrow.json as pa_json

from thresher.errors import InputError, Location, RowError
from thresher.hub import require_hub

BATCH_ROWS = 4096
T = TypeVar("T")
HF_PREFIX = "hf:"
BOM = b"\xef\xbb\xbf"
MAX_ROW_BYTES = int(os.environ.get("THRESHER_MAX_ROW_BYTES", 64 << 20))  # a longer JSONL line is a bad row, never parsed


@dataclass
class RawRow:
    """One input row: its parsed object, or the reason it could not be parsed."""

    location: Location
    data: dict[str, Any] | None = None
    error: RowError | None = None
    raw: str | None = None  # the unparsed text, kept for the quarantine file


@dataclass(frozen=True)
class InputSpec:
    """A resolved input: what to read, how, and the default source name of its rows."""

    path: str
    format: str  # jsonl | json | parquet | parquet_shards (a mixture folder) | csv | tsv | hf_disk | hf_hub
    source: str
    split: str | None = None
    rename: tuple[tuple[str, str], ...] = ()  # (field in the input, name the format expects)


@dataclass
class Block:
    """Consecutive rows of one input: column-wise in ``table`` when the reader could parse them so, else one by
    one in ``rows``. ``raw(i)`` is row ``i`` of the table exactly as the row-wise reader would give it."""

    path: str
    start: int  # index of the first row in the input
    first_line: int | None = None  # line of the first row (line-based files; the block has no blank lines)
    table: pa.Table | None = None
    rows: list[RawRow] | None = None
    lines: list[bytes] | None = None  # JSONL: each row's line
    missing_as_null: bool = False  # JSONL: a null may stand for a field the row does not have
    rename: dict[str, str] = field(default_factory=dict)  # field renames (``InputSpec.rename``)
    renamed: bool = False  # ``table`` / ``rows`` have the new names

    @property
    def num_rows(self) -> int:
        if self.table is not None:
            return self.table.num_rows
        return len(self.rows) if self.rows is not None else len(self.lines or ())

    def location(self, i: int) -> Location:
        return Location(self.path, self.start + i, None if self.first_line is None else self.first_line + i)

    def parsed(self) -> Block:
        """The block parsed (JSONL blocks come from ``read_blocks`` as lines, so that parsing can run on a
        worker thread: column-wise where Arrow's reader can) and its fields renamed."""
        if self.table is None and self.rows is None:
            assert self.lines is not None and self.first_line is not None
            self.table = _jsonl_table(self.lines)
            if self.table is None:
                self.rows = _jsonl_rows(Path(self.path), self.lines, self.start, self.first_line)
                self.lines = None
        if self.rename and not self.renamed:
            self._rename()
        return self

    def _rename(self) -> None:
        self.renamed = True
        if self.rows is not None:
            self.rows = list(_renamed(iter(self.rows), self.rename))
            return
        assert self.table is not None
        names = [self.rename.get(name, name) for name in self.table.column_names]
        if len(set(names)) == len(names):
            self.table = self.table.rename_columns(names)
        else:  # a rename onto a field the rows already have: the row-wise rules decide which value stays
            self.rows = [self.raw(i) for i in range(self.num_rows)]
            self.table = self.lines = None

    def raw(self, i: int) -> RawRow:
        """Row ``i`` of a parsed block, as the row-wise reader gives it."""
        if self.rows is not None:
            return self.rows[i]
        assert self.table is not None
        if self.lines is not None:
            row = _jsonl_row(self.lines[i], self.location(i))
        else:
            row = RawRow(self.location(i), data=self.table.slice(i, 1).to_pylist()[0])
        if self.rename and row.data is not None:
            row.data = {self.rename.get(key, key): value for key, value in row.data.items()}
        return row


def _strip_suffixes(name: str) -> str:
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".tsv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def open_binary(path: Path) -> BinaryIO:
    return cast(BinaryIO, gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb"))  # noqa: SIM115


def _sniff_json(path: Path) -> str:
    """``json`` for one JSON document (array or object), ``jsonl`` for one object per line."""
    with open_binary(path) as f:
        head = f.read(1 << 16).removeprefix(BOM).lstrip()
    if head.startswith(b"["):
        return "json"
    first_line, _, rest = head.partition(b"\n")
    try:
        first = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return "json"  # a document spread over several lines
    if rest.strip():
        return "jsonl"
    # One line only: a wrapper object holding a list of rows is a document, anything else one row.
    wraps_rows = isinstance(first, dict) and any(isinstance(v, list) and v and all(isinstance(x, dict) for x in v) for v in first.values())
    return "json" if wraps_rows else "jsonl"


def _is_hf_saved_dataset(path: Path) -> bool:
    return any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def resolve_input(spec: str, source: str | None = None, split: str | None = None) -> InputSpec:
    """Work out the format of ``spec`` (a path, or ``hf:NAME`` for a hub dataset)."""
    if spec.startswith(HF_PREFIX):
        name = spec[len(HF_PREFIX) :]
        return InputSpec(name, "hf_hub", source or name, split or "train")
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder (hub datasets are written hf:ORG/NAME)")
    if path.is_dir():
        if _is_hf_saved_dataset(path):
            return InputSpec(str(path), "hf_disk", source or path.name, split)
        if any(path.glob("mixture-*.parquet")):  # a mixture written by `thresher mix`: its shards in order
            return InputSpec(str(path), "parquet_shards", source or path.name, split)
        raise InputError(f"{spec}: a folder that is neither a saved Hugging Face dataset nor a mixture; pass its files instead")
    name = path.name.lower()
    base = _strip_suffixes(path.name)
    inner = name[:-3] if name.endswith(".gz") else name
    if inner.endswith((".jsonl", ".ndjson")):
        fmt = "jsonl"
    elif inner.endswith(".json"):
        fmt = _sniff_json(path)
    elif inner.endswith((".parquet", ".pq")):
        fmt = "parquet"
    elif inner.endswith(".csv"):
        fmt = "csv"
    elif inner.endswith(".tsv"):
        fmt = "tsv"
    else:
        raise InputError(f"{spec}: unknown file type (expected .jsonl, .json, .parquet, .csv, .tsv, optionally .gz)")
    return InputSpec(str(path), fmt, source or base, split)


def _object_or_error(value: Any, location: Location, raw: str | None) -> RawRow:
    if isinstance(value, dict):
        return RawRow(location, data=value)
    return RawRow(location, error=RowError("wrong_type", f"expected a JSON object, got {type(value).__name__}"), raw=raw)


def _jsonl_row(line: bytes, location: Location) -> RawRow:
    """One JSONL line (a non-blank one, with its newline if it had one) as a raw row."""
    if len(line) > MAX_ROW_BYTES:  # parsing it could take many times its size in memory
        reason = f"the line is {len(line):,} bytes, over the {MAX_ROW_BYTES:,}-byte limit for one row (THRESHER_MAX_ROW_BYTES)"
        return RawRow(location, error=RowError("row_too_large", reason), raw=line[:200].decode("utf-8", "replace") + "…")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return RawRow(
            location,
            error=RowError("invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line"),
            raw=line.decode("utf-8", "replace"),
        )
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return RawRow(location, error=RowError("malformed_json", f"malformed JSON: {e}"), raw=text.rstrip("\n"))
    return _object_or_error(value, location, text.rstrip("\n"))


def _jsonl_rows(path: Path, lines: list[bytes], first_row: int, first_line: int) -> list[RawRow]:
    """The rows of consecutive lines (blank ones skipped, as they are not rows)."""
    rows: list[RawRow] = []
    for offset, line in enumerate(lines):
        if line.strip():
            rows.append(_jsonl_row(line, Location(str(path), first_row + len(rows), first_line + offset)))
    return rows


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    for block in _jsonl_blocks(path, BATCH_ROWS, columnar=False):
        assert block.rows is not None
        yield from block.rows


def _jsonl_blocks(path: Path, batch_rows: int, columnar: bool = True) -> Iterator[Block]:
    """A JSONL file ``batch_rows`` lines at a time; a block without blank lines is left unparsed for
    ``Block.parsed`` (column-wise where it can be), any other is parsed row by row here."""
    row, line_no = 0, 1
    with open_binary(path) as f:
        while lines := list(islice(f, batch_rows)):
            if line_no == 1:
                lines[0] = lines[0].removeprefix(BOM)  # a byte-order mark is not part of row 1
            if columnar and not _has_blank_line(lines) and max(map(len, lines)) <= MAX_ROW_BYTES:
                yield Block(str(path), row, line_no, lines=lines, missing_as_null=True)
                row += len(lines)
            else:
                rows = _jsonl_rows(path, lines, row, line_no)
                yield Block(str(path), row, rows=rows)
                row += len(rows)
            line_no += len(lines)


_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*\n")  # starts with a literal: 30x faster than with \A|\n


def _has_blank_line(lines: list[bytes]) -> bool:
    return not lines[0].strip() or not lines[-1].strip() or bool(_BLANK_LINE.search(b"".join(lines)))


def _jsonl_table(lines: list[bytes]) -> pa.Table | None:
    """Lines (none blank) parsed by Arrow's JSON reader, or None unless every line is exactly one JSON object
    of valid UTF-8 whose fields keep one type throughout (then the row-wise reader decides, row by row)."""
    data = b"".join(lines)
    try:
        data.decode("utf-8")  # Arrow's reader does not check
        table = pa_json.read_json(io.BytesIO(data))
    except (UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # Arrow reads `{..}{..}` on one line as two rows, and a line of `{}` as none: counts must agree.
    return table if table.num_rows == len(lines) else None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_json_document(path: Path) -> Iterator[RawRow]:
    with open_binary(path) as f:
        data = f.read().removeprefix(BOM)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}:{_line_of(data, e.start)}: invalid UTF-8 at byte {e.start}") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON (column {e.colno}): {e.msg}") from None
    if isinstance(doc, dict):
        lists = [key for key, value in doc.items() if isinstance(value, list)]
        if len(lists) != 1:
            raise InputError(f"{path}: a JSON object must hold exactly one list of rows (found lists: {lists or 'none'})")
        doc = doc[lists[0]]
    if not isinstance(doc, list):
        raise InputError(f"{path}: expected a JSON array of objects, got {type(doc).__name__}")
    for row, value in enumerate(doc):
        yield _object_or_error(value, Location(str(path), row), orjson.dumps(value).decode())


def _read_parquet(paths: list[Path]) -> Iterator[RawRow]:
    for block in _parquet_blocks(paths, BATCH_ROWS):
        assert block.table is not None
        for i, value in enumerate(block.table.to_pylist()):
            yield RawRow(block.location(i), data=value)


def _parquet_files(spec: InputSpec) -> list[Path]:
    """The Parquet files of a ``parquet`` input (itself) or a mixture folder (its shards, in order)."""
    path = Path(spec.path)
    return sorted(path.glob("mixture-*.parquet")) if spec.format == "parquet_shards" else [path]


def _read_csv(path: Path, delimiter: str) -> Iterator[RawRow]:
    with open_binary(path) as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise InputError(
                f"{path}:1: the header names {', '.join(map(repr, repeated))} more than once, so one "
                "column's values would be lost; rename the columns"
            )
        row = 0
        start_line = reader.line_num + 1
        for fields in reader:
            location = Location(str(path), row, start_line)
            start_line = reader.line_num + 1
            if not fields:
                continue
            row += 1
            raw = delimiter.join(fields)
            if any(_has_surrogates(value) for value in fields):
                yield RawRow(location, error=RowError("invalid_utf8", "invalid UTF-8"), raw=raw.encode("utf-8", "replace").decode())
            elif len(fields) != len(header):
                yield RawRow(
                    location,
                    error=RowError("malformed_csv", f"expected {len(header)} fields (header {header}), got {len(fields)}"),
                    raw=raw,
                )
            else:
                yield RawRow(location, data=dict(zip(header, fields, strict=True)))


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_hf(spec: InputSpec) -> Iterator[RawRow]:
    import datasets

    if spec.format == "hf_disk":
        ds = datasets.load_from_disk(spec.path)
        if isinstance(ds, datasets.DatasetDict):
            split = spec.split or ("train" if "train" in ds else None)
            if split not in ds:
                raise InputError(f"{spec.path}: choose a split with --split (have {sorted(ds)})")
            ds = ds[split]
    else:
        require_hub(HF_PREFIX + spec.path, "dataset")
        name, _, config = spec.path.partition("@")  # hf:ORG/NAME@CONFIG
        ds = datasets.load_dataset(name, config or None, split=spec.split, streaming=True)
    row = 0
    for columns in ds.iter(batch_size=BATCH_ROWS):
        names = list(columns)
        for values in zip(*(columns[name] for name in names), strict=True):
            yield RawRow(Location(spec.path, row), data=dict(zip(names, values, strict=True)))
            row += 1


def read_raw(spec: InputSpec) -> Iterator[RawRow]:
    """Every row of one input, in order, parsed or with the reason it could not be (fields renamed as ``spec.rename`` says)."""
    rows = _read_any(spec)
    return _failing_as_input_errors(spec, _renamed(rows, dict(spec.rename)) if spec.rename else rows)


def read_blocks(spec: InputSpec, batch_rows: int = BATCH_ROWS) -> Iterator[Block]:
    """Every row of one input in blocks of ``batch_rows`` rows (JSONL: lines): column-wise where the format
    allows (JSONL, Parquet), else row by row; fields renamed as ``spec.rename`` says."""
    path = Path(spec.path)
    if spec.format == "jsonl":
        blocks = _jsonl_blocks(path, batch_rows)
    elif spec.format in ("parquet", "parquet_shards"):
        blocks = _parquet_blocks(_parquet_files(spec), batch_rows)
    else:
        return (Block(spec.path, rows[0].location.row, rows=rows) for rows in batched(read_raw(spec), batch_rows))
    if spec.rename:
        blocks = _renamed_blocks(blocks, dict(spec.rename))
    return _failing_as_input_errors(spec, blocks)


def _parquet_blocks(paths: list[Path], batch_rows: int) -> Iterator[Block]:
    import pyarrow.parquet as pq

    for path in paths:
        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield Block(str(path), row, table=pa.Table.from_batches([batch]))
            row += batch.num_rows


def _renamed_blocks(blocks: Iterator[Block], rename: dict[str, str]) -> Iterator[Block]:
    for block in blocks:
        block.rename = rename  # applied by Block.parsed
        yield block


def _failing_as_input_errors(spec: InputSpec, rows: Iterator[T]) -> Iterator[T]:
    """A file that breaks off while being read (truncated gzip, I/O error, not really Parquet) is an InputError
    naming it, never a traceback (or click's bare ``Aborted.``, which is what an EOFError becomes)."""
    try:
        yield from rows
    except (InputError, RowError):
        raise
    except (OSError, EOFError, zlib.error, ValueError, pa.ArrowException) as e:
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = " (truncated or corrupt?)" if isinstance(e, EOFError | zlib.error | gzip.BadGzipFile) else ""
        raise InputError(f"{spec.path}: cannot be read{hint}: {cause}") from None


def _renamed(rows: Iterator[RawRow], rename: dict[str, str]) -> Iterator[RawRow]:
    for row in rows:
        if row.data is not None:
            row.data = {rename.get(key, key): value for key, value in row.data.items()}
        yield row


def _read_any(spec: InputSpec) -> Iterator[RawRow]:
    path = Path(spec.path)
    if spec.format == "jsonl":
        return _read_jsonl(path)
    if spec.format == "json":
        return _read_json_document(path)
    if spec.format in ("parquet", "parquet_shards"):
        return _read_parquet(_parquet_files(spec))
    if spec.format in ("csv", "tsv"):
        return _read_csv(path, "," if spec.format == "csv" else "\t")
    if spec.format in ("hf_disk", "hf_hub"):
        return _read_hf(spec)
    raise InputError(f"{spec.path}: unsupported format {spec.format!r}")


def batched(rows: Iterator[RawRow], size: int = BATCH_ROWS) -> Iterator[list[RawRow]]:
    """Group rows into lists of at most ``size``."""
    batch: list[RawRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
