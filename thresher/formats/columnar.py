"""Column-wise conversion of whole blocks of rows, for the common shapes.

Each converter here mirrors its row-wise twin in ``shapes.py`` on a block of rows and says which rows it
converted (``keep``). It keeps a row only when it is sure the row-wise converter would accept it and make
the same content from the same fields; every other row (a fault, an ambiguous null, a type it does not
handle) is left to the row-wise converter, so the messages for bad rows stay exactly as they are. A
converter returns None when it does not handle the block's column types at all.

Rules kept exactly: whitespace is Python's ``str.isspace`` (``WHITESPACE_ONLY`` agrees on every code point,
checked in the tests), roles map through ``messages.canonical_role`` (called once per distinct value), and
a JSON null that may be a missing field counts as missing only where the row's line cannot hold the name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
import polars as pl

from thresher.errors import RowError
from thresher.formats import messages as msg
from thresher.formats.shapes import ConvertOptions
from thresher.records import Kind

WHITESPACE_ONLY = r"^[\s\x1c-\x1f]*$"  # Python's str.isspace: Unicode White_Space plus U+001C..U+001F
LINE = "__line__"
SIMPLE = (pl.String, pl.Boolean, pl.Null, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


@dataclass
class Columns:
    """A block's rows as a frame, and what a null in it may mean."""

    frame: pl.DataFrame  # the input's fields (and, for JSONL, each row's line in LINE)
    missing_as_null: bool  # JSONL: a null may stand for a field the row does not have

    def has(self, name: str) -> bool:
        return name in self.frame.columns

    def dtype(self, name: str) -> pl.DataType:
        return self.frame.schema[name]

    def absent(self, name: str) -> pl.Expr:
        """Rows where field ``name`` is surely not in the row at all (a null that is no JSON ``null``)."""
        null = pl.col(name).is_null() if self.has(name) else pl.lit(True)
        if not self.missing_as_null:
            return ~pl.lit(self.has(name)) & null
        if LINE not in self.frame.columns:
            return null
        # A line that holds the name (plainly written, or perhaps behind a \u or \/ escape) may hold the field.
        line = pl.col(LINE)
        key = orjson.dumps(name).decode()
        mentions = [line.str.contains(needle, literal=True) for needle in (key, "\\u", "\\/")]
        return null & ~pl.any_horizontal(mentions)


@dataclass
class Converted:
    """What a column-wise converter makes of a block."""

    content: dict[str, pl.Expr]  # the kind's content columns
    keep: pl.Expr  # rows converted here (the rest go to the row-wise converter)
    used: frozenset[str]  # fields the content comes from (the others go to metadata)


Converter = Callable[[Columns, Kind, ConvertOptions], "Converted | None"]


def text_ok(value: pl.Expr) -> pl.Expr:
    """Where ``messages.require_text`` accepts ``value`` (a string column): not null, not only whitespace."""
    return (value.is_not_null() & ~value.str.contains(WHITESPACE_ONLY)).fill_null(False)


@dataclass
class _Messages:
    ok: pl.Expr  # a non-empty list, every message an object with a known role and some text
    messages: pl.Expr  # the canonical list
    roles: pl.Expr  # the canonical role of each message (a list)

    def has_role(self, role: str) -> pl.Expr:
        return self.roles.list.eval(pl.element() == role).list.any().fill_null(False)


def _messages(columns: Columns, name: str) -> _Messages | None:
    """A list of ``{role, content}`` or ``{from, value}`` objects, checked as ``messages.messages`` checks it."""
    dtype = columns.dtype(name)
    if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)):
        return None
    fields = {f.name: f.dtype for f in dtype.inner.fields}
    if {"role", "from"} <= set(fields):
        return None  # which key a message uses would change message by message
    role_key, content_key = ("role", "content") if "role" in fields else ("from", "value")
    if fields.get(role_key) != pl.String or fields.get(content_key) != pl.String:
        return None
    mapping = {}
    for role in columns.frame.get_column(name).explode().struct.field(role_key).unique().drop_nulls().to_list():
        try:
            mapping[role] = msg.canonical_role(role, "")
        except RowError:
            pass
    element = pl.element()
    role = element.struct.field(role_key).replace_strict(mapping, default=None, return_dtype=pl.String)
    content = element.struct.field(content_key)
    column = pl.col(name)
    good = (role.is_not_null() & text_ok(content)).fill_null(False)
    ok = column.is_not_null() & (column.list.len() > 0) & column.list.eval(good).list.all()
    messages = column.list.eval(pl.struct(role.alias("role"), content.alias("content")))
    return _Messages(ok.fill_null(False), messages, column.list.eval(role))


# ---------------------------------------------------------------- converters (twins of shapes.py)


