"""RMSNorm, RoPE and SwiGLU, forward + backward: Thresher's Triton kernels against PyTorch eager,
torch.compile and Liger-Kernel (where it installs), with achieved memory bandwidth (GB/s: the bytes
each op must read and write at least, over its time). Needs CUDA: on the CPU the Triton kernels run
only under the interpreter, which says nothing about speed.

Run: python benchmarks/kernels_elementwise.py [--tokens 16384 --hidden 4096 --intermediate 14336 --heads 32 --dtype bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from thresher.kernels.elementwise import rms_norm, rope, swiglu  # noqa: E402
from thresher.kernels.reference import rms_norm_reference, rope_reference, swiglu_reference  # noqa: E402


def timed(fn: Callable[[], torch.Tensor], grad: torch.Tensor, inputs: list[torch.Tensor], repeats: int) -> float:
    for _ in range(2):
        torch.autograd.grad(fn(), inputs, grad)
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        torch.autograd.grad(fn(), inputs, grad)
    _sync()
    return (time.perf_counter() - start) / repeats


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
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU under TRITON_INTERPRET=1: the code path, no speed")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.dry_run:
        raise SystemExit("kernels_elementwise.py needs CUDA (Triton's CPU interpreter is for correctness, not speed)")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: --dry-run under TRITON_INTERPRET=1, tiny shapes
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    size = torch.finfo(dtype).bits // 8
    n, d, f, heads = args.tokens, args.hidden, args.intermediate, args.heads
    head_dim = d // heads
    x = torch.randn(n, d, device=device, dtype=dtype, requires_grad=True)
    w = torch.ones(d, device=device, dtype=dtype, requires_grad=True)
    q = torch.randn(1, heads, n, head_dim, device=device, dtype=dtype, requires_grad=True)
    angles = torch.randn(n, head_dim // 2, device=device)
    cos, sin = angles.cos(), angles.sin()
    gate = torch.randn(n, f, device=device, dtype=dtype, requires_grad=True)
    up = torch.randn(n, f, device=device, dtype=dtype, requires_grad=True)
    cases = {
        # name: (minimum bytes moved forward + backward, {method: fn}, grad shape source, inputs)
        "rms_norm": (
            size * n * d * 4,
            {
                "eager": lambda: rms_norm_reference(x, w),
                "compile": torch.compile(lambda: rms_norm_reference(x, w)),
                "thresher": lambda: rms_norm(x, w, 1e-6),
            },
            x,
            [x, w],
        ),
        "rope": (
            size * n * d * 4,
            {
                "eager": lambda: rope_reference(q, cos, sin),
                "compile": torch.compile(lambda: rope_reference(q, cos, sin)),
                "thresher": lambda: rope(q, cos, sin),
            },
            q,
            [q],
        ),
        "swiglu": (
            size * n * f * 6,
            {
                "eager": lambda: swiglu_reference(gate, up),
                "compile": torch.compile(lambda: swiglu_reference(gate, up)),
                "thresher": lambda: swiglu(gate, up),
            },
            gate,
            [gate, up],
        ),
    }
    lig_rms, lig_swiglu = liger("rms_norm"), liger("swiglu")
    if lig_rms is not None:
        cases["rms_norm"][1]["liger"] = lambda: lig_rms(x, w, 1e-6)
    if lig_swiglu is not None:
        cases["swiglu"][1]["liger"] = lambda: lig_swiglu(gate, up)
    print(
        f"# {torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU (dry run)'}; torch {torch.__version__}; "
        f"{n} tokens, hidden {d}, intermediate {f}, {heads} heads, "
        f"{args.dtype}, forward + backward"
    )
    print("| op | method | µs | vs eager | GB/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for op, (moved, methods, like, inputs) in cases.items():
        grad = torch.randn_like(like)
        times = {name: timed(fn, grad, inputs, args.repeats) for name, fn in methods.items()}
        for name, seconds in times.items():
            print(f"| {op} | {name} | {seconds * 1e6:.0f} | {seconds / times['eager']:.2f}× | {moved / seconds / 1e9:,.0f} |", flush=True)
        # what kernels=auto needs: is the Triton kernel faster than the PyTorch path the model runs (eager)?
        figures = {name: seconds * 1e6 for name, seconds in times.items()}
        print(
            "RESULT " + json.dumps({f"elementwise/{op}": {"us": figures, "triton_faster": times["thresher"] < times["eager"]}}), flush=True
        )


if __name__ == "__main__":
    main()
