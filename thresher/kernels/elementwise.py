"""Triton kernels for the transformer block's small ops, each with an autograd wrapper:

- RMSNorm (forward/backward): y = x · rsqrt(mean(x²) + eps) · w, statistics in fp32, one row per program;
  the weight's gradient is summed per program and then across programs.
- RoPE in the ``neox`` layout (Hugging Face Llama/Qwen/Mistral: i pairs with i + D/2) and the ``llama``
  layout (Meta's original: 2i pairs with 2i + 1); per-row positions, so packed sequences work. The
  backward is the rotation by −θ.
- SwiGLU: silu(gate) · up.

On CPU tensors they run under ``TRITON_INTERPRET=1`` (tests); on CUDA compiled, never interpreted
(``thresher.kernels.dispatch``); the model patch uses each where ``kernels`` chooses it.
"""

from __future__ import annotations

import torch

from thresher.kernels.dispatch import check_launch, triton
from thresher.kernels.memory import output_like

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _rms_forward(x_ptr, w_ptr, y_ptr, rstd_ptr, D, eps, BLOCK_D: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK_D)
        ok = cols < D
        x = tl.load(x_ptr + row * D + cols, mask=ok, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=ok, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / D + eps)
        tl.store(y_ptr + row * D + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=ok)
        tl.store(rstd_ptr + row, rstd)

    @triton.jit
    def _rms_backward(dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_part_ptr, M, D, ROWS_PER_PROGRAM: tl.constexpr, BLOCK_D: tl.constexpr):
        program = tl.program_id(0)
        cols = tl.arange(0, BLOCK_D)
        ok = cols < D
        w = tl.load(w_ptr + cols, mask=ok, other=0.0).to(tl.float32)
        dw = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for i in range(ROWS_PER_PROGRAM):
            row = program * ROWS_PER_PROGRAM + i
            if row < M:
                x = tl.load(x_ptr + row * D + cols, mask=ok, other=0.0).to(tl.float32)
                dy = tl.load(dy_ptr + row * D + cols, mask=ok, other=0.0).to(tl.float32)
                rstd = tl.load(rstd_ptr + row)
                x_hat = x * rstd
                dyw = dy * w
                dx = rstd * (dyw - x_hat * tl.sum(dyw * x_hat, axis=0) / D)
                tl.store(dx_ptr + row * D + cols, dx.to(dx_ptr.dtype.element_ty), mask=ok)
                dw += dy * x_hat
        tl.store(dw_part_ptr + program * D + cols, dw, mask=ok)

    @triton.jit
    def _rope_kernel(x_ptr, cos_ptr, sin_ptr, y_ptr, HEADS, T, HALF, sign, NEOX: tl.constexpr, BLOCK_H: tl.constexpr):
        row = tl.program_id(0)  # over batch × heads × T rows of x (B, heads, T, D)
        b = row // (HEADS * T)
        t = row % T
        i = tl.arange(0, BLOCK_H)
        ok = i < HALF
        cos = tl.load(cos_ptr + (b * T + t) * HALF + i, mask=ok, other=1.0).to(tl.float32)
        sin = tl.load(sin_ptr + (b * T + t) * HALF + i, mask=ok, other=0.0).to(tl.float32) * sign
        if NEOX:
            first, second = i, i + HALF
        else:
            first, second = 2 * i, 2 * i + 1
        base = row * 2 * HALF
        a = tl.load(x_ptr + base + first, mask=ok, other=0.0).to(tl.float32)
        c = tl.load(x_ptr + base + second, mask=ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + base + first, (a * cos - c * sin).to(y_ptr.dtype.element_ty), mask=ok)
        tl.store(y_ptr + base + second, (c * cos + a * sin).to(y_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _swiglu_forward(g_ptr, u_ptr, y_ptr, N, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < N
        g = tl.load(g_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        u = tl.load(u_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + offs, (g * tl.sigmoid(g) * u).to(y_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _swiglu_backward(dy_ptr, g_ptr, u_ptr, dg_ptr, du_ptr, N, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < N
        dy = tl.load(dy_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        u = tl.load(u_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        s = tl.sigmoid(g)
        tl.store(dg_ptr + offs, (dy * u * s * (1.0 + g * (1.0 - s))).to(dg_ptr.dtype.element_ty), mask=ok)
        tl.store(du_ptr + offs, (dy * g * s).to(du_ptr.dtype.element_ty), mask=ok)


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()
        m, d = x2.shape
        y = output_like(x2)
        rstd = output_like(x2, (m,), torch.float32)
        _rms_forward[(m,)](x2, weight, y, rstd, d, eps, BLOCK_D=_block(d))
        ctx.save_for_backward(x2, weight, rstd)
        return y.reshape(shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        x2, weight, rstd = ctx.saved_tensors
        m, d = x2.shape
        rows = 64
        programs = triton.cdiv(m, rows)
        dx = output_like(x2)
        dw_parts = output_like(x2, (programs, d), torch.float32)
        _rms_backward[(programs,)](
            dy.reshape(-1, d).contiguous(), x2, weight, rstd, dx, dw_parts, m, d, ROWS_PER_PROGRAM=rows, BLOCK_D=_block(d)
        )
        return dx.reshape(dy.shape), dw_parts.sum(0).to(weight.dtype), None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Fused RMSNorm over the last dimension (Triton)."""
    check_launch(x)
    return _RMSNorm.apply(x, weight, eps)


def _rope_launch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, neox: bool, sign: float) -> torch.Tensor:
    b, heads, t, d = x.shape
    x = x.contiguous()
    y = output_like(x)
    _rope_kernel[(b * heads * t,)](x, cos, sin, y, heads, t, d // 2, sign, NEOX=neox, BLOCK_H=_block(d // 2))
    return y


class _RoPE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, neox: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(cos, sin)
        ctx.neox = neox
        return _rope_launch(x, cos, sin, neox, 1.0)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        cos, sin = ctx.saved_tensors
        return _rope_launch(dy, cos, sin, ctx.neox, -1.0), None, None, None


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "neox") -> torch.Tensor:
    """Rotary embedding of ``x`` (B, heads, T, D); ``cos``/``sin`` are (T, D/2) or (B, T, D/2), one angle per
    position and frequency (positions may restart inside a row, as in packed sequences)."""
    if layout not in ("neox", "llama"):
        raise ValueError(f"unknown RoPE layout {layout!r}; known: neox, llama")
    check_launch(x)
    b, _, t, d = x.shape
    cos = cos.float().expand(b, t, d // 2).contiguous()
    sin = sin.float().expand(b, t, d // 2).contiguous()
    return _RoPE.apply(x, cos, sin, layout == "neox")


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        gate, up = gate.contiguous(), up.contiguous()
        y = output_like(gate)
        n = gate.numel()
        _swiglu_forward[(triton.cdiv(n, 1024),)](gate, up, y, n, BLOCK=1024)
        ctx.save_for_backward(gate, up)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        gate, up = ctx.saved_tensors
        dg, du = output_like(gate), output_like(up)
        n = gate.numel()
        _swiglu_backward[(triton.cdiv(n, 1024),)](dy.contiguous(), gate, up, dg, du, n, BLOCK=1024)
        return dg, du


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) · up, fused (Triton)."""
    check_launch(gate)
    return _SwiGLU.apply(gate, up)