def _messages_with(columns: Columns, kind: Kind, options: ConvertOptions) -> Converted | None:
    """OpenAI ``messages`` as SFT rows."""
    found = _messages(columns, "messages") if kind is Kind.SFT else None
    if found is None:
        return None
    return Converted({"messages": found.messages}, found.ok & found.has_role("assistant"), frozenset({"messages"}))


def _sharegpt(columns: Columns, kind: Kind, options: ConvertOptions) -> Converted | None:
    """ShareGPT ``conversations``, with an optional ``system`` prompt put first."""
    found = _messages(columns, "conversations")
    if found is None:
        return None
    keep = found.ok & found.has_role("assistant")
    messages = found.messages
    if columns.has("system"):
        if columns.dtype("system") not in (pl.String, pl.Null):
            return None
        system = pl.col("system")
        prompt = text_ok(system)
        # A system prompt with text goes first, and "" is dropped; a null or blank one stays in metadata, which
        # only the row-wise converter writes exactly (unless the field is surely missing).
        keep = keep & (prompt | (system == "").fill_null(False) | columns.absent("system"))
        first = pl.concat_list(pl.struct(pl.lit("system").alias("role"), system.alias("content")))
        messages = pl.when(prompt).then(pl.concat_list(first, messages)).otherwise(messages)
    used = frozenset({"conversations", "system"})
    return Converted({"messages": messages}, keep, used)


def _alpaca(columns: Columns, kind: Kind, options: ConvertOptions) -> Converted | None:
    """Alpaca ``instruction`` / ``input`` / ``output`` (blocks with ``history``, ``system`` or ``response`` are
    left to the row-wise converter)."""
    if any(columns.has(name) for name in ("history", "system", "response")) or not columns.has("output"):
        return None
    if columns.dtype("instruction") != pl.String or columns.dtype("output") != pl.String:
        return None
    instruction, output = pl.col("instruction"), pl.col("output")
    keep = text_ok(instruction) & text_ok(output)
    text = instruction
    if columns.has("input"):
        if columns.dtype("input") not in (pl.String, pl.Null):
            return None
        given = pl.col("input")
        text = pl.when(text_ok(given)).then(pl.concat_str(instruction, pl.lit("\n\n"), given)).otherwise(instruction)
    user = pl.struct(pl.lit("user").alias("role"), text.alias("content"))
    assistant = pl.struct(pl.lit("assistant").alias("role"), output.alias("content"))
    used = frozenset({"instruction", "input", "output", "history", "system"})
    return Converted({"messages": pl.concat_list(user, assistant)}, keep, used)


CONVERTERS: dict[str, Converter] = {"messages": _messages_with, "sharegpt": _sharegpt, "alpaca": _alpaca}


# ---------------------------------------------------------------- the fields every row has


def metadata(columns: Columns, used: frozenset[str]) -> tuple[pl.Expr, pl.Expr]:
    """The metadata text (unused fields as a JSON object, keys sorted) and the rows where it is exact.

    A field counts when the row has it (a null that is surely a missing field does not); a value that is
    not a string, integer or boolean is left to the row-wise converter.
    """
    names = sorted(c for c in columns.frame.columns if c not in used and c not in ("id", LINE))
    if not names:
        return pl.lit(None, pl.String), pl.lit(True)
    pieces, exact = [], pl.lit(True)
    for name in names:
        value = pl.col(name)
        piece = pl.struct(value).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}")
        simple = pl.lit(columns.dtype(name) in SIMPLE)
        if columns.missing_as_null:
            exact = exact & ((value.is_not_null() & simple) | columns.absent(name))
            piece = pl.when(value.is_not_null()).then(piece)
        else:
            exact = exact & (value.is_null() | simple)
        pieces.append(piece)
    joined = pl.concat_str(pieces, separator=",", ignore_nulls=True)
    return pl.when(joined != "").then(pl.concat_str(pl.lit("{"), joined, pl.lit("}"))), exact.fill_null(False)


def record_ids(columns: Columns, source: str, rows: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Each row's id (its own, or ``derived_id`` of ``rows``) and the rows where it is exact."""
    derived = pl.concat_str(pl.lit(f"{source}/"), rows.cast(pl.String))
    if not columns.has("id"):
        return derived, pl.lit(True)
    value, dtype = pl.col("id"), columns.dtype("id")
    if dtype == pl.String:
        return pl.when(value.is_null() | (value == "")).then(derived).otherwise(value), pl.lit(True)
    if dtype.is_integer():
        return pl.when(value.is_null()).then(derived).otherwise(value.cast(pl.String)), pl.lit(True)
    return derived, value.is_null()  # floats, booleans, objects: the row-wise converter's rules
