"""Encoded chats are cached on disk by (tokenizer, chat template, encoding code) and content: a second run
encodes nothing and gets the same examples; a changed row is encoded again; another template never reads
the first one's entries; a killed write leaves nothing a later run reads."""

from __future__ import annotations

import json
from pathlib import Path

from thresher.train.chat import IGNORE, encode_chat, target_spans
from thresher.train.encoded import EncodingCache, namespace


def _reference(tokenizer, messages: list[dict[str, str]], max_length: int, from_turn: int) -> tuple[list[int], list[int]]:  # noqa: ANN001
    """Per token in plain Python: a target when it starts inside an assistant span (and is not the first)."""
    text, spans = target_spans(tokenizer, messages, from_turn)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        t if i and any(lo <= start < hi for lo, hi in spans) else IGNORE
        for i, (t, (start, _)) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True))
    ]
    return enc["input_ids"][:max_length], labels[:max_length]


def _chats(shared_data: Path, n: int = 60) -> list[list[dict[str, str]]]:
    rows = json.loads((shared_data / "sft/lima.json").read_text())[:n]
    chats = [[{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}] for r in rows]
    chats[1] = chats[1] + [{"role": "user", "content": "And then?"}, {"role": "assistant", "content": "Then it ends."}]
    return chats + chats[:5]  # repeated chats are encoded once


def _tokenizer(folder: Path):  # noqa: ANN202
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_a_second_run_encodes_nothing_and_gets_the_same_examples(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    tokenizer = _tokenizer(tiny_chat_model)
    chats = _chats(shared_data)
    want = [encode_chat(tokenizer, c, 256, from_turn=i % 2) for i, c in enumerate(chats)]  # one chat at a time
    assert [(e.input_ids, e.labels) for e in want] == [_reference(tokenizer, c, 256, i % 2) for i, c in enumerate(chats)]
    assert sum(e.targets for e in want) > 0 and any(e.targets < len(e.input_ids) - 1 for e in want)
    turns = [i % 2 for i in range(len(chats))]
    cold = EncodingCache(tokenizer, tmp_path)
    got = cold.encode(chats, 256, turns)
    assert got == want and (cold.encoded, cold.reused) == (60, 5)
    warm = EncodingCache(tokenizer, tmp_path)
    assert warm.encode(chats, 256, turns) == want and (warm.encoded, warm.reused) == (0, 65)
    assert warm.encode(chats, 64, turns) == [encode_chat(tokenizer, c, 64, from_turn=t) for c, t in zip(chats, turns, strict=True)]
    edited = [*chats[:-1], [chats[-1][0], {"role": "assistant", "content": "a different answer"}]]
    again = EncodingCache(tokenizer, tmp_path)
    assert again.encode(edited, 256, turns)[-1] == encode_chat(tokenizer, edited[-1], 256, from_turn=turns[-1])
    assert again.encoded == 1


def test_another_template_or_a_killed_write_never_gives_wrong_examples(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    tokenizer = _tokenizer(tiny_chat_model)
    chats = _chats(shared_data, 10)
    EncodingCache(tokenizer, tmp_path).encode(chats)
    other = _tokenizer(tiny_chat_model)
    other.chat_template = tokenizer.chat_template.replace("<|end|>", "<|end|>\n")  # a newline after each turn
    assert namespace(other) != namespace(tokenizer)
    cache = EncodingCache(other, tmp_path)
    assert cache.encode(chats) == [encode_chat(other, c) for c in chats] and cache.encoded == 10
    # a shard being written (a temporary file) is never read; a finished one is
    shard = next((tmp_path / namespace(tokenizer)).glob("*.parquet"))
    (shard.parent / ".partial.parquet.tmp").write_bytes(b"not parquet")
    assert EncodingCache(tokenizer, tmp_path).encode(chats) == [encode_chat(tokenizer, c) for c in chats]
    assert EncodingCache(tokenizer, None).encode(chats) == [encode_chat(tokenizer, c) for c in chats]  # no cache at all
    assert EncodingCache(tokenizer, tmp_path).encode([]) == []  # e.g. no held-out rows, with entries on disk
