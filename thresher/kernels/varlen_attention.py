"""Variable-length causal attention for packed rows, without a (T × T) mask.

A packed row holds several examples back to back; ``position_ids`` restart at 0 at each one. Instead of a
dense block-diagonal mask (which also keeps SDPA off its flash kernels), the examples are gathered into a
few padded batches — one per power-of-two length bucket, so padding at most doubles an example — and each
batch goes through ``scaled_dot_product_attention`` with ``is_causal=True`` and no mask: the flash or
memory-efficient kernel on CUDA, the same call on the CPU (where the tests compare it with the dense mask).
A query never sees another example, and never a padded key (those come after it, past the causal edge).

Registered with transformers as the attention implementation ``thresher_varlen`` (``attention: varlen`` in a
training config). Calls it cannot serve this way — a padding mask (generation), a key/value cache longer
than the queries, no ``position_ids`` — go to transformers' own SDPA path unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

NAME = "thresher_varlen"


@dataclass
class Bucket:
    index: torch.Tensor  # (examples, L): flat token positions, each example's last one repeated past its end
    valid: torch.Tensor  # (examples, L) bool: inside the example


@dataclass
class Layout:
    buckets: list[Bucket]
    inverse: torch.Tensor  # flat position -> its row in the buckets' valid outputs, concatenated


_last: tuple[torch.Tensor, Layout] | None = None  # the layout of the last position_ids seen (one per forward)


def segments(position_ids: torch.Tensor) -> tuple[list[int], list[int]]:
    """Start and length of each example in the flattened (rows × T) positions: an example starts at each row's
    start and wherever the position does not continue the previous one."""
    rows, t = position_ids.shape
    flat = position_ids.reshape(-1)
    start = torch.ones_like(flat, dtype=torch.bool)
    start[1:] = flat[1:] != flat[:-1] + 1
    start[::t] = True
    starts = torch.nonzero(start).flatten().tolist()
    lengths = [b - a for a, b in zip(starts, [*starts[1:], rows * t], strict=True)]
    return starts, lengths


def layout(position_ids: torch.Tensor) -> Layout:
    """Examples grouped by length into power-of-two buckets (cached for the last ``position_ids``: every
    layer of one forward sees the same tensor)."""
    global _last
    if _last is not None and _last[0] is position_ids:
        return _last[1]
    starts, lengths = segments(position_ids)
    device = position_ids.device
    by_cap: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_cap.setdefault(1 << (n - 1).bit_length(), []).append(i)
    buckets, order = [], []
    for cap, members in sorted(by_cap.items()):
        first = torch.tensor([starts[i] for i in members], device=device)
        size = torch.tensor([lengths[i] for i in members], device=device)
        offsets = torch.arange(cap, device=device)
        index = first[:, None] + torch.minimum(offsets[None, :], size[:, None] - 1)
        valid = offsets[None, :] < size[:, None]
        buckets.append(Bucket(index, valid))
        order.append(index[valid])
    inverse = torch.argsort(torch.cat(order))
    result = Layout(buckets, inverse)
    _last = (position_ids, result)
    return result


def packed_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    position_ids: torch.Tensor,
    scaling: float | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Causal attention within each example of packed rows. ``query`` (B, Hq, T, D), ``key``/``value``
    (B, Hkv, T, D) with Hq a multiple of Hkv; returns (B, T, Hq, D), as transformers' attention functions do."""
    b, hq, t, d = query.shape
    plan = layout(position_ids.expand(b, t) if position_ids.shape[0] != b else position_ids)
    q, k, v = (x.transpose(1, 2).reshape(b * t, x.shape[1], x.shape[3]) for x in (query, key, value))
    outputs = []
    for bucket in plan.buckets:
        qb, kb, vb = (x[bucket.index].transpose(1, 2) for x in (q, k, v))  # (examples, heads, L, D)
        out = F.scaled_dot_product_attention(
            qb, kb, vb, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=kb.shape[1] != qb.shape[1]
        )
        outputs.append(out.transpose(1, 2)[bucket.valid])  # (tokens of the bucket, heads, D)
    return torch.cat(outputs)[plan.inverse].reshape(b, t, hq, value.shape[-1])


def attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; falls back to its SDPA path where packing does not apply."""
    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2] or kwargs.get("sliding_window"):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    return packed_attention(query, key, value, position_ids, scaling, dropout), None


def _mask(*args: Any, **kwargs: Any) -> Any:
    """transformers' mask function for this implementation: no mask without padding (the attention reads the
    examples from ``position_ids``), SDPA's mask with padding (generation)."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def register() -> str:
    """Make ``thresher_varlen`` an attention implementation transformers models can be loaded with."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, _mask)
    return NAME
