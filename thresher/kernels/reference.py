"""Plain PyTorch references for the kernels: the definitions the tests compare against (in float64)
and the baselines the benchmarks time. They materialize everything; never use them on a hot path."""

from __future__ import annotations

import torch


def linear_logprobs_reference(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and the entropy of softmax(hidden @ weight.T / temperature), per token; log p is 0 where ignored."""
    logits = (hidden @ weight.t()) / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    keep = targets != ignore_index
    logp = logp_all.gather(-1, targets.clamp_min(0)[:, None])[:, 0] * keep
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Llama's RMSNorm: x / sqrt(mean(x²) + eps) · weight, computed in the input's dtype as given."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "neox") -> torch.Tensor:
    """Rotary embedding of ``x`` (..., T, D) with ``cos``/``sin`` (T, D/2) per position and frequency.

    ``neox`` (Hugging Face Llama/Qwen/Mistral): dimension i pairs with i + D/2. ``llama`` (Meta's original,
    GPT-J): dimension 2i pairs with 2i + 1."""
    if layout == "neox":
        c, s = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
        return x * c + _rotate_half(x) * s
    if layout == "llama":
        even, odd = x[..., 0::2], x[..., 1::2]
        out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return out.flatten(-2)
    raise ValueError(f"unknown RoPE layout {layout!r}; known: neox, llama")


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) · up."""
    return torch.nn.functional.silu(gate) * up
