"""Patch Hugging Face Llama / Qwen2 / Mistral models to run RMSNorm, RoPE and SwiGLU through the Triton
kernels. Modules are matched by shape (an ``*RMSNorm`` with ``variance_epsilon``; an ``*MLP`` with
gate/up/down projections and SiLU); RoPE is swapped in the model's modeling module. Every patched call
falls back to the original where Triton cannot run (CPU tensors without ``TRITON_INTERPRET=1``, or a
partial rotary dimension)."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

import torch

from thresher.kernels.dispatch import triton_usable
from thresher.kernels.elementwise import rms_norm, rope_qk, swiglu


def _rms_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    if not triton_usable(hidden_states.device):
        return self._thresher_original_forward(hidden_states)
    return rms_norm(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    if not triton_usable(x.device):
        return self._thresher_original_forward(x)
    return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


def _rope_function(original: Callable[..., Any]) -> Callable[..., Any]:
    def apply_rotary_pos_emb(
        q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = q.shape[-1]
        if args or kwargs or unsqueeze_dim != 1 or cos.shape[-1] != d or not triton_usable(q.device):
            return original(q, k, cos, sin, unsqueeze_dim, *args, **kwargs)
        half_cos, half_sin = cos[..., : d // 2], sin[..., : d // 2]  # HF repeats the angles: cat(freqs, freqs)
        return rope_qk(q, k, half_cos, half_sin, "neox")  # one launch, through the views' strides

    apply_rotary_pos_emb._thresher_original = original  # type: ignore[attr-defined]
    return apply_rotary_pos_emb


def _replace_forward(module: Any, forward: Callable[..., Any]) -> None:
    """Keep ``module``'s forward (to undo) and bind ``forward`` in its place."""
    module._thresher_original_forward = module.forward
    module.forward = types.MethodType(forward, module)


def _is_silu(act: Any) -> bool:
    return isinstance(act, torch.nn.SiLU) or type(act).__name__ in ("SiLUActivation", "SiLU")


def patch_model(model: torch.nn.Module, ops: Iterable[str] = ("rms_norm", "rope", "swiglu")) -> list[str]:
    """Route ``model``'s RMSNorm, SwiGLU MLP and RoPE (those of them in ``ops``) through the kernels; the names
    of what was patched."""
    ops = set(ops)
    patched: set[str] = set()
    for module in model.modules():
        name = type(module).__name__
        if hasattr(module, "_thresher_original_forward"):
            continue
        if "rms_norm" in ops and name.endswith("RMSNorm") and hasattr(module, "variance_epsilon") and hasattr(module, "weight"):
            _replace_forward(module, _rms_forward)
            patched.add("rms_norm")
        elif (
            "swiglu" in ops
            and name.endswith("MLP")
            and all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj"))
            and _is_silu(getattr(module, "act_fn", None))
        ):
            _replace_forward(module, _mlp_forward)
            patched.add("swiglu")
    modeling = sys.modules.get(type(model).__module__)
    original = getattr(modeling, "apply_rotary_pos_emb", None)
    if original is not None and "rope" in ops:
        if not hasattr(original, "_thresher_original"):
            modeling.apply_rotary_pos_emb = _rope_function(original)  # type: ignore[union-attr]
        patched.add("rope")
    return sorted(patched)
