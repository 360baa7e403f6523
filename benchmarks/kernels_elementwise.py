"""RMSNorm, RoPE and SwiGLU, forward + backward: Thresher's Triton kernels against PyTorch eager,
torch.compile and Liger-Kernel (where it installs), with achieved memory bandwidth: GB/s is the bytes
a forward + backward must move at least, over its time, counted per op:

- RMSNorm: forward reads x, writes y; backward reads x and dy, writes dx: 5 × N·D elements (plus the weight,
  its gradient and one fp32 statistic per row, counted too).
- RoPE: forward reads q, writes the rotated q; backward reads dy, writes dq: 4 × N·D elements, plus cos and
  sin (N·D/2 each, in their dtype) read once per pass. ``rope_qk`` does q and k (8 KV heads) in one launch.
- SwiGLU: forward reads gate and up, writes y; backward reads dy, gate, up, writes d gate and d up: 8 × N·F.

A row prints as soon as its method is measured (eager first: the ratio's base). Needs CUDA: on the CPU the
Triton kernels run only under the interpreter, which says nothing about speed (``--dry-run``: the code path).

Run: python benchmarks/kernels_elementwise.py [--tokens 16384 --hidden 4096 --intermediate 14336 --heads 32 --dtype bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from thresher.kernels.elementwise import rms_norm, rope, rope_qk, swiglu  # noqa: E402
from thresher.kernels.reference import rms_norm_reference, rope_reference, swiglu_reference  # noqa: E402


def timed(fn: Callable[[], Any], inputs: list[torch.Tensor], repeats: int) -> float:
    """Mean seconds of forward + backward (random output gradients made once, outside the timing)."""
    outputs = fn()
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    grads = [torch.randn_like(o) for o in outputs]
    for _ in range(2):
        torch.autograd.grad(_tuple(fn()), inputs, grads)
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        torch.autograd.grad(_tuple(fn()), inputs, grads)
    _sync()
    return (time.perf_counter() - start) / repeats


def _tuple(x: Any) -> tuple[torch.Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def liger(name: str) -> Callable[..., torch.Tensor] | None:
    try:
        if name == "rms_norm":
            from liger_kernel.ops.rms_norm import LigerRMSNormFunction

            return lambda x, w, eps: LigerRMSNormFunction.apply(x, w, eps)
        if name == "swiglu":
            from liger_kernel.ops.swiglu import LigerSiLUMulFunction

            return LigerSiLUMulFunction.apply
        if name == "rope":
            from liger_kernel.ops.rope import LigerRopeFunction

            return LigerRopeFunction.apply
    except ImportError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--intermediate", type=int, default=14336)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--peak-gbps", type=float, default=4800.0, help="the card's memory bandwidth (H200: 4.8 TB/s)")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU under TRITON_INTERPRET=1: the code path, no speed")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.dry_run:
        raise SystemExit("kernels_elementwise.py needs CUDA (Triton's CPU interpreter is for correctness, not speed)")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: --dry-run under TRITON_INTERPRET=1, tiny shapes
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    size = torch.finfo(dtype).bits // 8
    n, d, f, heads = args.tokens, args.hidden, args.intermediate, args.heads
    head_dim = d // heads
    kv_heads = max(1, heads // 4)
    x = torch.randn(n, d, device=device, dtype=dtype, requires_grad=True)
    w = torch.ones(d, device=device, dtype=dtype, requires_grad=True)
    q = torch.randn(1, heads, n, head_dim, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(1, kv_heads, n, head_dim, device=device, dtype=dtype, requires_grad=True)
    angles = torch.randn(n, head_dim // 2, device=device)
    cos, sin = angles.cos(), angles.sin()
    full_cos, full_sin = torch.cat([cos, cos], -1)[None].to(dtype), torch.cat([sin, sin], -1)[None].to(dtype)  # HF/Liger's table
    gate = torch.randn(n, f, device=device, dtype=dtype, requires_grad=True)
    up = torch.randn(n, f, device=device, dtype=dtype, requires_grad=True)
    angle_bytes = 2 * 2 * n * (head_dim // 2) * 4  # cos and sin (fp32), forward and backward
    cases: dict[str, tuple[int, dict[str, Callable[[], Any]], list[torch.Tensor]]] = {
        # name: (bytes a forward + backward moves at least, {method: fn}, inputs)
        "rms_norm": (
            size * n * d * 5 + 4 * n * 2 + size * d * 3,
            {
                "eager": lambda: rms_norm_reference(x, w),
                "compile": torch.compile(lambda: rms_norm_reference(x, w)),
                "thresher": lambda: rms_norm(x, w, 1e-6),
            },
            [x, w],
        ),
        "rope": (
            size * n * d * 4 + angle_bytes,
            {
                "eager": lambda: rope_reference(q, cos, sin),
                "compile": torch.compile(lambda: rope_reference(q, cos, sin)),
                "thresher": lambda: rope(q, cos, sin),
            },
            [q],
        ),
        "rope_qk": (
            size * n * head_dim * (heads + kv_heads) * 4 + angle_bytes,
            {
                "eager": lambda: (rope_reference(q, cos, sin), rope_reference(k, cos, sin)),
                "compile": torch.compile(lambda: (rope_reference(q, cos, sin), rope_reference(k, cos, sin))),
                "thresher": lambda: rope_qk(q, k, cos, sin),
            },
            [q, k],
        ),
        "swiglu": (
            size * n * f * 8,
            {
                "eager": lambda: swiglu_reference(gate, up),
                "compile": torch.compile(lambda: swiglu_reference(gate, up)),
                "thresher": lambda: swiglu(gate, up),
            },
            [gate, up],
        ),
    }
    lig_rms, lig_swiglu, lig_rope = liger("rms_norm"), liger("swiglu"), liger("rope")
    if lig_rms is not None:
        cases["rms_norm"][1]["liger"] = lambda: lig_rms(x, w, 1e-6)
    if lig_swiglu is not None:
        cases["swiglu"][1]["liger"] = lambda: lig_swiglu(gate, up)
    if lig_rope is not None:
        cases["rope_qk"][1]["liger"] = lambda: lig_rope(q, k, full_cos, full_sin)
    print(
        f"# {torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU (dry run)'}; torch {torch.__version__}; "
        f"{n} tokens, hidden {d}, intermediate {f}, {heads} heads ({kv_heads} KV heads for rope_qk), "
        f"{args.dtype}, forward + backward, mean of {args.repeats}"
    )
    print("| op | method | µs | vs eager | GB/s | % of peak |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    peak = args.peak_gbps
    for op, (moved, methods, inputs) in cases.items():
        times: dict[str, float] = {}
        for name, fn in methods.items():
            try:
                times[name] = timed(fn, inputs, args.repeats)
            except Exception as error:  # noqa: BLE001 - a method that fails is a row saying so, not a lost table
                print(f"| {op} | {name} | failed: {type(error).__name__}: {str(error)[:120]} | | | |", flush=True)
                continue
            seconds = times[name]
            base = times.get("eager")
            ratio = f"{seconds / base:.2f}×" if base else "–"
            gbps = moved / seconds / 1e9
            print(f"| {op} | {name} | {seconds * 1e6:.0f} | {ratio} | {gbps:,.0f} | {100 * gbps / peak:.0f}% |", flush=True)
        # what kernels=auto needs: is the Triton kernel faster than the PyTorch path the model runs (eager)?
        figures = {name: seconds * 1e6 for name, seconds in times.items()}
        faster = "thresher" in times and "eager" in times and times["thresher"] < times["eager"]
        gbps = {name: moved / seconds / 1e9 for name, seconds in times.items()}
        print(
            "RESULT " + json.dumps({f"elementwise/{op}": {"us": figures, "gbps": gbps, "bytes": moved, "triton_faster": faster}}),
            flush=True,
        )


if __name__ == "__main__":
    main()
