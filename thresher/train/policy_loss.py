"""The RLVR policy-gradient objective on flat token tensors (issue 9, first part).

- Group advantages: each prompt's n completions are compared with each other, A = r − mean(group),
  divided by the group's standard deviation (GRPO) or not (Dr GRPO). Groups whose rewards all agree
  carry no signal and are flagged for filtering.
- Clipped surrogate (PPO) with separate low/high clip (DAPO's clip-higher): per token
  max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high)) with ρ = exp(logp − logp_old).
- KL to the reference, k1 = logp − logp_ref or k3 = exp(logp_ref − logp) − (logp_ref − logp) − 1
  (Schulman's unbiased, always ≥ 0 estimator), weighted by β (β = 0: no reference needed).
- Truncated importance sampling: the generating engine's log-probs differ from the trainer's; each
  token's loss is weighted by min(exp(logp_old − logp_gen), cap).
- Aggregation: ``token`` averages over all tokens of the batch (DAPO); ``sequence`` averages within
  each completion, then over completions (the original GRPO).

Tokens are given flat, with ``segment`` naming the completion each belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]
Aggregation = Literal["token", "sequence"]


@dataclass
class GroupAdvantages:
    advantages: torch.Tensor  # per completion
    informative: torch.Tensor  # per completion: its group's rewards are not all equal


def group_advantages(rewards: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-6) -> GroupAdvantages:
    """Advantages of ``rewards`` laid out group after group (``group_size`` completions per prompt)."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.reshape(-1, group_size).to(torch.float64)
    centered = groups - groups.mean(1, keepdim=True)
    std = groups.std(1, keepdim=True, unbiased=False)
    advantages = centered / (std + eps) if normalize_std else centered
    informative = (std > 0).expand_as(groups)
    return GroupAdvantages(advantages.reshape(-1).to(rewards.dtype), informative.reshape(-1))


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
    """Per-token KL(π ‖ π_ref) estimate from log-probs of the sampled tokens."""
    log_ratio = ref_logp - logp
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.exp(log_ratio) - log_ratio - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r}; known: k1, k3")


@dataclass
class PolicyLoss:
    loss: torch.Tensor  # scalar to minimize
    clip_fraction: float  # share of tokens whose clipped term was chosen
    kl: float  # mean per-token KL estimate (0 without a reference)
    ratio_mean: float
    importance_weight_mean: float  # mean truncated importance weight (1 without generation log-probs)


def _aggregate(per_token: torch.Tensor, segment: torch.Tensor, count: int, aggregation: Aggregation) -> torch.Tensor:
    if aggregation == "token":
        return per_token.sum() / max(per_token.numel(), 1)
    if aggregation == "sequence":
        sums = torch.zeros(count, dtype=per_token.dtype, device=per_token.device).index_add(0, segment, per_token)
        lengths = torch.zeros(count, dtype=per_token.dtype, device=per_token.device).index_add(0, segment, torch.ones_like(per_token))
        present = lengths > 0
        return (sums[present] / lengths[present]).mean()
    raise ValueError(f"unknown aggregation {aggregation!r}; known: token, sequence")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    segment: torch.Tensor,
    count: int,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    kl_beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    kl_estimator: KLEstimator = "k3",
    generation_logp: torch.Tensor | None = None,
    importance_cap: float = 2.0,
    aggregation: Aggregation = "token",
) -> PolicyLoss:
    """The clipped objective over flat tokens: ``logp`` (with gradient), ``old_logp`` (the policy that sampled, as
    the trainer computes it), per-completion ``advantages``, ``segment`` (token → completion of ``count``)."""
    token_adv = advantages[segment].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    unclipped = -token_adv * ratio
    clipped = -token_adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    weight = torch.ones_like(logp)
    if generation_logp is not None:
        weight = torch.exp(old_logp - generation_logp).clamp(max=importance_cap).detach()
        per_token = per_token * weight
    kl = torch.zeros_like(logp)
    if kl_beta:
        if ref_logp is None:
            raise ValueError("kl_beta > 0 needs the reference log-probs")
        kl = kl_estimate(logp, ref_logp, kl_estimator)
        per_token = per_token + kl_beta * kl
    loss = _aggregate(per_token, segment, count, aggregation)
    with torch.no_grad():
        clip_fraction = float((clipped > unclipped).float().mean()) if logp.numel() else 0.0
        return PolicyLoss(
            loss,
            clip_fraction,
            float(kl.detach().mean()) if logp.numel() else 0.0,
            float(ratio.detach().mean()) if logp.numel() else 1.0,
            float(weight.mean()) if logp.numel() else 1.0,
        )
