"""What every verifier returns and the protocol it follows; shared by synthesis and the RLVR trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one response: a score in [0, 1] and why."""

    score: float
    reason: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"a verdict's score must lie in [0, 1], got {self.score}")


def check_batch(responses: list[str], ground_truths: list[str]) -> None:
    """A batch needs one ground truth per response."""
    if len(responses) != len(ground_truths):
        raise ValueError(f"{len(responses)} responses but {len(ground_truths)} ground truths")


class Verifier(Protocol):
    name: str

    def verify_batch(self, responses: list[str], ground_truths: list[str], prompts: list[str] | None = None) -> list[Verdict]:
        """One verdict per (response, ground truth); ``prompts`` for verifiers that read the instruction."""
        ...


class PerItemVerifier:
    """A verifier that checks one response at a time (cheap, in-process checks)."""

    name = "base"

    def verify(self, response: str, ground_truth: str, prompt: str = "") -> Verdict:
        raise NotImplementedError

    def verify_batch(self, responses: list[str], ground_truths: list[str], prompts: list[str] | None = None) -> list[Verdict]:
        check_batch(responses, ground_truths)
        asks = prompts if prompts is not None else [""] * len(responses)
        return [self.verify(r, g, p) for r, g, p in zip(responses, ground_truths, asks, strict=True)]
