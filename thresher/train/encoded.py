"""Encoded chats cached on disk: a chat is rendered, tokenized and masked once per (tokenizer, chat template,
encoding code), and a later run — another epoch setting, another max_length, a resumed or repeated training —
reads it back instead. Keyed by each chat's content (its messages and the turn its targets start at), so a
changed or added row is encoded and everything else is reused.

Entries live in ``$THRESHER_CACHE_DIR/encoded/NAMESPACE/*.parquet`` (``thresher.cache``): one shard per run
that encoded something new, written whole (temporary file, then rename), so a killed run leaves no partial
shard and concurrent processes never see each other's half-written files.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.train import chat
from thresher.train.chat import Encoded, encode_chats


def namespace(tokenizer: Any) -> str:
    """A hash of what an encoding depends on besides the chat: the tokenizer, its chat template and this code."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else orjson.dumps(sorted(tokenizer.get_vocab().items())).decode()
    template = getattr(tokenizer, "chat_template", None) or ""
    code = Path(chat.__file__).read_bytes()
    digest = hashlib.blake2b(digest_size=12)
    for part in (vocabulary.encode(), str(template).encode(), code):
        digest.update(hashlib.blake2b(part, digest_size=16).digest())
    return digest.hexdigest()


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Without the cyclic garbage collector: building millions of small lists (no cycles) would otherwise trigger
    it over and over (half the time of a warm read)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _lists(column: pa.ChunkedArray) -> list[list[int]]:
    """A list-of-int column as Python lists: one conversion of the flat values, then slices (polars' and Arrow's
    per-row conversions are several times slower)."""
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    flat = array.flatten().to_numpy().tolist()
    starts = (offsets - offsets[0]).tolist()
    return [flat[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]


def chat_key(messages: list[dict[str, str]], from_turn: int) -> str:
    return hashlib.blake2b(orjson.dumps([messages, from_turn]), digest_size=16).hexdigest()


class EncodingCache:
    """``encode`` chats through the cache in ``folder`` (default: the Thresher cache); None as folder: no cache."""

    def __init__(self, tokenizer: Any, folder: Path | None) -> None:
        self.tokenizer = tokenizer
        self.folder = folder / namespace(tokenizer) if folder is not None else None
        self.reused = 0
        self.encoded = 0

    def _read(self, keys: list[str]) -> dict[str, tuple[list[int], list[int]]]:
        if self.folder is None or not keys or not self.folder.is_dir():
            return {}
        shards = sorted(self.folder.glob("*.parquet"))
        if not shards:
            return {}
        wanted = pl.DataFrame({"key": keys}, schema={"key": pl.String}).unique()
        found = pl.scan_parquet(shards).join(wanted.lazy(), on="key", how="semi").unique("key").collect().to_arrow()
        ids, labels = _lists(found.column("input_ids")), _lists(found.column("labels"))
        return dict(zip(found.column("key").to_pylist(), zip(ids, labels, strict=True), strict=True))

    def _write(self, keys: list[str], encoded: list[Encoded]) -> None:
        if self.folder is None or not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "input_ids": pa.array([e.input_ids for e in encoded], pa.large_list(pa.int32())),
                "labels": pa.array([e.labels for e in encoded], pa.large_list(pa.int32())),
            }
        )
        name = f"{uuid.uuid4().hex}.parquet"
        temporary = self.folder / f".{name}.tmp"
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, self.folder / name)

    def encode(
        self, chats: list[list[dict[str, str]]], max_length: int | None = None, from_turns: list[int] | None = None
    ) -> list[Encoded]:
        """``chat.encode_chats`` of each chat, cut to ``max_length``: read from the cache where it is there,
        encoded (and stored, whole) where it is not."""
        turns = from_turns or [0] * len(chats)
        keys = [chat_key(m, f) for m, f in zip(chats, turns, strict=True)]
        with _no_gc():
            stored = self._read(keys)
        first_of: dict[str, int] = {}
        todo = [i for i, k in enumerate(keys) if k not in stored and first_of.setdefault(k, i) == i]  # each new chat once
        fresh = encode_chats(self.tokenizer, [chats[i] for i in todo], None, [turns[i] for i in todo])
        self._write([keys[i] for i in todo], fresh)
        stored.update({keys[i]: (e.input_ids, e.labels) for i, e in zip(todo, fresh, strict=True)})
        self.reused += len(chats) - len(todo)
        self.encoded += len(todo)
        with _no_gc():
            return [Encoded(stored[key][0][:max_length], stored[key][1][:max_length]) for key in keys]  # slices: fresh lists
