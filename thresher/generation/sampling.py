"""Sampling parameters shared by every generation engine (synthesis and RLVR rollouts), and the stable hash the
synthesis request cache keys on."""

from __future__ import annotations

import hashlib

import orjson
from pydantic import BaseModel, ConfigDict, Field


class SamplingParams(BaseModel):
    """How to sample: ``n`` completions per prompt, temperature (0 = greedy), nucleus ``top_p``,
    at most ``max_tokens`` new tokens, cut at the first ``stop`` string (excluded), ``seed``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # completions per prompt
    n: int = Field(default=1, ge=1)
    # 0: greedy
    temperature: float = Field(default=1.0, ge=0)
    # nucleus sampling: keep the smallest set of tokens whose probability reaches top_p
    top_p: float = Field(default=1.0, gt=0, le=1)
    # new tokens at most
    max_tokens: int = Field(default=256, ge=1)
    # cut a completion at the first of these strings (excluded)
    stop: tuple[str, ...] = ()
    # seeds sampling; sample i of a prompt is the same request whatever n is
    seed: int = 0

    def key(self) -> str:
        """A hash of everything but ``n``: sample i of a prompt is the same request whatever n is."""
        fields = self.model_dump(mode="json", exclude={"n"})
        return hashlib.blake2b(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to (not including) the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
