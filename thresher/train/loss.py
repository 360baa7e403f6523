"""Token log-probabilities and the SFT loss without the batch's full logits.

The LM head goes through ``thresher.kernels.linear_logprobs``: the fused Triton kernel (no logits
at all) or the chunked PyTorch path (each chunk's logits live only inside a checkpointed function
and are recomputed in backward). Log-softmax runs in fp32 whatever the model's dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from thresher.kernels.linear_logprobs import linear_logprobs
from thresher.train.chat import IGNORE
from thresher.train.preference_loss import sequence_logprobs


def token_logprobs(
    hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor, chunk: int = 1024, backend: str = "torch"
) -> torch.Tensor:
    """log p(target) for each row of ``hidden`` (N, d) under ``head``; 0 where the target is IGNORE.
    ``backend``: the fused Triton kernel or the chunked PyTorch path (``thresher.kernels.linear_logprobs``)."""
    return token_terms(hidden, head, targets, chunk, backend)[0]


def token_terms(
    hidden: torch.Tensor,
    head: torch.nn.Linear,
    targets: torch.Tensor,
    chunk: int = 1024,
    backend: str = "torch",
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(target) under softmax(logits / ``temperature``) and, with ``with_entropy``, each row's entropy."""
    logp, entropy = linear_logprobs(
        hidden,
        head.weight,
        targets,
        temperature=temperature,
        ignore_index=IGNORE,
        backend=backend,
        chunk=chunk,
        bias=head.bias,
        with_entropy=with_entropy,
    )
    return logp, entropy if with_entropy else None


def shifted_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token targets for each position and the mask of positions that have one."""
    targets = torch.full_like(labels, IGNORE)
    targets[:, :-1] = labels[:, 1:]
    return targets, targets != IGNORE


def _target_terms(
    lm: Any,  # a transformers causal LM (get_decoder, get_output_embeddings)
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    chunk: int,
    backend: str = "torch",
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    decoder = lm.get_decoder()
    hidden = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask).last_hidden_state
    targets, keep = shifted_targets(labels)
    logp, entropy = token_terms(hidden[keep], lm.get_output_embeddings(), targets[keep], chunk, backend, temperature, with_entropy)
    return logp, keep, entropy


class TargetLogprobs(torch.nn.Module):
    """A causal LM whose forward returns the log-probs of its target tokens (chunked head, no full logits).
    Training wraps the model in it so that FSDP2's root unit sees the embeddings and head used in forward."""

    def __init__(self, lm: torch.nn.Module, backend: str = "torch") -> None:
        super().__init__()
        self.lm = lm
        self.backend = backend  # "triton" (fused kernel) or "torch" (chunked)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        chunk: int = 1024,
        temperature: float = 1.0,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Target log-probs (row-major), the (rows, T) mask of predicting positions, and the entropy there (or None)."""
        return _target_terms(self.lm, input_ids, labels, position_ids, attention_mask, chunk, self.backend, temperature, with_entropy)


def target_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p of each target token (in row-major order) and the (rows, T) mask of positions that predict one;
    ``model`` is a causal LM or a ``TargetLogprobs`` around one."""
    logp, keep, _ = target_terms(model, input_ids, labels, position_ids, attention_mask, chunk)
    return logp, keep


def target_terms(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    chunk: int = 1024,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``target_logprobs`` at a sampling ``temperature``, with the entropy of each predicting position when asked."""
    if isinstance(model, TargetLogprobs):
        return model(input_ids, labels, position_ids, attention_mask, chunk, temperature, with_entropy)
    return _target_terms(model, input_ids, labels, position_ids, attention_mask, chunk, "torch", temperature, with_entropy)


def sft_loss_sum(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, int]:
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


def example_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    seq_lens: list[list[int]],
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example (numbered row by row), the summed log-probs of its target tokens and their count.
    A target's predicting position lies in the same example, since no example's first token is a target."""
    logp, keep = target_logprobs(model, input_ids, labels, position_ids, attention_mask, chunk)
    segment = example_segments(seq_lens, input_ids.shape[1]).to(input_ids.device)[keep]
    count = sum(len(lens) for lens in seq_lens)
    return sequence_logprobs(logp, segment, count), sequence_logprobs(torch.ones_like(logp), segment, count)
