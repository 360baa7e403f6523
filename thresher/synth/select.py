"""Choosing from n scored completions per prompt, vectorized over prompts with NumPy.

``decide`` returns, per prompt, why it is dropped (or ""), the best completion (SFT), the chosen and
rejected completions (preference pairs) and the pass rate (RLVR difficulty filtering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

PairPolicy = Literal["best_vs_worst", "best_vs_random", "majority"]


@dataclass(frozen=True)
class SelectConfig:
    pair_policy: PairPolicy = "best_vs_worst"
    min_score: float = 0.0  # the best completion must score above this to be kept for SFT
    min_margin: float = 0.0  # chosen must beat rejected by more than this
    drop_identical: bool = True
    drop_all_fail: bool = True
    pass_threshold: float = 1.0  # a completion "passes" when its verifier score reaches this
    pass_rate_min: float = 0.0  # RLVR: keep prompts whose pass rate lies in [min, max]
    pass_rate_max: float = 1.0
    seed: int = 0


@dataclass
class Decisions:
    dropped: list[str]  # per prompt: "" or the reason
    best: np.ndarray  # index of the best completion per prompt
    chosen: np.ndarray
    rejected: np.ndarray  # -1: no pair for this prompt
    pair_reason: list[str]  # why there is no pair ("" when there is one)
    rlvr_reason: list[str]  # why the prompt is not kept for RLVR ("" when it is)
    pass_rate: np.ndarray  # NaN without a verifier
    combined: np.ndarray  # (prompts, n) combined scores


def combine(tables: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The weighted mean of the scorers' scores, ignoring the ones that could not score (NaN)."""
    stack = np.stack(tables)  # (scorers, prompts, n)
    w = np.asarray(weights, dtype=np.float64)[:, None, None] * ~np.isnan(stack)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(total > 0, np.nansum(stack * w, axis=0) / np.where(total > 0, total, 1), np.nan)


def first_argmax(x: np.ndarray) -> np.ndarray:
    return np.argmax(np.where(np.isnan(x), -np.inf, x), axis=1)


def first_argmin(x: np.ndarray) -> np.ndarray:
    return np.argmin(np.where(np.isnan(x), np.inf, x), axis=1)


def decide(
    texts: list[list[str]],
    tables: list[np.ndarray],
    weights: list[float],
    config: SelectConfig,
    verifier_scores: np.ndarray | None = None,
    policy_samples: int | None = None,
) -> Decisions:
    """Decisions for prompts with n completions each; ``tables`` are (prompts, n) arrays with NaN for unscored.
    The pass rate is taken over the first ``policy_samples`` completions (the policy model's; default all)."""
    scores = combine(tables, weights)
    prompts, n = scores.shape
    filled = np.where(np.isnan(scores), -np.inf, scores)
    best = first_argmax(scores)
    worst = first_argmin(scores)
    best_score = filled[np.arange(prompts), best]
    stripped = [[t.strip() for t in row] for row in texts]
    identical = np.array([len(set(row)) == 1 and n > 1 for row in stripped], dtype=bool)
    # "All fail": every completion below the verifier's pass mark where the prompt has a verifier,
    # else every combined score at zero (a judge's lowest rating, say).
    all_fail = np.all(~(filled > 0), axis=1)
    if verifier_scores is not None:
        verified = ~np.all(np.isnan(verifier_scores), axis=1)
        none_pass = np.all(~(np.nan_to_num(verifier_scores, nan=0.0) >= config.pass_threshold), axis=1)
        all_fail = np.where(verified, none_pass, all_fail)

    dropped = [""] * prompts
    for p in range(prompts):
        if config.drop_identical and identical[p]:
            dropped[p] = "all completions identical"
        elif config.drop_all_fail and all_fail[p]:
            dropped[p] = "all completions fail"
        elif not best_score[p] > config.min_score:
            dropped[p] = f"best score {best_score[p]:.3f} not above min_score {config.min_score}"

    if config.pair_policy == "best_vs_worst":
        rejected = worst
        chosen = best
    elif config.pair_policy == "best_vs_random":
        rng = np.random.default_rng(config.seed)
        draws = rng.random((prompts, n))
        below = filled < best_score[:, None]
        rejected = np.argmax(np.where(below, draws, -1.0), axis=1)
        chosen = best
    else:  # majority: each scorer votes for its best and its worst
        best_votes = np.zeros((prompts, n))
        worst_votes = np.zeros((prompts, n))
        for table in tables:
            scored = ~np.all(np.isnan(table), axis=1)
            best_votes[np.arange(prompts)[scored], first_argmax(table)[scored]] += 1
            worst_votes[np.arange(prompts)[scored], first_argmin(table)[scored]] += 1
        chosen = np.argmax(best_votes - 1e-6 * np.arange(n), axis=1)
        rejected = np.argmax(worst_votes - 1e-6 * np.arange(n), axis=1)

    chosen_score = filled[np.arange(prompts), chosen]
    rejected_score = filled[np.arange(prompts), rejected]
    pair_reason = []
    for p in range(prompts):
        if dropped[p]:
            pair_reason.append(dropped[p])
        elif chosen[p] == rejected[p] or stripped[p][chosen[p]] == stripped[p][rejected[p]]:
            pair_reason.append("chosen and rejected are the same text")
        elif not chosen_score[p] - rejected_score[p] > config.min_margin:
            pair_reason.append(f"score margin {chosen_score[p] - rejected_score[p]:.3f} not above min_margin {config.min_margin}")
        else:
            pair_reason.append("")
    rejected = np.where([r == "" for r in pair_reason], rejected, -1)

    if verifier_scores is not None:
        policy = verifier_scores[:, : policy_samples or verifier_scores.shape[1]]
        verified = ~np.all(np.isnan(policy), axis=1)
        pass_rate = np.where(verified, np.mean(np.nan_to_num(policy, nan=0.0) >= config.pass_threshold, axis=1), np.nan)
        rlvr_reason = [
            "no ground truth to verify"
            if not v
            else "too easy"
            if r > config.pass_rate_max
            else "too hard"
            if r < config.pass_rate_min
            else ""
            for v, r in zip(verified, pass_rate, strict=True)
        ]
        rlvr_reason = [
            f"{why} (pass rate {r:.2f})" if why.startswith("too") else why for why, r in zip(rlvr_reason, pass_rate, strict=True)
        ]
    else:
        pass_rate = np.full(prompts, np.nan)
        rlvr_reason = ["no verifier score" for _ in range(prompts)]
    return Decisions(dropped, best, chosen, rejected, pair_reason, rlvr_reason, pass_rate, scores)
