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


def plan_micro_batches(lengths: list[int], packing: bool, pack_length: int, rows: int, seed: int) -> list[list[list[int]]]:
    """One epoch's micro-batches as example indices, in a seeded order: per micro-batch its rows, per
    row its examples (one pack of up to ``pack_length`` tokens, or ``rows`` examples one per row)."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    if packing:
        return [[[order[i] for i in pack]] for pack in first_fit([lengths[i] for i in order], pack_length)]
    return [[[i] for i in order[lo : lo + rows]] for lo in range(0, len(order), rows)]


def micro_batches(examples: list[Encoded], pad_id: int, packing: bool, pack_length: int, rows: int, seed: int) -> list[Batch]:
    """One epoch of micro-batches (see ``plan_micro_batches``), collated."""
    plan = plan_micro_batches([len(e.input_ids) for e in examples], packing, pack_length, rows, seed)
    return [collate([[examples[i] for i in row] for row in batch], pad_id) for batch in plan]
