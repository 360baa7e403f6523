"""Writers of canonical records to Parquet or JSONL (optionally .gz), atomically.

Rows go to a temporary file beside the target, which is renamed into place on
``close()``; ``abort()`` removes it, so a failed run never leaves a half-written output.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.errors import InputError
from thresher.io.outputs import temp_beside
from thresher.records import Kind, schema_for


class RecordWriter:
    """Appends batches of canonical records of one kind to ``path``."""

    def __init__(self, path: str | Path, kind: Kind, schema: pa.Schema | None = None) -> None:
        self.path = Path(path)
        self.kind = kind
        self.schema = schema or schema_for(kind)
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_beside(self.path)

    def write(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def write_table(self, table: pa.Table) -> None:
        """Append an Arrow table whose columns are this writer's schema."""
        self.write(table.to_pylist())

    def _finish(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file and move it into place."""
        self._finish()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop everything written so far."""
        try:
            self._finish()
        finally:
            self._tmp.unlink(missing_ok=True)


class ParquetRecordWriter(RecordWriter):
    def __init__(self, path: str | Path, kind: Kind, schema: pa.Schema | None = None) -> None:
        super().__init__(path, kind, schema)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")

    def write_table(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.select(self.schema.names).cast(self.schema))
            self.rows += table.num_rows

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._writer.write_table(pa.Table.from_pylist(records, schema=self.schema))
            self.rows += len(records)

    def _finish(self) -> None:
        self._writer.close()


class JsonlRecordWriter(RecordWriter):
    def __init__(self, path: str | Path, kind: Kind, schema: pa.Schema | None = None) -> None:
        super().__init__(path, kind, schema)
        raw = open(self._tmp, "wb")  # noqa: SIM115
        self._file = cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if self.path.suffix == ".gz" else raw)
        self._raw = raw

    def write(self, records: list[dict[str, Any]]) -> None:
        self._file.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
        self.rows += len(records)

    def _finish(self) -> None:
        if not self._file.closed:
            self._file.close()
        if not self._raw.closed:
            self._raw.close()


def open_writer(path: str | Path, kind: Kind, schema: pa.Schema | None = None) -> RecordWriter:
    """A writer chosen by the file name: ``.parquet`` or ``.jsonl`` (``.jsonl.gz``); ``schema``
    defaults to the kind's canonical schema."""
    name = Path(path).name.lower()
    if name.endswith((".parquet", ".pq")):
        return ParquetRecordWriter(path, kind, schema)
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return JsonlRecordWriter(path, kind, schema)
    raise InputError(f"{path}: the output must end in .parquet, .jsonl or .jsonl.gz")
