"""Training examples from canonical rows: chats encoded with assistant-only labels, then packed
(or kept one per row) into micro-batches."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thresher.errors import InputError
from thresher.records import Kind
from thresher.stats import load_canonical
from thresher.train.chat import IGNORE, Encoded
from thresher.train.encoded import EncodingCache
from thresher.train.packing import first_fit


def input_files(path: str) -> list[str]:
    """A file as is; a mixture directory as its shards in order."""
    folder = Path(path)
    if folder.is_dir():
        shards = sorted(folder.glob("mixture-*.parquet"))
        if not shards:
            raise InputError(f"{path}: a directory without mixture-*.parquet shards")
        return [str(s) for s in shards]
    return [path]


def load_chats(path: str) -> list[list[dict[str, str]]]:
    """The ``messages`` of every SFT row of ``path`` (rows that fail to convert are skipped and counted by the reader)."""
    chats: list[list[dict[str, str]]] = []
    for file in input_files(path):
        frame, kind, _ = load_canonical(file, Kind.SFT)
        chats += frame["messages"].to_list()
    return chats


def encoded_cache(config: Any) -> Path | None:
    """Where encoded chats are cached for ``config`` (a TrainConfig): the Thresher cache, unless turned off."""
    from thresher.cache import cache_root

    return cache_root() / "encoded" if config.data.cache_encoded else None


def encode_all(tokenizer: Any, chats: list[list[dict[str, str]]], max_length: int, cache: Path | None = None) -> list[Encoded]:
    """Encoded chats (through the encoding cache in ``cache``, if given); chats with no target token within
    ``max_length`` are left out."""
    encoded = EncodingCache(tokenizer, cache).encode(chats, max_length)
    return [e for e in encoded if e.targets > 0]


def held_out_split(rows: list[Any], held_out: list[Any] | None, eval_rows: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Train and held-out rows: ``held_out`` when given, else ``eval_rows`` rows of ``rows`` picked with ``seed``."""
    if held_out is not None or not eval_rows:
        return rows, held_out or []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:eval_rows])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def plan_micro_batches(lengths: list[int], packing: bool, pack_length: int, rows: int, seed: int) -> list[list[list[int]]]:
    """One epoch's micro-batches as example indices, in a seeded order: per micro-batch its rows, per
    row its examples (one pack of up to ``pack_length`` tokens, or ``rows`` examples one per row)."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    if packing:
        return [[[order[i] for i in pack]] for pack in first_fit([lengths[i] for i in order], pack_length)]
    return [[[i] for i in order[lo : lo + rows]] for lo in range(0, len(order), rows)]


@dataclass(frozen=True)
class EncodedPair:
    chosen: Encoded
    rejected: Encoded

    @property
    def length(self) -> int:
        return len(self.chosen.input_ids) + len(self.rejected.input_ids)


Messages = list[dict[str, str]]


def load_pairs(path: str) -> list[tuple[Messages, Messages, Messages]]:
    """(prompt, chosen, rejected) messages of every preference row of ``path`` (rows that fail to convert are
    quarantined and counted by the reader)."""
    pairs: list[tuple[Messages, Messages, Messages]] = []
    for file in input_files(path):
        frame, _, _ = load_canonical(file, Kind.PREFERENCE)
        pairs += list(zip(frame["prompt"].to_list(), frame["chosen"].to_list(), frame["rejected"].to_list(), strict=True))
    return pairs


def fit_completion(encoded: Encoded, max_length: int) -> Encoded:
    """At most ``max_length`` tokens, dropping the prompt's oldest tokens first (keeping one, which is never a
    target) and then the completion's last tokens."""
    excess = len(encoded.input_ids) - max_length
    if excess <= 0:
        return encoded
    first_target = next((i for i, x in enumerate(encoded.labels) if x != IGNORE), len(encoded.labels))
    left = min(excess, max(first_target - 1, 0))
    ids, labels = encoded.input_ids[left:][:max_length], encoded.labels[left:][:max_length]
    return Encoded(ids, [IGNORE, *labels[1:]])


def encode_pairs(
    tokenizer: Any, pairs: list[tuple[Messages, Messages, Messages]], max_length: int, cache: Path | None = None
) -> list[EncodedPair | None]:
    """Each pair as two encoded chats whose targets are the completion's assistant tokens only (through the
    encoding cache in ``cache``, if given); None for a pair in which either completion keeps no target token
    within ``max_length``."""
    chats = [prompt + side for prompt, chosen, rejected in pairs for side in (chosen, rejected)]
    turns = [len(prompt) for prompt, _, _ in pairs for _ in range(2)]
    encoded = [fit_completion(e, max_length) for e in EncodingCache(tokenizer, cache).encode(chats, None, turns)]
    out: list[EncodedPair | None] = []
    for chosen, rejected in zip(encoded[::2], encoded[1::2], strict=True):
        out.append(EncodedPair(chosen, rejected) if chosen.targets > 0 and rejected.targets > 0 else None)
    return out
