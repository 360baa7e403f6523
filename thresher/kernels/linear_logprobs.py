"""Fused linear log-probs: per-token log p(target) (and, when asked, the entropy and the uniform cross-entropy
used by label smoothing) of softmax(h·Wᵀ/T), straight from the hidden states and the LM head, without the
[tokens × vocab] logits.

Triton path (CUDA, or the CPU under ``TRITON_INTERPRET=1``), in the class of Cut Cross-Entropy:

- Forward: a 2-D grid of (token tile × vocabulary split). Each program walks its split's vocabulary tiles,
  computing each logits tile on tensor cores (fp32 accumulation) and keeping the split's running max,
  Σ exp, the target's logit and, only where compiled in (``ENTROPY``/``UNIFORM``), Σ p·z and Σ z. A few floats
  per token and split are combined by PyTorch in a fixed order: deterministic, no logits in memory.
- Backward: a 2-D grid of (token tile × vocabulary tile) in grouped order. Each program recomputes its logits
  tile once, forms the logits' gradient ``g_logp·(onehot − p) − g_ent·p·(z − E[z]) + g_uni·(p − 1/V)`` (over T)
  in registers, and adds G·W into the hidden states' gradient and Gᵀ·h into the weight's, one BLOCK_K slice
  at a time, each slice a read-modify-write under a lock of its own: no per-element atomics. The hidden
  states' gradient is summed in fp32 a slab of tokens at a time (``DH_SLAB_BYTES``); a 16-bit weight's
  gradient is summed in its own dtype (one rounding per token tile, as CCE does), or with ``exact_grads`` in
  fp32 slabs of vocabulary (``DW_SLAB_BYTES``), rounded once. Memory beyond the gradients: those slabs.
- Tiles: per (device class, dtype, hidden, vocab) from ``tuned/linear_logprobs.json``, written by
  ``benchmarks/gpu/sweep_linear_logprobs.py`` on the GPU; defaults where nothing was tuned.

Torch path (any device): the same results in chunks of tokens, each chunk's logits living only inside a
checkpointed function, so the backward recomputes them chunk by chunk.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from thresher.kernels.dispatch import check_launch, choose, device_class, triton, triton_usable

if triton is not None:
    import triton.language as tl

__all__ = [
    "Tiles",
    "linear_cross_entropy",
    "linear_logprobs",
    "linear_terms",
    "linear_terms_triton",
    "tiles_for",
    "triton",
    "triton_usable",
    "use_triton",
]


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
        inv_temp,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
        DOT_FP32: tl.constexpr,
    ):
        """z = h[rows] · w[cols]ᵀ / T for one (BLOCK_M × BLOCK_N) tile, fp32 accumulation (int64 offsets)."""
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        h_rows = h_ptr + rows.to(tl.int64)[:, None] * H
        w_cols = w_ptr + cols.to(tl.int64)[None, :] * H
        for k0 in range(0, H, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < H
            a = tl.load(h_rows + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(w_cols + ks[:, None], mask=col_ok[None, :] & k_ok[:, None], other=0.0)
            if DOT_FP32:
                a, b = a.to(tl.float32), b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        return acc * inv_temp

    @triton.jit
    def _forward_kernel(
        h_ptr,
        w_ptr,
        t_ptr,
        max_ptr,
        sum_ptr,
        tz_ptr,
        pz_ptr,
        sz_ptr,
        N,
        V,
        H,
        TILES_PER_SPLIT,
        inv_temp,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
        DOT_FP32: tl.constexpr,
        ENTROPY: tl.constexpr,
        UNIFORM: tl.constexpr,
    ):
        """One program: a token tile × one split of the vocabulary. Writes the split's partials (running max,
        Σ exp(z − max), the target's logit, and with ENTROPY/UNIFORM Σ exp(z − max)·z and Σ z) at [split, rows]."""
        m_tiles = tl.cdiv(N, BLOCK_M)
        pid = tl.program_id(0)
        split = pid // m_tiles  # token tiles fastest: programs in flight share the split's weight tiles (L2)
        rows = (pid % m_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        target = tl.load(t_ptr + rows, mask=row_ok, other=-1)
        run_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        run_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
        run_pz = tl.zeros((BLOCK_M,), dtype=tl.float32)
        sum_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
        target_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
        v_start = split * TILES_PER_SPLIT * BLOCK_N
        v_end = tl.minimum(v_start + TILES_PER_SPLIT * BLOCK_N, V)
        for v0 in range(v_start, v_end, BLOCK_N):
            cols = v0 + tl.arange(0, BLOCK_N)
            col_ok = cols < v_end
            z = _logits_tile(h_ptr, w_ptr, rows, cols, row_ok, col_ok, H, inv_temp, BLOCK_M, BLOCK_N, BLOCK_K, PRECISION, DOT_FP32)
            z = tl.where(col_ok[None, :], z, float("-inf"))
            new_max = tl.maximum(run_max, tl.max(z, axis=1))
            rescale = tl.exp(run_max - new_max)
            p = tl.exp(z - new_max[:, None])
            run_sum = run_sum * rescale + tl.sum(p, axis=1)
            if ENTROPY:
                run_pz = run_pz * rescale + tl.sum(p * tl.where(col_ok[None, :], z, 0.0), axis=1)
            if UNIFORM:
                sum_z += tl.sum(tl.where(col_ok[None, :], z, 0.0), axis=1)
            target_z += tl.sum(tl.where(cols[None, :] == target[:, None], z, 0.0), axis=1)
            run_max = new_max
        out = split.to(tl.int64) * N + rows
        tl.store(max_ptr + out, run_max, mask=row_ok)
        tl.store(sum_ptr + out, run_sum, mask=row_ok)
        tl.store(tz_ptr + out, target_z, mask=row_ok)
        if ENTROPY:
            tl.store(pz_ptr + out, run_pz, mask=row_ok)
        if UNIFORM:
            tl.store(sz_ptr + out, sum_z, mask=row_ok)

    @triton.jit
    def _accumulate(acc_ptr, lock_ptr, offsets, mask, part):
        """acc[offsets] += part under the tile's lock: one read-modify-write of the tile, in fp32, stored in the
        accumulator's dtype (no per-element atomics)."""
        while tl.atomic_cas(lock_ptr, 0, 1) == 1:
            pass
        total = tl.load(acc_ptr + offsets, mask=mask, other=0.0).to(tl.float32) + part
        tl.store(acc_ptr + offsets, total.to(acc_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # every thread's store lands before the lock is released (Triton's layer-norm tutorial)
        tl.atomic_xchg(lock_ptr, 0)

    @triton.jit
    def _backward_kernel(
        h_ptr,
        w_ptr,
        t_ptr,
        lse_ptr,
        mean_z_ptr,
        g_logp_ptr,
        g_ent_ptr,
        g_uni_ptr,
        dh_ptr,
        dw_ptr,
        dh_lock_ptr,
        dw_lock_ptr,
        ROW0,
        ROWS,
        COL0,
        COLS,
        H,
        inv_temp,
        inv_v,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        GROUP_M: tl.constexpr,
        PRECISION: tl.constexpr,
        DOT_FP32: tl.constexpr,
        G_ENTROPY: tl.constexpr,
        G_UNIFORM: tl.constexpr,
    ):
        """One program: one (token tile × vocab tile) of the slab [ROW0, ROW0 + ROWS) × [COL0, COL0 + COLS). It
        recomputes its logits once, forms the logits' gradient in registers, and adds G·W to the hidden states'
        accumulator (rows relative to ROW0) and Gᵀ·h to the weight's (columns relative to COL0), each per
        BLOCK_K slice under that slice's lock."""
        m_tiles = tl.cdiv(ROWS, BLOCK_M)
        n_tiles = tl.cdiv(COLS, BLOCK_N)
        pid = tl.program_id(0)
        per_group = GROUP_M * n_tiles  # grouped order: GROUP_M token tiles share each weight tile while in L2
        first_m = (pid // per_group) * GROUP_M
        group_m = tl.minimum(m_tiles - first_m, GROUP_M)
        m_tile = first_m + (pid % per_group) % group_m
        n_tile = (pid % per_group) // group_m
        local_rows = m_tile * BLOCK_M + tl.arange(0, BLOCK_M)
        local_cols = n_tile * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = local_rows < ROWS
        col_ok = local_cols < COLS
        rows = ROW0 + local_rows
        cols = COL0 + local_cols
        z = _logits_tile(h_ptr, w_ptr, rows, cols, row_ok, col_ok, H, inv_temp, BLOCK_M, BLOCK_N, BLOCK_K, PRECISION, DOT_FP32)
        target = tl.load(t_ptr + rows, mask=row_ok, other=-1)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        g_logp = tl.load(g_logp_ptr + rows, mask=row_ok, other=0.0)
        p = tl.exp(z - lse[:, None])
        grad = g_logp[:, None] * (tl.where(cols[None, :] == target[:, None], 1.0, 0.0) - p)
        if G_ENTROPY:
            g_ent = tl.load(g_ent_ptr + rows, mask=row_ok, other=0.0)
            mean_z = tl.load(mean_z_ptr + rows, mask=row_ok, other=0.0)
            grad -= g_ent[:, None] * p * (z - mean_z[:, None])
        if G_UNIFORM:
            g_uni = tl.load(g_uni_ptr + rows, mask=row_ok, other=0.0)
            grad += g_uni[:, None] * (p - inv_v)
        grad = tl.where(row_ok[:, None] & col_ok[None, :], grad, 0.0) * inv_temp
        if not DOT_FP32:
            grad = grad.to(h_ptr.dtype.element_ty)  # tensor-core dots in the input dtype, fp32 accumulation
        h_rows = h_ptr + rows.to(tl.int64)[:, None] * H
        w_cols = w_ptr + cols.to(tl.int64)[:, None] * H
        dh_rows = local_rows.to(tl.int64)[:, None] * H
        dw_cols = local_cols.to(tl.int64)[:, None] * H
        k_slices = tl.cdiv(H, BLOCK_K)
        for k_slice in range(0, k_slices):
            ks = k_slice * BLOCK_K + tl.arange(0, BLOCK_K)
            k_ok = ks < H
            w_tile = tl.load(w_cols + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
            h_tile = tl.load(h_rows + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            if DOT_FP32:
                w_tile, h_tile = w_tile.to(tl.float32), h_tile.to(tl.float32)
            dh = tl.dot(grad, w_tile, input_precision=PRECISION)
            _accumulate(dh_ptr, dh_lock_ptr + m_tile * k_slices + k_slice, dh_rows + ks[None, :], row_ok[:, None] & k_ok[None, :], dh)
            dw = tl.dot(tl.trans(grad), h_tile, input_precision=PRECISION)
            _accumulate(dw_ptr, dw_lock_ptr + n_tile * k_slices + k_slice, dw_cols + ks[None, :], col_ok[:, None] & k_ok[None, :], dw)


# ---------------------------------------------------------------- tile configurations

CONFIG_FILE = Path(__file__).with_name("tuned") / "linear_logprobs.json"
CONFIG_ENV = "THRESHER_LINEAR_LOGPROBS_CONFIGS"  # another configurations file (what the sweep writes), read first
DH_SLAB_BYTES = 4 << 20  # the fp32 hidden-state gradient is accumulated this many bytes of tokens at a time
DW_SLAB_BYTES = 64 << 20  # exact mode: the fp32 weight gradient is accumulated this many bytes of vocabulary at a time


@dataclass(frozen=True)
class Tiles:
    """One kernel's launch: tile sizes, warps and pipeline stages; ``group_m`` (backward) is the grouped order's
    width; ``waves`` (forward) how many programs per SM the vocabulary splits aim at."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 64
    num_warps: int = 8
    num_stages: int = 3
    group_m: int = 8
    waves: int = 4

    def fitted(self, n: int, v: int, h: int) -> Tiles:
        """Shrunk (powers of two, ≥ 16) where the problem is smaller than a tile."""
        fit = lambda x, cap: max(16, min(cap, triton.next_power_of_2(max(x, 1))))  # noqa: E731
        return replace(self, block_m=fit(n, self.block_m), block_n=fit(v, self.block_n), block_k=fit(h, self.block_k))


INTERPRETER_TILES = (Tiles(32, 64, 32, 4, 1, 2, 1), Tiles(32, 64, 32, 4, 1, 2, 1))  # numpy: small tiles, few programs


@functools.lru_cache(maxsize=8)
def _tuned_table(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def tuned_entries() -> dict[str, Any]:
    """The tuned configurations: ``{device class: {dtype: [{"hidden", "vocab", "forward", "backward", "evidence"}]}}``
    from ``$THRESHER_LINEAR_LOGPROBS_CONFIGS`` if set, else the package's ``tuned/linear_logprobs.json``."""
    return _tuned_table(os.environ.get(CONFIG_ENV) or str(CONFIG_FILE))


def tiles_for(hidden: int, vocab: int, dtype: torch.dtype, klass: str) -> tuple[Tiles, Tiles]:
    """(forward, backward) tiles for device class ``klass`` (``cuda:sm90``…; ``interpreter`` for CPU tensors, which
    always get small tiles): the tuned entry for that class and dtype nearest in (hidden, vocab) on a log scale,
    else the defaults."""
    if klass == "interpreter":
        return INTERPRETER_TILES
    entries = tuned_entries().get(klass, {}).get(str(dtype).removeprefix("torch."), [])
    if not entries:
        return Tiles(), Tiles()
    best = min(entries, key=lambda e: abs(math.log(e["hidden"] / hidden)) + abs(math.log(e["vocab"] / vocab)))
    return Tiles(**best["forward"]), Tiles(**best["backward"])


def _programs_per_wave(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


# ---------------------------------------------------------------- the autograd function


class _LinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        ignore_index: int,
        with_entropy: bool,
        with_uniform: bool,
        exact_grads: bool,
        tiles: tuple[Tiles, Tiles] | None,
    ) -> Terms:
        hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
        n, h = hidden.shape
        v = weight.shape[0]
        klass = device_class(hidden.device) if hidden.device.type == "cuda" else "interpreter"
        fwd, bwd = tiles or tiles_for(h, v, hidden.dtype, klass)
        fwd = fwd.fitted(n, v, h)
        m_tiles, v_tiles = triton.cdiv(max(n, 1), fwd.block_m), triton.cdiv(v, fwd.block_n)
        splits = max(1, min(v_tiles, triton.cdiv(fwd.waves * _programs_per_wave(hidden.device), m_tiles)))
        per_split = triton.cdiv(v_tiles, splits)
        splits = triton.cdiv(v_tiles, per_split)  # none empty
        parts = torch.empty((5, splits, n), dtype=torch.float32, device=hidden.device)
        precision = "ieee" if hidden.dtype == torch.float32 else "tf32"
        # fp32 inputs use exact fp32 dots; the interpreter (no tensor cores, numpy) upcasts 16-bit tiles too
        dot_fp32 = hidden.dtype == torch.float32 or hidden.device.type != "cuda"
        if n:
            _forward_kernel[(m_tiles * splits,)](
                hidden, weight, targets, parts[0], parts[1], parts[2], parts[3], parts[4],
                n, v, h, per_split, 1.0 / temperature,
                BLOCK_M=fwd.block_m, BLOCK_N=fwd.block_n, BLOCK_K=fwd.block_k, PRECISION=precision, DOT_FP32=dot_fp32,
                ENTROPY=with_entropy, UNIFORM=with_uniform, num_warps=fwd.num_warps, num_stages=fwd.num_stages,
            )  # fmt: skip
        # combine the splits (deterministic: a fixed order over a few floats per token)
        top = parts[0].max(0).values
        scale = torch.exp(parts[0] - top)
        total = (parts[1] * scale).sum(0)
        lse = top + torch.log(total)
        ignored = targets == ignore_index
        logp = torch.where(ignored, 0.0, parts[2].sum(0) - lse)
        zeros = torch.zeros_like(lse)
        mean_z = (parts[3] * scale).sum(0) / total if with_entropy else zeros
        entropy = lse - mean_z if with_entropy else zeros
        uniform = lse - parts[4].sum(0) / v if with_uniform else zeros
        ctx.save_for_backward(hidden, weight, targets, lse, mean_z)
        ctx.settings = (temperature, ignore_index, with_entropy, with_uniform, exact_grads, bwd, precision, dot_fp32)
        return logp, entropy, uniform

    @staticmethod
    def backward(ctx, g_logp: torch.Tensor | None, g_entropy: torch.Tensor | None, g_uniform: torch.Tensor | None):  # type: ignore[override]
        hidden, weight, targets, lse, mean_z = ctx.saved_tensors
        temperature, ignore_index, with_entropy, with_uniform, exact, bwd, precision, dot_fp32 = ctx.settings
        n, h = hidden.shape
        v = weight.shape[0]
        if n == 0:
            return torch.zeros_like(hidden), torch.zeros_like(weight), None, None, None, None, None, None, None
        bwd = bwd.fitted(n, v, h)
        zeros = torch.zeros_like(lse)
        g_logp = zeros if g_logp is None else g_logp.float().masked_fill(targets == ignore_index, 0.0).contiguous()
        g_ent = g_entropy.float().contiguous() if with_entropy and g_entropy is not None else zeros
        g_uni = g_uniform.float().contiguous() if with_uniform and g_uniform is not None else zeros
        dh = torch.empty_like(hidden)
        dw = torch.empty_like(weight)
        # fp32 sums, each rounded once into the gradient's dtype: the hidden states' in slabs of tokens; the
        # weight's in its own dtype (one rounding per token tile), or with ``exact`` in fp32 slabs of vocabulary
        one_token_slab = exact or hidden.dtype == torch.float32
        one_vocab_slab = not exact or weight.dtype == torch.float32
        token_slab = n if one_token_slab else max(bwd.block_m, DH_SLAB_BYTES // (4 * h) // bwd.block_m * bwd.block_m)
        vocab_slab = v if one_vocab_slab else max(bwd.block_n, DW_SLAB_BYTES // (4 * h) // bwd.block_n * bwd.block_n)
        token_slabs = [(r0, min(token_slab, n - r0)) for r0 in range(0, n, token_slab)]
        vocab_slabs = [(c0, min(vocab_slab, v - c0)) for c0 in range(0, v, vocab_slab)]
        f32 = dict(dtype=torch.float32, device=hidden.device)
        dh_acc = dh if hidden.dtype == torch.float32 else torch.empty((min(token_slab, n), h), **f32)  # type: ignore[arg-type]
        dw_acc = dw if one_vocab_slab else torch.empty((vocab_slab, h), **f32)  # type: ignore[arg-type]
        dh_acc.zero_()
        if dw_acc is dw:
            dw.zero_()
        k_slices = triton.cdiv(h, bwd.block_k)
        dh_locks = torch.zeros(triton.cdiv(max(min(token_slab, n), 1), bwd.block_m) * k_slices, dtype=torch.int32, device=hidden.device)
        dw_locks = torch.zeros(triton.cdiv(vocab_slab, bwd.block_n) * k_slices, dtype=torch.int32, device=hidden.device)
        launch = dict(
            BLOCK_M=bwd.block_m, BLOCK_N=bwd.block_n, BLOCK_K=bwd.block_k, GROUP_M=bwd.group_m, PRECISION=precision,
            DOT_FP32=dot_fp32, G_ENTROPY=with_entropy and g_entropy is not None, G_UNIFORM=with_uniform and g_uniform is not None,
            num_warps=bwd.num_warps, num_stages=bwd.num_stages,
        )  # fmt: skip
        for c0, cols in vocab_slabs:
            if dw_acc is not dw:
                dw_acc.zero_()
            for r0, rows in token_slabs:
                if len(token_slabs) > 1:
                    dh_acc.zero_()
                grid = (triton.cdiv(rows, bwd.block_m) * triton.cdiv(cols, bwd.block_n),)
                _backward_kernel[grid](
                    hidden, weight, targets, lse, mean_z, g_logp, g_ent, g_uni, dh_acc, dw_acc, dh_locks, dw_locks,
                    r0, rows, c0, cols, h, 1.0 / temperature, 1.0 / v, **launch,
                )  # fmt: skip
                if len(token_slabs) > 1:
                    dh[r0 : r0 + rows] = dh_acc[:rows]
            if dw_acc is not dw:
                dw[c0 : c0 + cols] = dw_acc[:cols]
        if len(token_slabs) == 1 and dh_acc is not dh:
            dh.copy_(dh_acc)
        return dh, dw, None, None, None, None, None, None, None


def linear_terms_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    with_entropy: bool = True,
    with_uniform: bool = False,
    exact_grads: bool = False,
    tiles: tuple[Tiles, Tiles] | None = None,
) -> Terms:
    """The fused Triton kernels (see the module docstring). ``exact_grads``: a 16-bit weight's gradient is summed in
    fp32 (vocabulary slabs of ``DW_SLAB_BYTES``) and rounded once, instead of once per token tile. ``tiles``:
    (forward, backward) launch settings instead of the tuned ones (the sweep)."""
    check_launch(hidden, weight)
    return _LinearLogprobs.apply(hidden, weight, targets, temperature, ignore_index, with_entropy, with_uniform, exact_grads, tiles)


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
    """The per-token terms by the chosen backend (entropy and the uniform term are zeros unless asked for); a head
    with a bias takes the torch path."""
    if bias is None and use_triton(backend, hidden.device):
        return linear_terms_triton(hidden, weight, targets, temperature, ignore_index, with_entropy, with_uniform)
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
