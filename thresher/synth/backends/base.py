"""The one interface every synthesis backend implements, and the chat layer the token-level engines of
``thresher.generation`` (transformers, vLLM) share: render the conversation with the chat template, generate,
cut the text at a stop string."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from thresher.generation.engines import Engine
from thresher.generation.sampling import SamplingParams, cut_at_stop

Conversation = list[dict[str, str]]  # [{"role": "user", "content": "..."}, ...]


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    tokens: int  # completion tokens generated


class Backend(Protocol):
    model: str  # what the cache keys on: a model path, hub id or served name

    def generate(self, conversations: list[Conversation], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for each conversation (the reply to its last turn), in order."""
        ...

    def close(self) -> None: ...


def render_chat(tokenizer: object, conversation: Conversation) -> str:
    """The prompt text for a conversation: the tokenizer's chat template with the assistant turn
    opened; a tokenizer without a template gets plain ``role: text`` lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in conversation]
    return "\n".join(lines) + "\nAssistant:"


class ChatBackend:
    """Synthesis on a token-level engine: each conversation rendered with the tokenizer's chat template (the
    assistant turn opened) and tokenized without added special tokens, ``params.n`` samples each, the text cut at
    the first stop string. ``batch_size``: prompts per engine call, each seeded from ``params.seed`` and its
    prompts' text (so a batch gives the same samples wherever it falls); None: one call, seeded by the engine."""

    def __init__(self, model: str, engine: Engine, tokenizer: Any, batch_size: int | None = None) -> None:
        self.model = model
        self.engine: Engine | None = engine
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.end_ids = {i for i in [tokenizer.eos_token_id] if i is not None}

    def prompts(self, conversations: list[Conversation]) -> list[str]:
        return [render_chat(self.tokenizer, c) for c in conversations]

    def generate(self, conversations: list[Conversation], params: SamplingParams) -> list[list[Completion]]:
        assert self.engine is not None, "generate after close"
        texts = self.prompts(conversations)
        out: list[list[Completion]] = []
        size = self.batch_size or max(len(texts), 1)
        for lo in range(0, len(texts), size):
            batch = texts[lo : lo + size]
            ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in batch]
            seed = None
            if self.batch_size:  # reproducible for a given seed and batch, and different for different prompts
                digest = hashlib.blake2b("\x00".join(batch).encode(), digest_size=8, key=str(params.seed).encode()[:64]).digest()
                seed = int.from_bytes(digest, "little") & (2**63 - 1)
            for group in self.engine.generate(ids, params, seed=seed):
                out.append([self._completion(s.ids, s.text, s.finished, params.stop) for s in group])
        return out

    def _completion(self, ids: list[int], text: str, finished: bool, stop: tuple[str, ...]) -> Completion:
        text, hit = cut_at_stop(text, stop)
        tokens = len(ids) - (1 if finished and ids and ids[-1] in self.end_ids else 0)  # the end token is not text
        return Completion(text, "stop" if finished or hit else "length", tokens)

    def close(self) -> None:
        self.engine = None
