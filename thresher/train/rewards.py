"""RLVR rewards: the weighted sum of verifier scores (``thresher.verifiers``), plus optional format and length
terms and a penalty for completions cut at the token limit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from thresher.train.config import RLVRConfig
from thresher.verifiers import Verifier, verify_rows


@dataclass
class Scored:
    rewards: np.ndarray  # (completions,) float64: what the advantages are computed from
    solved: np.ndarray  # (completions,) bool: every verifier gave full marks (pass@1 counts these)
    by_verifier: dict[str, np.ndarray] = field(default_factory=dict)  # verifier → scores of the rows it judged (NaN elsewhere)


def score(
    texts: list[str],
    ground_truths: list[str],
    row_verifiers: list[str | None],
    prompts: list[str],
    finished: np.ndarray,
    lengths: np.ndarray,
    config: RLVRConfig,
    cache: dict[str, Verifier],
    verifiers_only: bool = False,
) -> Scored:
    """Rewards of completions ``texts``; ``verifiers_only`` leaves out the format, length and truncation terms (held-out pass@1)."""
    n = len(texts)
    rewards = np.zeros(n)
    solved = np.ones(n, dtype=bool)
    by_verifier: dict[str, np.ndarray] = {}
    if config.verifiers:
        plan = [(name, weight, [name] * n) for name, weight in config.verifiers.items()]
    else:
        names = [v or "" for v in row_verifiers]
        plan = [("", 1.0, names)]
    for _name, weight, per_row in plan:
        verdicts = verify_rows(texts, ground_truths, per_row, prompts, cache)
        scores = np.array([v.score for v in verdicts], dtype=np.float64)
        rewards += weight * scores
        solved &= scores >= 1.0
        for verifier in sorted(set(per_row)):
            rows = np.array([v == verifier for v in per_row])
            by_verifier[verifier] = np.where(rows, scores, np.nan)
    if not verifiers_only:
        if config.format_pattern and config.format_weight:
            pattern = re.compile(config.format_pattern, re.DOTALL)
            rewards += config.format_weight * np.array([pattern.search(t) is not None for t in texts], dtype=np.float64)
        if config.length_weight:
            rewards -= config.length_weight * lengths / config.max_new_tokens
        if config.truncated == "penalize":
            rewards -= config.truncated_penalty * (~finished)
    return Scored(rewards, solved, by_verifier)


def verifier_means(scored: Scored) -> dict[str, float]:
    """The mean score of each verifier over the rows it judged, as ``reward/NAME`` metrics."""
    return {f"reward/{name}": float(np.nanmean(values)) for name, values in scored.by_verifier.items() if np.isfinite(values).any()}
