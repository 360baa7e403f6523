"""Token log-probabilities and the SFT loss without the batch's full logits.

The LM head is applied to chunks of hidden states; each chunk's logits live only inside a
checkpointed function, so the backward pass recomputes them chunk by chunk instead of keeping
(tokens × vocab) floats alive. Log-softmax runs in fp32 whatever the model's dtype.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from thresher.train.chat import IGNORE
from thresher.train.preference_loss import sequence_logprobs


def _chunk_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.clamp_min(0)[:, None])[:, 0]


def token_logprobs(hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """log p(target) for each row of ``hidden`` (N, d) under ``head``; N targets (IGNORE entries give junk, mask them)."""
    out = []
    for lo in range(0, hidden.shape[0], chunk):
        h, t = hidden[lo : lo + chunk], targets[lo : lo + chunk]
        if torch.is_grad_enabled() and (h.requires_grad or head.weight.requires_grad):
            out.append(checkpoint(_chunk_logprobs, h, head.weight, head.bias, t, use_reentrant=False))
        else:
            out.append(_chunk_logprobs(h, head.weight, head.bias, t))
    return torch.cat(out) if out else hidden.new_zeros(0)


def shifted_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token targets for each position and the mask of positions that have one."""
    targets = torch.full_like(labels, IGNORE)
    targets[:, :-1] = labels[:, 1:]
    return targets, targets != IGNORE


def _target_logprobs(lm: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    decoder = lm.get_decoder()
    hidden = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask).last_hidden_state
    targets, keep = shifted_targets(labels)
    return token_logprobs(hidden[keep], lm.get_output_embeddings(), targets[keep], chunk), keep


class TargetLogprobs(torch.nn.Module):
    """A causal LM whose forward returns the log-probs of its target tokens (chunked head, no full logits).
    Training wraps the model in it so that FSDP2's root unit sees the embeddings and head used in forward."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        return _target_logprobs(self.lm, input_ids, labels, position_ids, attention_mask, chunk)


def target_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                    attention_mask: torch.Tensor | None, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """log p of each target token (in row-major order) and the (rows, T) mask of positions that predict one;
    ``model`` is a causal LM or a ``TargetLogprobs`` around one."""
    if isinstance(model, TargetLogprobs):
        return model(input_ids, labels, position_ids, attention_mask, chunk)
    return _target_logprobs(model, input_ids, labels, position_ids, attention_mask, chunk)


def sft_loss_sum(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None, chunk: int = 1024) -> tuple[torch.Tensor, int]:
    """The summed negative log-likelihood of the target tokens, and their count. Divide the sum by
    the count over the whole accumulated batch, so the loss does not depend on packing or micro-batches."""
    logp, keep = target_logprobs(model, input_ids, labels, position_ids, attention_mask, chunk)
    return -logp.sum(), int(keep.sum())


def example_segments(seq_lens: list[list[int]], total: int) -> torch.Tensor:
    """(rows, total) index of the example each position belongs to, numbering examples row by row; -1 on padding."""
    segments = torch.full((len(seq_lens), total), -1, dtype=torch.long)
    first = 0
    for r, lens in enumerate(seq_lens):
        n = sum(lens)
        segments[r, :n] = torch.repeat_interleave(torch.arange(first, first + len(lens)), torch.tensor(lens))
        first += len(lens)
    return segments


def example_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None, seq_lens: list[list[int]], chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example (numbered row by row), the summed log-probs of its target tokens and their count.
    A target's predicting position lies in the same example, since no example's first token is a target."""
    logp, keep = target_logprobs(model, input_ids, labels, position_ids, attention_mask, chunk)
    segment = example_segments(seq_lens, input_ids.shape[1]).to(input_ids.device)[keep]
    count = sum(len(lens) for lens in seq_lens)
    return sequence_logprobs(logp, segment, count), sequence_logprobs(torch.ones_like(logp), segment, count)
