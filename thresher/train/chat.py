"""Tokenizing chats for training: the loss covers assistant tokens only, found from the chat
template's own rendering, not from string heuristics.

The template renders the conversation up to each assistant turn (with the generation prompt) and
through it; the characters between those two renderings are that turn's target (its content and
the template's end-of-turn marker). The whole conversation is tokenized once, with offsets, and a
token is a target when it starts inside a target span. A template whose renderings are not
prefixes of one another cannot be split this way and is refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.errors import InputError

IGNORE = -100


class TemplateError(InputError):
    """A chat template that cannot give assistant-only masks."""


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # the token itself where it is a target, IGNORE elsewhere (not shifted)

    @property
    def targets(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def target_spans(tokenizer: Any, messages: list[dict[str, str]], from_turn: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (those at index ``from_turn`` or later)."""
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat template; set one (chat_template in the config) to train on chats")
    full = _render(tokenizer, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i < from_turn:
            continue
        before = _render(tokenizer, messages[:i], True) if i else ""
        through = full if i == len(messages) - 1 else _render(tokenizer, messages[: i + 1], False)
        if not full.startswith(through) or not through.startswith(before):
            raise TemplateError(
                f"the chat template's rendering up to turn {i} is not a prefix of the whole conversation; "
                "assistant-only masks cannot be derived from it"
            )
        spans.append((len(before), len(through)))
    return full, spans


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], max_length: int | None = None, from_turn: int = 0) -> Encoded:
    """Token ids of the rendered chat and labels that keep only assistant tokens (of turns ``from_turn`` on);
    cut to ``max_length``. The first token is never a target: nothing of the example comes before it, and in a
    pack the token before it belongs to another example."""
    return encode_chats(tokenizer, [messages], max_length, [from_turn])[0]


def encode_chats(
    tokenizer: Any, chats: list[list[dict[str, str]]], max_length: int | None = None, from_turns: list[int] | None = None
) -> list[Encoded]:
    """``encode_chat`` of each chat: the renderings one by one (the chat template is Python), the tokenization in
    one batch (the tokenizer's threads use every core), the labels from the offsets with NumPy (a token is a
    target when it starts inside a target span). Worker processes were measured and dropped: with the
    tokenizer already on every core, shipping encoded chats back cost what rendering in parallel saved
    (benchmarks/RESULTS.md, SFT encoding)."""
    turns = from_turns or [0] * len(chats)
    rendered = [target_spans(tokenizer, m, f) for m, f in zip(chats, turns, strict=True)]
    if not rendered:
        return []
    texts = [text for text, _ in rendered]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: its Rust batch encoder, without transformers' per-row conversion
        encodings = backend.encode_batch(texts, add_special_tokens=False)
        tokens = [(e.ids, e.offsets) for e in encodings]
    else:
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        tokens = list(zip(enc["input_ids"], enc["offset_mapping"], strict=True))
    out = []
    for (ids, offsets), (_, spans) in zip(tokens, rendered, strict=True):
        starts = np.array(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
        inside = np.zeros(len(ids), dtype=bool)
        if spans:
            lo, hi = np.array(spans, dtype=np.int64).T  # in order, not overlapping
            span = np.searchsorted(lo, starts, side="right") - 1
            inside = (span >= 0) & (starts < hi[np.maximum(span, 0)])
        if len(inside):
            inside[0] = False
        labels = np.where(inside, np.asarray(ids, dtype=np.int64), IGNORE).tolist()
        ids = list(ids)
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        out.append(Encoded(ids, labels))
    return out
