"""Canonical records: one Arrow schema per kind of row, plus ids and content hashes.

Every row Thresher writes has ``id``, ``source``, the kind's content columns,
``metadata`` (the input's unmapped fields as a JSON object string, so nothing
is dropped) and ``provenance`` (where the row came from and a hash of its content).
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any, Literal

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

ROLES: frozenset[str] = frozenset({"system", "user", "assistant", "tool"})


class Kind(str, enum.Enum):  # noqa: UP042 (StrEnum would change str(Kind.SFT) in messages)
    """The three kinds of post-training rows."""

    SFT = "sft"
    PREFERENCE = "preference"
    RLVR = "rlvr"


def as_kind(kind: Kind | str | None) -> Kind | None:
    """``kind`` as a Kind (a string like "sft" is accepted), or None."""
    return Kind(kind) if kind is not None else None


MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)

PROVENANCE = pa.struct(
    [
        ("file", pa.string()),  # input file, folder or dataset name
        ("row", pa.int64()),  # 0-based index of the row in that input
        ("line", pa.int64()),  # 1-based line number for line-based files, else null
        ("content_hash", pa.string()),  # hash of the canonical content columns
    ]
)

# The content columns of each kind, in schema order.
CONTENT_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.SFT: ("messages",),
    Kind.PREFERENCE: ("prompt", "chosen", "rejected"),
    Kind.RLVR: ("messages", "ground_truth", "verifier"),
}

_CONTENT_TYPES: dict[str, pa.DataType] = {
    "messages": MESSAGES,
    "prompt": MESSAGES,
    "chosen": MESSAGES,
    "rejected": MESSAGES,
    "ground_truth": pa.string(),
    "verifier": pa.string(),
}


def schema_for(kind: Kind) -> pa.Schema:
    """The Arrow schema of canonical rows of ``kind``."""
    fields = [pa.field("id", pa.string(), nullable=False), pa.field("source", pa.string(), nullable=False)]
    fields += [pa.field(name, _CONTENT_TYPES[name], nullable=False) for name in CONTENT_FIELDS[kind]]
    fields += [pa.field("metadata", pa.string()), pa.field("provenance", PROVENANCE, nullable=False)]
    return pa.schema(fields, metadata={b"thresher.kind": kind.value.encode()})


def kind_of_columns(columns: set[str] | list[str]) -> Kind | None:
    """The kind whose canonical columns are all present, or None."""
    cols = set(columns)
    required = {"id", "source", "provenance"}
    if not required <= cols:
        return None
    for kind in (Kind.PREFERENCE, Kind.RLVR, Kind.SFT):
        if set(CONTENT_FIELDS[kind]) <= cols:
            return kind
    return None


def content_hash(kind: Kind, record: dict[str, Any]) -> str:
    """A stable hash of a record's content columns (not its id, source or provenance)."""
    content = [record[name] for name in CONTENT_FIELDS[kind]]
    return hashlib.blake2b(orjson.dumps(content), digest_size=16).hexdigest()


def content_json(kind: Kind) -> pl.Expr:
    """Per row, the JSON text ``content_hash`` hashes (orjson's bytes exactly), built column-wise."""
    parts = []
    for name in CONTENT_FIELDS[kind]:
        value = pl.col(name)
        if _CONTENT_TYPES[name] == MESSAGES:
            items = value.list.eval(pl.element().struct.json_encode()).list.join(",")
            parts.append(pl.concat_str(pl.lit("["), items, pl.lit("]")))
        else:
            parts.append(pl.struct(value).struct.json_encode().str.strip_prefix(f'{{"{name}":').str.strip_suffix("}"))
    return pl.concat_str(pl.lit("["), pl.concat_str(parts, separator=","), pl.lit("]"))


def content_hashes(kind: Kind, frame: pl.DataFrame) -> list[str]:
    """``content_hash`` of every row of ``frame`` (canonical content columns, messages as role then content)."""
    texts = frame.select(content_json(kind)).to_series().to_list()
    return [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in texts]


def derived_id(source: str, row: int) -> str:
    """The stable id of a row that had none: its source and row index."""
    return f"{source}/{row}"


def suspect_rows(table: pa.Table, kind: Kind) -> np.ndarray:
    """Rows of a canonical table that break a rule ``convert`` enforces (an unknown role, empty content, a
    missing id, source or field), found column-wise; the converter then judges each of them row by row."""
    import pyarrow.compute as pc

    bad = np.zeros(table.num_rows, dtype=bool)
    for name in ("id", "source", *CONTENT_FIELDS[kind]):
        column = table.column(name)
        bad |= np.asarray(column.is_null().to_numpy(zero_copy_only=False))
        if pa.types.is_string(column.type):
            bad |= np.asarray(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), False).to_numpy(zero_copy_only=False))
        if pa.types.is_list(column.type):
            column = column.combine_chunks()
            bad |= np.asarray(pc.fill_null(pc.equal(pc.list_value_length(column), 0), True).to_numpy(zero_copy_only=False))
            messages = pc.list_flatten(column)
            parents = np.asarray(pc.list_parent_indices(column).to_numpy(zero_copy_only=False))
            roles, contents = pc.struct_field(messages, "role"), pc.struct_field(messages, "content")
            wrong = pc.invert(pc.fill_null(pc.is_in(roles, pa.array(sorted(ROLES))), False))
            empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(contents), ""), True)
            flagged = np.asarray(pc.or_(wrong, empty).to_numpy(zero_copy_only=False))
            bad[parents[flagged]] = True
    return bad


Fields = Literal["all", "prompt", "response"]
FIELDS: tuple[str, ...] = ("all", "prompt", "response")
PROMPT_ROLES = ("system", "user")


def _contents(column: str, roles: tuple[str, ...] | None = None) -> pl.Expr:
    messages = pl.col(column)
    if roles is not None:
        messages = messages.list.eval(pl.element().filter(pl.element().struct.field("role").is_in(list(roles))))
    return messages.list.eval(pl.element().struct.field("content"))


def turns(kind: Kind, fields: Fields = "all") -> pl.Expr:
    """The texts of each row that ``fields`` names, as a list per row — the one meaning every engine uses
    (dedup ``--field``, decontamination ``--fields``, mixing filters and dedup steps):

    - ``prompt``: a preference row's ``prompt``; otherwise the system and user turns of ``messages``.
    - ``response``: the assistant turns (a preference row's ``chosen`` and ``rejected``), and an RLVR row's
      ``ground_truth`` (its answer).
    - ``all``: a preference row's prompt, chosen and rejected turns; otherwise every turn in order, then an
      RLVR row's ground truth.
    """
    if fields not in FIELDS:
        raise ValueError(f"fields must be one of {', '.join(FIELDS)}, not {fields!r}")
    parts: list[pl.Expr] = []
    if kind == Kind.PREFERENCE:
        if fields != "response":
            parts.append(_contents("prompt"))
        if fields != "prompt":
            parts += [_contents("chosen", ("assistant",)), _contents("rejected", ("assistant",))]
    else:
        parts.append(_contents("messages", {"prompt": PROMPT_ROLES, "response": ("assistant",), "all": None}[fields]))
        if kind == Kind.RLVR and fields != "prompt":
            parts.append(pl.concat_list([pl.col("ground_truth")]))
    return pl.concat_list(parts).alias("turns")


def texts(kind: Kind, fields: Fields = "all") -> pl.Expr:
    """``turns(kind, fields)`` of each row joined by newlines, as one text (column ``text``)."""
    return turns(kind, fields).list.join("\n").alias("text")
