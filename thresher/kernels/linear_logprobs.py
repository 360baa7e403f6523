"""Fused linear log-probs: per-token log p(target) and entropy of softmax(h·Wᵀ/T), straight from the
hidden states and the LM head, without the [tokens × vocab] logits.

Triton path (CUDA, or the CPU under ``TRITON_INTERPRET=1``): the forward kernel walks the
vocabulary in blocks for a block of tokens, computing each logits tile with fp32 accumulation and
keeping an online log-sum-exp, the target's logit and Σ p·z for the entropy. The backward kernel
recomputes each tile, forms the logits' gradient
``g_logp·(onehot − p) − g_ent·p·(z − E[z])`` (over T), and accumulates the hidden states'
gradient (the token block owns its rows) and the head's gradient (fp32 atomics across token
blocks). Memory beyond the inputs: a few floats per token, plus fp32 gradient buffers.

Torch path (any device): the same results in chunks of tokens, each chunk's logits living only
inside a checkpointed function, so the backward recomputes them chunk by chunk.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from thresher.kernels.dispatch import check_launch, choose, triton, triton_usable
from thresher.kernels.memory import output_like

if triton is not None:
    import triton.language as tl

__all__ = ["linear_cross_entropy", "linear_logprobs", "linear_terms", "triton", "triton_usable", "use_triton"]


# ---------------------------------------------------------------- torch path

Terms = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # log p(target), entropy, uniform cross-entropy (lse − mean z)


def _chunk(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    ignore_index: int,
    with_entropy: bool,
    with_uniform: bool,
) -> Terms:
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    keep = targets != ignore_index
    logp = logp_all.gather(-1, targets.clamp_min(0)[:, None])[:, 0] * keep
    entropy = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else torch.zeros_like(logp)
    uniform = -logp_all.mean(-1) if with_uniform else torch.zeros_like(logp)
    return logp, entropy, uniform


def linear_terms_torch(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    chunk: int = 1024,
    bias: torch.Tensor | None = None,
    with_entropy: bool = True,
    with_uniform: bool = False,
) -> Terms:
    """Chunked PyTorch: at most ``chunk`` × vocab logits at a time, recomputed in backward (entropy and the
    uniform term are zeros unless asked for)."""
    parts: list[Terms] = []
    for lo in range(0, hidden.shape[0], chunk):
        args = (hidden[lo : lo + chunk], weight, bias, targets[lo : lo + chunk], temperature, ignore_index, with_entropy, with_uniform)
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            parts.append(checkpoint(_chunk, *args, use_reentrant=False))
        else:
            parts.append(_chunk(*args))
    if not parts:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty, empty
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


# ---------------------------------------------------------------- triton path

if triton is not None:

    @triton.jit
    def _logits_tile(
        h_ptr,
        w_ptr,
        rows,
        cols,
        row_ok,
        col_ok,
        H,
        stride_hn,
        stride_wv,
        inv_temp,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
        DOT_FP32: tl.constexpr,
    ):
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, H, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < H
            a = tl.load(h_ptr + rows[:, None] * stride_hn + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(w_ptr + cols[None, :] * stride_wv + ks[:, None], mask=col_ok[None, :] & k_ok[:, None], other=0.0)
            if DOT_FP32:
                a, b = a.to(tl.float32), b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        return acc * inv_temp

    @triton.jit
    def _forward_kernel(
        h_ptr,
        w_ptr,
        t_ptr,
        lse_ptr,
        logp_ptr,
        ent_ptr,
        uni_ptr,
        N,
        V,
        H,
        stride_hn,
        stride_wv,
        inv_temp,
        ignore_index,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
        DOT_FP32: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        target = tl.load(t_ptr + rows, mask=row_ok, other=ignore_index)
        run_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        run_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
        run_pz = tl.zeros((BLOCK_M,), dtype=tl.float32)  # Σ exp(z − max)·z
        target_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
        sum_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for v0 in range(0, V, BLOCK_N):
            cols = v0 + tl.arange(0, BLOCK_N)
            col_ok = cols < V
            z = _logits_tile(
                h_ptr, w_ptr, rows, cols, row_ok, col_ok, H, stride_hn, stride_wv, inv_temp, BLOCK_M, BLOCK_N, BLOCK_K, PRECISION, DOT_FP32
            )
            z = tl.where(col_ok[None, :], z, float("-inf"))
            new_max = tl.maximum(run_max, tl.max(z, axis=1))
            rescale = tl.exp(run_max - new_max)
            p = tl.exp(z - new_max[:, None])
            run_sum = run_sum * rescale + tl.sum(p, axis=1)
            run_pz = run_pz * rescale + tl.sum(p * tl.where(col_ok[None, :], z, 0.0), axis=1)
            target_z += tl.sum(tl.where(cols[None, :] == target[:, None], z, 0.0), axis=1)
            sum_z += tl.sum(tl.where(col_ok[None, :], z, 0.0), axis=1)
            run_max = new_max
        lse = run_max + tl.log(run_sum)
        entropy = lse - run_pz / run_sum
        logp = tl.where(target == ignore_index, 0.0, target_z - lse)
        tl.store(lse_ptr + rows, lse, mask=row_ok)
        tl.store(logp_ptr + rows, logp, mask=row_ok)
        tl.store(ent_ptr + rows, entropy, mask=row_ok)
        tl.store(uni_ptr + rows, lse - sum_z / V, mask=row_ok)

    @triton.jit
    def _backward_kernel(
        h_ptr,
        w_ptr,
        t_ptr,
        lse_ptr,
        ent_ptr,
        g_logp_ptr,
        g_ent_ptr,
        g_uni_ptr,
        dh_ptr,
        dw_ptr,
        N,
        V,
        H,
        stride_hn,
        stride_wv,
        inv_temp,
        ignore_index,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
        DOT_FP32: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        target = tl.load(t_ptr + rows, mask=row_ok, other=ignore_index)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        mean_z = lse - tl.load(ent_ptr + rows, mask=row_ok, other=0.0)  # E_p[z] = lse − entropy
        g_logp = tl.load(g_logp_ptr + rows, mask=row_ok, other=0.0)
        g_logp = tl.where(target == ignore_index, 0.0, g_logp)
        g_ent = tl.load(g_ent_ptr + rows, mask=row_ok, other=0.0)
        g_uni = tl.load(g_uni_ptr + rows, mask=row_ok, other=0.0)
        for v0 in range(0, V, BLOCK_N):
            cols = v0 + tl.arange(0, BLOCK_N)
            col_ok = cols < V
            z = _logits_tile(
                h_ptr, w_ptr, rows, cols, row_ok, col_ok, H, stride_hn, stride_wv, inv_temp, BLOCK_M, BLOCK_N, BLOCK_K, PRECISION, DOT_FP32
            )
            p = tl.exp(z - lse[:, None])
            onehot = tl.where(cols[None, :] == target[:, None], 1.0, 0.0)
            grad = g_logp[:, None] * (onehot - p) - g_ent[:, None] * p * (z - mean_z[:, None]) + g_uni[:, None] * (p - 1.0 / V)
            grad = tl.where(row_ok[:, None] & col_ok[None, :], grad, 0.0) * inv_temp
            if not DOT_FP32:
                grad = grad.to(h_ptr.dtype.element_ty)  # tensor-core dots in the input dtype, fp32 accumulation
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                k_ok = ks < H
                w_tile = tl.load(w_ptr + cols[:, None] * stride_wv + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
                if DOT_FP32:
                    w_tile = w_tile.to(tl.float32)
                dh_ptrs = dh_ptr + rows[:, None] * H + ks[None, :]
                dh_mask = row_ok[:, None] & k_ok[None, :]
                dh = tl.load(dh_ptrs, mask=dh_mask, other=0.0) + tl.dot(grad, w_tile, input_precision=PRECISION)
                tl.store(dh_ptrs, dh, mask=dh_mask)
                h_tile = tl.load(h_ptr + rows[:, None] * stride_hn + ks[None, :], mask=dh_mask, other=0.0)
                if DOT_FP32:
                    h_tile = h_tile.to(tl.float32)
                dw = tl.dot(tl.trans(grad), h_tile, input_precision=PRECISION)
                tl.atomic_add(dw_ptr + cols[:, None] * H + ks[None, :], dw, mask=col_ok[:, None] & k_ok[None, :])


def _blocks(n: int, v: int, h: int) -> tuple[int, int, int]:
    def fit(x: int, cap: int) -> int:
        return max(16, min(cap, triton.next_power_of_2(x)))

    return fit(n, 64), fit(v, 128), fit(h, 64)


class _LinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,  # type: ignore[override]
        ignore_index: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
        n, h = hidden.shape
        v = weight.shape[0]
        lse = output_like(hidden, (n,), torch.float32)
        logp, entropy, uniform = output_like(lse), output_like(lse), output_like(lse)
        bm, bn, bk = _blocks(n, v, h)
        precision = "ieee" if hidden.dtype == torch.float32 else "tf32"
        # fp32 inputs use exact fp32 dots; the interpreter (no tensor cores, numpy) upcasts 16-bit tiles too
        dot_fp32 = hidden.dtype == torch.float32 or hidden.device.type != "cuda"
        if n:
            _forward_kernel[(triton.cdiv(n, bm),)](
                hidden,
                weight,
                targets,
                lse,
                logp,
                entropy,
                uniform,
                n,
                v,
                h,
                hidden.stride(0),
                weight.stride(0),
                1.0 / temperature,
                ignore_index,
                BLOCK_M=bm,
                BLOCK_N=bn,
                BLOCK_K=bk,
                PRECISION=precision,
                DOT_FP32=dot_fp32,
            )
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.settings = (temperature, ignore_index, bm, bn, bk, precision, dot_fp32)
        return logp, entropy, uniform

    @staticmethod
    def backward(ctx, g_logp: torch.Tensor | None, g_entropy: torch.Tensor | None, g_uniform: torch.Tensor | None):  # type: ignore[override]
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        temperature, ignore_index, bm, bn, bk, precision, dot_fp32 = ctx.settings
        n, h = hidden.shape
        v = weight.shape[0]
        g_logp = torch.zeros_like(lse) if g_logp is None else g_logp.float().contiguous()
        g_entropy = torch.zeros_like(lse) if g_entropy is None else g_entropy.float().contiguous()
        g_uniform = torch.zeros_like(lse) if g_uniform is None else g_uniform.float().contiguous()
        dh = torch.zeros((n, h), dtype=torch.float32, device=hidden.device)
        dw = torch.zeros((v, h), dtype=torch.float32, device=hidden.device)
        if n:
            _backward_kernel[(triton.cdiv(n, bm),)](
                hidden,
                weight,
                targets,
                lse,
                entropy,
                g_logp,
                g_entropy,
                g_uniform,
                dh,
                dw,
                n,
                v,
                h,
                hidden.stride(0),
                weight.stride(0),
                1.0 / temperature,
                ignore_index,
                BLOCK_M=bm,
                BLOCK_N=bn,
                BLOCK_K=bk,
                PRECISION=precision,
                DOT_FP32=dot_fp32,
            )
        return dh.to(hidden.dtype), dw.to(weight.dtype), None, None, None


def linear_terms_triton(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, ignore_index: int = -100
) -> Terms:
    """The fused Triton kernels (see the module docstring)."""
    check_launch(hidden, weight)
    return _LinearLogprobs.apply(hidden, weight, targets, temperature, ignore_index)


def use_triton(backend: str, device: torch.device) -> bool:
    """The LM-head kernel's choice (``thresher.kernels.dispatch``): ``triton`` always (an error where it cannot
    run), ``torch`` never, ``auto`` where it measured faster on this class of device."""
    return choose(backend, "linear_logprobs", device) == "triton"


def linear_terms(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    backend: str = "auto",
    chunk: int = 1024,
    bias: torch.Tensor | None = None,
    with_entropy: bool = True,
    with_uniform: bool = False,
) -> Terms:
    """The per-token terms by the chosen backend; a head with a bias takes the torch path (whose entropy and
    uniform terms are zeros unless asked for; the kernel always gives them)."""
    if bias is None and use_triton(backend, hidden.device):
        return linear_terms_triton(hidden, weight, targets, temperature, ignore_index)
    return linear_terms_torch(hidden, weight, targets, temperature, ignore_index, chunk, bias, with_entropy, with_uniform)


def linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    backend: str = "auto",
    chunk: int = 1024,
    bias: torch.Tensor | None = None,
    with_entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(target) (0 where ``targets == ignore_index``) and entropy, in fp32, for ``hidden`` (N, H)
    and an LM head ``weight`` (V, H). ``backend``: ``triton``, ``torch`` (chunked), or ``auto``
    (as measured, ``thresher.kernels.dispatch``)."""
    logp, entropy, _ = linear_terms(hidden, weight, targets, temperature, ignore_index, backend, chunk, bias, with_entropy)
    return logp, entropy


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    temperature: float = 1.0,
    backend: str = "auto",
    chunk: int = 1024,
) -> torch.Tensor:
    """Fused linear cross-entropy, as ``F.cross_entropy(hidden @ weight.T / T, targets, ...)`` defines it:
    (1 − ε)·NLL + ε·(uniform cross-entropy), over the non-ignored tokens; ``reduction``: mean, sum or none."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be mean, sum or none, not {reduction!r}")
    logp, _, uniform = linear_terms(
        hidden, weight, targets, temperature, ignore_index, backend, chunk, with_entropy=False, with_uniform=label_smoothing > 0
    )
    keep = targets != ignore_index
    losses = (-(1.0 - label_smoothing) * logp + label_smoothing * uniform) * keep
    if reduction == "none":
        return losses
    return losses.sum() / keep.sum().clamp_min(1) if reduction == "mean" else losses.sum()
