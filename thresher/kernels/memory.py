"""Output buffers for kernels. With ``THRESHER_POISON_OUTPUTS=1`` (the tests) every buffer starts as NaN,
so an element a kernel forgets to write shows up instead of passing as leftover memory."""

from __future__ import annotations

import os

import torch


def output_like(x: torch.Tensor, shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    out = torch.empty(shape if shape is not None else x.shape, dtype=dtype or x.dtype, device=x.device)
    if os.environ.get("THRESHER_POISON_OUTPUTS") == "1":
        out.fill_(float("nan"))
    return out
