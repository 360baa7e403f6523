"""Triton kernels for the transformer block's small ops, each with an autograd wrapper:

- RMSNorm (forward/backward): y = x · rsqrt(mean(x²) + eps) · w, statistics in fp32, a tile of rows per
  program; the backward is persistent (a program or two per SM), summing the weight's gradient in registers
  in the same pass, one partial row per program.
- RoPE in the ``neox`` layout (Hugging Face Llama/Qwen/Mistral: i pairs with i + D/2) and the ``llama``
  layout (Meta's original: 2i pairs with 2i + 1); per-row positions, so packed sequences work. One launch
  rotates q and k (``rope_qk``), each program a block of positions over every head, cos/sin read once per
  position through their strides (no expanded or contiguous copies of the inputs). The backward is the
  rotation by −θ.
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
    def _rms_forward(x_ptr, w_ptr, y_ptr, rstd_ptr, M, D, eps, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
        """ROWS rows per program as one (ROWS × BLOCK_D) tile: enough bytes in flight per SM."""
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        cols = tl.arange(0, BLOCK_D)
        row_ok = rows < M
        ok = row_ok[:, None] & (cols < D)[None, :]
        offsets = rows.to(tl.int64)[:, None] * D + cols[None, :]
        x = tl.load(x_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=cols < D, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / D + eps)
        tl.store(y_ptr + offsets, (x * rstd[:, None] * w[None, :]).to(y_ptr.dtype.element_ty), mask=ok)
        tl.store(rstd_ptr + rows, rstd, mask=row_ok)

    @triton.jit
    def _rms_backward(dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_part_ptr, M, D, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
        """Persistent: one program per SM (or two) strides over row tiles, writing dx and summing the weight's
        gradient in registers; one partial row per program, summed after (programs × D floats)."""
        program = tl.program_id(0)
        programs = tl.num_programs(0)
        cols = tl.arange(0, BLOCK_D)
        col_ok = cols < D
        w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        dw = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for tile in range(program, tl.cdiv(M, ROWS), programs):
            rows = tile * ROWS + tl.arange(0, ROWS)
            row_ok = rows < M
            ok = row_ok[:, None] & col_ok[None, :]
            offsets = rows.to(tl.int64)[:, None] * D + cols[None, :]
            x = tl.load(x_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
            rstd = tl.load(rstd_ptr + rows, mask=row_ok, other=0.0)
            x_hat = x * rstd[:, None]
            dyw = dy * w[None, :]
            dx = rstd[:, None] * (dyw - x_hat * (tl.sum(dyw * x_hat, axis=1) / D)[:, None])
            tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=ok)
            dw += tl.sum(dy * x_hat, axis=0)
        tl.store(dw_part_ptr + program * D + cols, dw, mask=col_ok)

    @triton.jit
    def _rope_tensor(
        x_ptr,
        y_ptr,
        b,
        ts,
        t_ok,
        cos,
        sin,
        HEADS,
        T,
        HALF,
        sxb,
        sxh,
        sxt,
        NEOX: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_H: tl.constexpr,
    ):
        """Rotate every head of one tensor at positions ``ts`` of batch row ``b``; y is contiguous (B, heads, T, D)."""
        i = tl.arange(0, BLOCK_H)
        ok = t_ok[:, None] & (i < HALF)[None, :]
        if NEOX:
            first, second = i, i + HALF
        else:
            first, second = 2 * i, 2 * i + 1
        x_rows = x_ptr + b.to(tl.int64) * sxb + ts.to(tl.int64)[:, None] * sxt
        y_rows = y_ptr + (b.to(tl.int64) * HEADS * T + ts.to(tl.int64)[:, None]) * (2 * HALF)
        for h in range(0, HEADS):
            xh = x_rows + h * sxh
            yh = y_rows + h * T * (2 * HALF)
            a = tl.load(xh + first[None, :], mask=ok, other=0.0).to(tl.float32)
            c = tl.load(xh + second[None, :], mask=ok, other=0.0).to(tl.float32)
            tl.store(yh + first[None, :], (a * cos - c * sin).to(y_ptr.dtype.element_ty), mask=ok)
            tl.store(yh + second[None, :], (c * cos + a * sin).to(y_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _rope_kernel(
        q_ptr,
        k_ptr,
        cos_ptr,
        sin_ptr,
        qy_ptr,
        ky_ptr,
        Q_HEADS,
        K_HEADS,
        T,
        HALF,
        sqb,
        sqh,
        sqt,
        skb,
        skh,
        skt,
        scb,
        sct,
        sign,
        HAS_K: tl.constexpr,
        NEOX: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_H: tl.constexpr,
    ):
        """One program: BLOCK_T positions of one batch row, every head of q and of k. cos/sin are read once
        for those positions, through their strides (a broadcast batch has stride 0: no expanded copies)."""
        t_blocks = tl.cdiv(T, BLOCK_T)
        b = tl.program_id(0) // t_blocks
        ts = (tl.program_id(0) % t_blocks) * BLOCK_T + tl.arange(0, BLOCK_T)
        t_ok = ts < T
        i = tl.arange(0, BLOCK_H)
        cs_ok = t_ok[:, None] & (i < HALF)[None, :]
        cs = b.to(tl.int64) * scb + ts.to(tl.int64)[:, None] * sct + i[None, :]
        cos = tl.load(cos_ptr + cs, mask=cs_ok, other=1.0).to(tl.float32)
        sin = tl.load(sin_ptr + cs, mask=cs_ok, other=0.0).to(tl.float32) * sign
        _rope_tensor(q_ptr, qy_ptr, b, ts, t_ok, cos, sin, Q_HEADS, T, HALF, sqb, sqh, sqt, NEOX, BLOCK_T, BLOCK_H)
        if HAS_K:
            _rope_tensor(k_ptr, ky_ptr, b, ts, t_ok, cos, sin, K_HEADS, T, HALF, skb, skh, skt, NEOX, BLOCK_T, BLOCK_H)

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


RMS_ELEMENTS = 8192  # elements per forward/backward tile: rows × the padded hidden size (untuned: the H200 sweep decides)
RMS_PROGRAMS_PER_SM = 2  # persistent backward programs per SM
ROPE_BLOCK_T = 16  # positions per RoPE program (untuned)


def _warps(elements: int) -> int:
    return 4 if elements <= 2048 else 8 if elements <= 8192 else 16


def _sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 2


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()
        m, d = x2.shape
        y = output_like(x2)
        rstd = output_like(x2, (m,), torch.float32)
        block_d = _block(d)
        rows = max(1, min(16, RMS_ELEMENTS // block_d))
        if m:
            _rms_forward[(triton.cdiv(m, rows),)](
                x2, weight, y, rstd, m, d, eps, ROWS=rows, BLOCK_D=block_d, num_warps=_warps(rows * block_d)
            )
        ctx.save_for_backward(x2, weight, rstd)
        return y.reshape(shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        x2, weight, rstd = ctx.saved_tensors
        m, d = x2.shape
        block_d = _block(d)
        rows = max(1, min(16, RMS_ELEMENTS // block_d))
        programs = max(1, min(triton.cdiv(m, rows), RMS_PROGRAMS_PER_SM * _sms(x2.device)))
        dx = output_like(x2)
        dw_parts = output_like(x2, (programs, d), torch.float32)
        if m:
            _rms_backward[(programs,)](
                dy.reshape(-1, d).contiguous(), x2, weight, rstd, dx, dw_parts, m, d, ROWS=rows, BLOCK_D=block_d,
                num_warps=_warps(rows * block_d),
            )  # fmt: skip
        else:
            dw_parts.zero_()
        return dx.reshape(dy.shape), dw_parts.sum(0).to(weight.dtype), None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Fused RMSNorm over the last dimension (Triton)."""
    check_launch(x)
    return _RMSNorm.apply(x, weight, eps)


