"""Scorers: give every completion of every prompt a score in [0, 1] and a reason.

- ``VerifierScorer``: each prompt's own verifier and ground truth (or one named verifier).
- ``RewardModelScorer``: a sequence-classification reward model on the rendered chat; the score is
  the sigmoid of its logit, the raw reward is kept in the reason.
- ``JudgeScorer``: an LLM judge with an UltraFeedback-style rubric through any backend (its requests
  go through the request cache too); the rating is parsed robustly and kept.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from thresher.generation.sampling import SamplingParams
from thresher.models import local_model
from thresher.synth.backends.base import Backend, Conversation, render_chat
from thresher.synth.cache import RequestCache
from thresher.synth.generate import GenerationStats, generate_cached
from thresher.verifiers import Verifier, verify_rows


@dataclass
class ScoreTable:
    """One scorer's scores: ``scores[p][i]`` for completion i of prompt p (None: could not score)."""

    name: str
    scores: list[list[float | None]]
    reasons: list[list[str]]
    extra: dict[str, Any] = field(default_factory=dict)


def last_user_text(conversation: Conversation) -> str:
    return next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")


class VerifierScorer:
    def __init__(self, verifier: str | None = None, workers: int = 2) -> None:
        self.verifier = verifier  # None: each row's own
        self.name = f"verifier:{verifier}" if verifier else "verifier"
        self._verifiers: dict[str, Verifier] = {}

    def score(self, conversations: list[Conversation], completions: list[list[str]], rows: list[dict[str, Any]]) -> ScoreTable:
        flat_text, flat_truth, flat_name, flat_prompt, shape = [], [], [], [], []
        for conv, texts, row in zip(conversations, completions, rows, strict=True):
            name = self.verifier or row.get("verifier")
            if not name or row.get("ground_truth") is None:
                shape.append(-len(texts))  # nothing to verify against: unscored
                continue
            shape.append(len(texts))
            for text in texts:
                flat_text.append(text)
                flat_truth.append(str(row["ground_truth"]))
                flat_name.append(str(name))
                flat_prompt.append(last_user_text(conv))
        verdicts = verify_rows(flat_text, flat_truth, flat_name, flat_prompt, cache=self._verifiers)
        scores: list[list[float | None]] = []
        reasons: list[list[str]] = []
        at = 0
        for n in shape:
            if n < 0:
                scores.append([None] * -n)
                reasons.append(["no ground truth"] * -n)
                continue
            scores.append([v.score for v in verdicts[at : at + n]])
            reasons.append([v.reason for v in verdicts[at : at + n]])
            at += n
        return ScoreTable(self.name, scores, reasons)

    def close(self) -> None:
        for verifier in self._verifiers.values():
            close = getattr(verifier, "close", None)
            if close:
                close()


class RewardModelScorer:
    def __init__(self, model: str, batch_size: int = 8, device: str = "auto", max_length: int = 2048) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from thresher.device import pick_compute_path

        self.name = "reward_model"
        self.device = pick_compute_path(device, announce=False).device
        model = local_model(model, "reward model")
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model: Any = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if self.model.config.num_labels != 1:
            raise ValueError(f"{model}: a reward model has one output (num_labels=1), this one has {self.model.config.num_labels}")
        self.batch_size = batch_size
        self.max_length = max_length

    def rewards(self, chats: list[Conversation]) -> list[float]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(c, tokenize=False)
            if getattr(self.tokenizer, "chat_template", None)
            else render_chat(self.tokenizer, c[:-1]) + " " + c[-1]["content"]
            for c in chats
        ]
        out: list[float] = []
        for lo in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[lo : lo + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,
            ).to(self.device)
            with torch.no_grad():
                out += self.model(**enc).logits[:, 0].float().cpu().tolist()
        return out

    def score(self, conversations: list[Conversation], completions: list[list[str]], rows: list[dict[str, Any]]) -> ScoreTable:
        chats = [
            conv + [{"role": "assistant", "content": t}] for conv, texts in zip(conversations, completions, strict=True) for t in texts
        ]
        raw = self.rewards(chats)
        scores: list[list[float | None]] = []
        reasons: list[list[str]] = []
        at = 0
        for texts in completions:
            chunk = raw[at : at + len(texts)]
            scores.append([1.0 / (1.0 + math.exp(-r)) for r in chunk])
            reasons.append([f"reward {r:.4f}" for r in chunk])
            at += len(texts)
        return ScoreTable(self.name, scores, reasons, {"raw": raw})

    def close(self) -> None:
        self.model = None


RUBRIC = """You are rating an AI assistant's response to a user's instruction.
Rate the response from 1 to {scale} for overall quality: helpfulness (does it do what was asked),
honesty and correctness (no false claims), instruction following (format, length, constraints),
and clarity. {scale} is excellent, 1 is useless or wrong.

Instruction:
{instruction}

Response:
{response}

Give a one-sentence rationale, then the rating on its own line as "Rating: N"."""

_RATING = (
    r"rating\W{0,4}\s*(\d+(?:\.\d+)?)",  # Rating: 4 / **Rating**: 4 / rating = 4
    r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*{scale}\b",  # 4/5, 4 out of 5
    r"score\W{0,4}\s*(\d+(?:\.\d+)?)",
)


def parse_rating(text: str, scale: int = 5) -> float | None:
    """The rating in a judge's answer (1..scale), or None; the last "Rating:" wins, then "N/scale",
    then a lone number on the last line."""
    for pattern in _RATING:
        regex = re.compile(pattern.replace("{scale}", str(scale)), re.IGNORECASE)
        found = regex.findall(text)
        for value in reversed(found):
            rating = float(value)
            if 1 <= rating <= scale:
                return rating
    lines = [line.strip(" *#.") for line in text.strip().splitlines() if line.strip()]
    if lines and re.fullmatch(r"\d+(?:\.\d+)?", lines[-1]) and 1 <= float(lines[-1]) <= scale:
        return float(lines[-1])
    return None


class JudgeScorer:
    def __init__(
        self, backend: Backend, cache: RequestCache, scale: int = 5, max_tokens: int = 256, rubric: str = RUBRIC, quiet: bool = True
    ) -> None:
        self.name = "judge"
        self.backend = backend
        self.cache = cache
        self.scale = scale
        self.rubric = rubric
        self.params = SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens)
        self.quiet = quiet
        self.stats = GenerationStats()  # summed over every call

    def score(self, conversations: list[Conversation], completions: list[list[str]], rows: list[dict[str, Any]]) -> ScoreTable:
        asks = [
            [{"role": "user", "content": self.rubric.format(scale=self.scale, instruction=last_user_text(conv), response=t)}]
            for conv, texts in zip(conversations, completions, strict=True)
            for t in texts
        ]
        answers, stats = generate_cached(self.backend, asks, self.params, self.cache, label="judge", quiet=self.quiet)
        for name in ("requested", "reused", "generated", "tokens", "seconds"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(stats, name))
        ratings = [parse_rating(a[0].text, self.scale) for a in answers]
        scores: list[list[float | None]] = []
        reasons: list[list[str]] = []
        at = 0
        for texts in completions:
            chunk = ratings[at : at + len(texts)]
            scores.append([None if r is None else (r - 1) / (self.scale - 1) for r in chunk])
            reasons.append([f"judge rating {r:g}/{self.scale}" if r is not None else "judge gave no rating" for r in chunk])
            at += len(texts)
        return ScoreTable(self.name, scores, reasons, {"ratings": ratings, "answers": [a[0].text for a in answers]})

    def close(self) -> None:
        pass
