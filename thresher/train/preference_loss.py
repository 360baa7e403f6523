"""DPO-family losses on per-sequence log-probabilities.

Inputs are the summed log-probs of each chosen and rejected completion under the policy (and the
reference, except for SimPO) and the completions' token counts. Losses, per pair:

- ``sigmoid`` (DPO): -log σ(β[(π_c − r_c) − (π_r − r_r)])
- ``dpo_norm`` (Tülu 3): the same on length-normalized log-probs (each divided by its token count)
- ``ipo``: ((π_c − r_c) − (π_r − r_r) − 1/(2β))², on length-normalized log-probs as in TRL
- ``simpo`` (reference-free): -log σ(β(π_c/len_c − π_r/len_r) − γ)

The implicit rewards (β times the policy-over-reference log-ratio, normalized where the loss is)
give the metrics: reward accuracy, margin, and the chosen/rejected log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LossType = Literal["sigmoid", "dpo_norm", "ipo", "simpo"]
LOSS_TYPES: tuple[str, ...] = ("sigmoid", "dpo_norm", "ipo", "simpo")


@dataclass
class PreferenceLoss:
    losses: torch.Tensor  # per pair
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    def metric_sums(self) -> dict[str, float]:
        """Sums over the pairs (add them up across micro-batches, then divide by the pairs)."""
        margin = (self.chosen_rewards - self.rejected_rewards).detach()
        return {
            "loss": float(self.losses.detach().sum()),
            "reward_accuracy": float((margin > 0).float().sum()),
            "reward_margin": float(margin.sum()),
            "chosen_reward": float(self.chosen_rewards.detach().sum()),
            "rejected_reward": float(self.rejected_rewards.detach().sum()),
        }

    def metrics(self) -> dict[str, float]:
        """Means over the pairs."""
        return {key: value / max(len(self.losses), 1) for key, value in self.metric_sums().items()}


def preference_loss(
    loss_type: LossType,
    beta: float,
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    reference_chosen: torch.Tensor | None = None,
    reference_rejected: torch.Tensor | None = None,
    simpo_gamma: float = 0.5,
) -> PreferenceLoss:
    """Per-pair losses and implicit rewards; log-probs are sums over each completion's tokens."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss type {loss_type!r}; known: {', '.join(LOSS_TYPES)}")
    normalized = loss_type in ("dpo_norm", "ipo", "simpo")
    pc, pr = policy_chosen, policy_rejected
    if normalized:
        pc, pr = pc / chosen_tokens, pr / rejected_tokens
    if loss_type == "simpo":
        chosen_rewards, rejected_rewards = beta * pc, beta * pr
        losses = -F.logsigmoid(beta * (pc - pr) - simpo_gamma)
        return PreferenceLoss(losses, chosen_rewards.detach(), rejected_rewards.detach())
    if reference_chosen is None or reference_rejected is None:
        raise ValueError(f"{loss_type} needs the reference model's log-probs")
    rc, rr = reference_chosen, reference_rejected
    if normalized:
        rc, rr = rc / chosen_tokens, rr / rejected_tokens
    chosen_ratio, rejected_ratio = pc - rc, pr - rr
    logits = chosen_ratio - rejected_ratio
    if loss_type == "ipo":
        losses = (logits - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = -F.logsigmoid(beta * logits)
    return PreferenceLoss(losses, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach())


def sequence_logprobs(token_logprobs: torch.Tensor, segment: torch.Tensor, count: int) -> torch.Tensor:
    """Sums of token log-probs per sequence: ``segment[i]`` says which of ``count`` sequences token i belongs to."""
    return torch.zeros(count, dtype=token_logprobs.dtype, device=token_logprobs.device).index_add(0, segment, token_logprobs)