def _angles(table: torch.Tensor, b: int, t: int, half: int) -> tuple[torch.Tensor, int, int]:
    """A (T, D/2) or (B, T, D/2) table (any strides, last one 1) and its (batch, position) strides; batch 0 when shared."""
    if table.stride(-1) != 1:
        table = table.contiguous()
    if table.dim() == 2:
        return table, 0, table.stride(0)
    if table.shape[0] == 1 or table.stride(0) == 0:
        return table, 0, table.stride(1)
    return table, table.stride(0), table.stride(1)


def _rope_launch(
    q: torch.Tensor, k: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor, neox: bool, sign: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """q (and k) rotated in one launch; inputs through their strides (the last dimension contiguous)."""
    q = q if q.stride(-1) == 1 else q.contiguous()
    k = k if k is None or k.stride(-1) == 1 else k.contiguous()
    b, q_heads, t, d = q.shape
    half = d // 2
    cos, scb, sct = _angles(cos, b, t, half)
    sin, _, _ = _angles(sin, b, t, half)
    if sin.stride() != cos.stride():
        cos, sin = cos.contiguous(), sin.contiguous()
        cos, scb, sct = _angles(cos, b, t, half)
    qy = output_like(q, q.shape)
    ky = None if k is None else output_like(k, k.shape)
    kk = q if k is None else k
    if q.numel():
        block_t = min(ROPE_BLOCK_T, triton.next_power_of_2(t))
        _rope_kernel[(b * triton.cdiv(t, block_t),)](
            q, kk, cos, sin, qy, qy if ky is None else ky, q_heads, kk.shape[1], t, half,
            q.stride(0), q.stride(1), q.stride(2), kk.stride(0), kk.stride(1), kk.stride(2), scb, sct, sign,
            HAS_K=k is not None, NEOX=neox, BLOCK_T=block_t, BLOCK_H=_block(half), num_warps=4,
        )  # fmt: skip
    return qy, ky


class _RoPE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor, neox: bool):  # type: ignore[override]
        ctx.save_for_backward(cos, sin)
        ctx.neox = neox
        return _rope_launch(q, k, cos, sin, neox, 1.0)

    @staticmethod
    def backward(ctx, dq: torch.Tensor | None, dk: torch.Tensor | None):  # type: ignore[override]
        cos, sin = ctx.saved_tensors
        if dq is None:  # the rotation by −θ of whichever gradients came back
            dk_out, _ = _rope_launch(dk, None, cos, sin, ctx.neox, -1.0) if dk is not None else (None, None)
            return None, dk_out, None, None, None
        dq_out, dk_out = _rope_launch(dq, dk, cos, sin, ctx.neox, -1.0)
        return dq_out, dk_out, None, None, None


