"""The optional LLM judge: does a training row pose the same problem as a benchmark item?

A judge takes (training text, benchmark item) pairs and returns, for each, the probability that
they are the same problem. ``TransformersJudge`` asks a local causal language model (any path or
hub id) and reads the answer from its next-token logits: P(yes) / (P(yes) + P(no)), so no text is
generated and the result is deterministic. The generation backends of the synth stage (vLLM)
plug in behind the same ``Judge`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from thresher.errors import InputError
from thresher.models import local_model

PROMPT = (
    "You check training data for benchmark contamination. Two texts follow. Answer Yes if the first "
    "text contains the same problem as the second (the same question, possibly reworded, translated "
    "or with other variable names), otherwise answer No.\n\n"
    "Training text:\n{train}\n\nBenchmark item:\n{bench}\n\nSame problem? Answer Yes or No."
)


class Judge(Protocol):
    name: str

    def same_problem(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """For each (training text, benchmark text): the probability, in [0, 1], that they are the same problem."""
        ...


@dataclass(frozen=True)
class JudgeConfig:
    model: str
    candidates_from: float = 0.6  # embedding similarity from which a pair is sent to the judge
    threshold: float = 0.5  # judged probability from which a pair is contamination
    max_chars: int = 2000  # each text is cut to this many characters in the prompt
    batch_size: int = 8
    device: str = "cpu"


def _answer_token(tokenizer: Any, words: tuple[str, ...]) -> list[int]:
    """Ids of the first token of each spelling of an answer word (" Yes", "Yes", "yes", ...)."""
    ids = set()
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if encoded:
            ids.add(encoded[0])
    return sorted(ids)


class TransformersJudge:
    """A judge backed by a local transformers causal LM (CPU or GPU)."""

    name = "judge"

    def __init__(self, config: JudgeConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from thresher.device import pick_compute_path

        self.config = config
        self.device = pick_compute_path(config.device, announce=False).device
        model = local_model(config.model, "judge model")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32).to(self.device).eval()  # type: ignore[arg-type]
        self.yes = _answer_token(self.tokenizer, (" Yes", "Yes", " yes", "yes"))
        self.no = _answer_token(self.tokenizer, (" No", "No", " no", "no"))
        if not self.yes or not self.no or set(self.yes) & set(self.no):
            raise InputError(f"{config.model}: its tokenizer cannot tell 'Yes' from 'No' apart as first tokens")

    def prompt(self, train: str, bench: str) -> str:
        text = PROMPT.format(train=train[: self.config.max_chars], bench=bench[: self.config.max_chars])
        if getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
            return str(rendered)
        return text + "\nAnswer:"

    def same_problem(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        import torch

        out = np.zeros(len(pairs), dtype=np.float64)
        for lo in range(0, len(pairs), self.config.batch_size):
            prompts = [self.prompt(t, b) for t, b in pairs[lo : lo + self.config.batch_size]]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits[:, -1, :].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            yes = torch.logsumexp(log_probs[:, self.yes], dim=-1)
            no = torch.logsumexp(log_probs[:, self.no], dim=-1)
            out[lo : lo + len(prompts)] = torch.sigmoid(yes - no).cpu().numpy()
        return out
