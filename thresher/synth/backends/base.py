"""The one interface every generation backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from thresher.synth.sampling import SamplingParams

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
