"""Packing several examples into one row without letting them see each other.

A pack concatenates examples; ``position_ids`` restart at 0 for each, and attention is
block-diagonal causal: a token attends only to earlier tokens of its own example. On the CPU (and
any attention without variable-length kernels) that is an additive 4-D mask; flash-attention's
varlen path takes the cumulative sequence lengths instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thresher.errors import InputError
from thresher.train.chat import IGNORE, Encoded


@dataclass
class Batch:
    input_ids: torch.Tensor  # (rows, T)
    labels: torch.Tensor  # (rows, T), IGNORE where no loss
    position_ids: torch.Tensor  # (rows, T)
    attention_mask: torch.Tensor | None  # (rows, 1, T, T) additive float mask; None for variable-length attention
    seq_lens: list[list[int]]  # per row, the length of each example in it

    @property
    def targets(self) -> int:
        return int((self.labels[:, 1:] != IGNORE).sum())


def first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Example indices grouped into packs of at most ``capacity`` tokens (first fit, in input order)."""
    packs: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths):
        if n > capacity:
            raise InputError(f"example {i} has {n} tokens, more than the pack length {capacity}; set max_length")
        for p, free in enumerate(room):
            if n <= free:
                packs[p].append(i)
                room[p] -= n
                break
        else:
            packs.append([i])
            room.append(capacity - n)
    return packs


def block_causal_mask(seq_lens: list[int], total: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(total, total) additive mask: 0 where query i may attend key j (same example, j <= i), -inf-like elsewhere.
    Positions past the examples (padding) form their own block so no row is fully masked."""
    segment = torch.repeat_interleave(torch.arange(len(seq_lens) + 1), torch.tensor([*seq_lens, total - sum(seq_lens)]))
    pos = torch.arange(total)
    allowed = (segment[:, None] == segment[None, :]) & (pos[:, None] >= pos[None, :])
    return torch.full((total, total), torch.finfo(dtype).min, dtype=dtype).masked_fill(allowed, 0.0)


def collate(groups: list[list[Encoded]], pad_id: int, length: int | None = None, varlen: bool = False) -> Batch:
    """One row per group of examples (a pack, or a single example for a padded batch), right-padded, with the
    block-diagonal mask. With ``varlen``: one row of all examples back to back, unpadded and without a mask,
    for variable-length attention (flash-attention reads the example boundaries from ``position_ids``)."""
    if varlen:
        groups = [[e for g in groups for e in g]]
    rows = [sum((e.input_ids for e in g), []) for g in groups]
    total = length or max(len(r) for r in rows)
    ids = torch.full((len(groups), total), pad_id, dtype=torch.long)
    labels = torch.full((len(groups), total), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(groups), total), dtype=torch.long)
    masks = None if varlen else torch.empty((len(groups), 1, total, total))
    seq_lens = []
    for r, group in enumerate(groups):
        lens = [len(e.input_ids) for e in group]
        n = sum(lens)
        ids[r, :n] = torch.tensor(rows[r])
        labels[r, :n] = torch.tensor(sum((e.labels for e in group), []))
        positions[r, :n] = torch.cat([torch.arange(k) for k in lens])
        if masks is not None:
            masks[r, 0] = block_causal_mask(lens, total)
        seq_lens.append(lens)
    return Batch(ids, labels, positions, masks, seq_lens)
