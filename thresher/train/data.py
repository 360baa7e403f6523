"""Training examples from canonical rows: chats encoded with assistant-only labels, then packed
(or kept one per row) into micro-batches."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from thresher.records import Kind
from thresher.stats import load_canonical
from thresher.train.chat import Encoded, encode_chat
from thresher.train.packing import Batch, collate, first_fit


def input_files(path: str) -> list[str]:
    """A file as is; a mixture directory as its shards in order."""
    folder = Path(path)
    if folder.is_dir():
        shards = sorted(folder.glob("mixture-*.parquet"))
        if not shards:
            raise FileNotFoundError(f"{path}: a directory without mixture-*.parquet shards")
        return [str(s) for s in shards]
    return [path]


def load_chats(path: str) -> list[list[dict[str, str]]]:
    """The ``messages`` of every SFT row of ``path`` (rows that fail to convert are skipped and counted by the reader)."""
    chats: list[list[dict[str, str]]] = []
    for file in input_files(path):
        frame, kind, _ = load_canonical(file, Kind.SFT)
        chats += frame["messages"].to_list()
    return chats


def encode_all(tokenizer: Any, chats: list[list[dict[str, str]]], max_length: int) -> list[Encoded]:
    """Encoded chats; chats with no target token within ``max_length`` are left out."""
    encoded = [encode_chat(tokenizer, chat, max_length) for chat in chats]
    return [e for e in encoded if e.targets > 1]


def micro_batches(examples: list[Encoded], pad_id: int, packing: bool, pack_length: int, rows: int, seed: int) -> list[Batch]:
    """One epoch of micro-batches in a seeded order: packs of up to ``pack_length`` tokens, or ``rows`` examples padded."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    shuffled = [examples[i] for i in order]
    if packing:
        packs = first_fit([len(e.input_ids) for e in shuffled], pack_length)
        return [collate([[shuffled[i] for i in pack]], pad_id) for pack in packs]
    return [collate([[e] for e in shuffled[lo : lo + rows]], pad_id) for lo in range(0, len(shuffled), rows)]