def _rope_check(q: torch.Tensor, cos: torch.Tensor, layout: str) -> None:
    if layout not in ("neox", "llama"):
        raise ValueError(f"unknown RoPE layout {layout!r}; known: neox, llama")
    if cos.shape[-1] != q.shape[-1] // 2 or cos.shape[-2] != q.shape[-2]:
        raise ValueError(
            f"RoPE angles of shape {tuple(cos.shape)} do not fit (B, heads, T, D) = {tuple(q.shape)}: need (T, D/2) or (B, T, D/2)"
        )
    check_launch(q)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "neox") -> torch.Tensor:
    """Rotary embedding of ``x`` (B, heads, T, D); ``cos``/``sin`` are (T, D/2) or (B, T, D/2), one angle per
    position and frequency (positions may restart inside a row, as in packed sequences)."""
    _rope_check(x, cos, layout)
    return _RoPE.apply(x, None, cos, sin, layout == "neox")[0]


def rope_qk(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "neox"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rope`` of q and k (their own head counts, as with grouped-query attention) in one launch, forward and
    backward: each position's cos/sin read once for both."""
    _rope_check(q, cos, layout)
    if k.shape[0] != q.shape[0] or k.shape[2:] != q.shape[2:]:
        raise ValueError(f"RoPE: k {tuple(k.shape)} does not match q {tuple(q.shape)} but in heads")
    qy, ky = _RoPE.apply(q, k, cos, sin, layout == "neox")
    return qy, ky


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
