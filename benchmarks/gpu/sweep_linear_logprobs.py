"""Tune the LM-head kernel's tiles on this GPU, in one run of a few minutes, and write them where the package
reads them (``thresher/kernels/tuned/linear_logprobs.json``'s format; ``THRESHER_LINEAR_LOGPROBS_CONFIGS`` points
the package at the file written here, and committing it as the package's file makes it the default).

For each shape (tokens × hidden × vocab), bf16: the forward's tile configurations are timed alone (no grad),
then its vocabulary splits (``waves``) for the best tile; then the backward's tile configurations with the best
forward, then its grouped order's width. Every timing is kept in the file (``timings``): the search space's
justification. The winner is checked against the chunked PyTorch path before it is written; a shape cut short by
``--budget-s`` keeps the best found so far. Compiled kernels are shared across shapes (sizes are not compile-time
constants), so later shapes cost only their timings.

    python3 benchmarks/gpu/sweep_linear_logprobs.py [--budget-s 270] [--out $OUT/linear_logprobs.json]
    python3 benchmarks/gpu/sweep_linear_logprobs.py --dry-run   # the CPU under TRITON_INTERPRET=1: two tiny configurations each
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from thresher.kernels.dispatch import device_class  # noqa: E402

ll = importlib.import_module("thresher.kernels.linear_logprobs")
Tiles = ll.Tiles

# (block_m, block_n, block_k, num_warps, num_stages): the shapes Hopper GEMMs in Triton favour (128×128 and 128×256
# tiles, 64-wide K slices, 3–4 stages), and smaller ones for register pressure; the backward holds a logits tile,
# its gradient and two partial products at once, so it also tries narrower tiles and fewer stages.
FORWARD_SPACE = [
    (128, 128, 64, 8, 3),
    (128, 256, 64, 8, 3),
    (128, 128, 64, 4, 4),
    (64, 256, 64, 4, 3),
    (128, 128, 128, 8, 3),
    (64, 128, 64, 4, 4),
    (256, 128, 64, 8, 3),
]
FORWARD_WAVES = [1, 2, 4, 8]
BACKWARD_SPACE = [
    (128, 128, 64, 8, 2),
    (128, 128, 32, 8, 3),
    (64, 128, 64, 4, 2),
    (128, 256, 64, 8, 2),
    (64, 256, 64, 8, 2),
    (128, 64, 64, 4, 3),
    (64, 128, 32, 4, 3),
]
BACKWARD_GROUPS = [4, 8, 16, 32]  # wider groups: more token tiles, so more hidden-state locks, in flight
DRY_SPACE = [(16, 32, 16, 4, 1), (32, 64, 32, 4, 1)]


def timed_ms(fn: Callable[[], Any], repeats: int, cuda: bool) -> float:
    """Median milliseconds of ``fn`` after one warm-up (which compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def sweep_shape(n: int, h: int, v: int, dtype: torch.dtype, dry: bool, deadline: float, repeats: int) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    hidden = torch.randn(n, h, device=device, dtype=dtype, requires_grad=True)
    weight = (torch.randn(v, h, device=device) / h**0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), device=device)
    default = Tiles()
    timings: dict[str, dict[str, float | str]] = {"forward": {}, "backward": {}}

    def forward_ms(tiles: Any) -> float:
        with torch.no_grad():
            return timed_ms(
                lambda: ll.linear_terms_triton(hidden, weight, targets, with_entropy=False, tiles=(tiles, default)), repeats, cuda
            )

    def backward_ms(fwd: Any, bwd: Any) -> float:
        logp = ll.linear_terms_triton(hidden, weight, targets, with_entropy=False, tiles=(fwd, bwd))[0]
        loss = -logp.sum()
        return timed_ms(lambda: torch.autograd.grad(loss, (hidden, weight), retain_graph=True), repeats, cuda)

    def trial(kind: str, label: str, fn: Callable[[], float]) -> float:
        if time.monotonic() > deadline:
            return float("inf")
        try:
            ms = fn()
        except Exception as error:  # noqa: BLE001 - a configuration that does not compile (registers, shared memory) is a data point
            timings[kind][label] = f"failed: {type(error).__name__}: {str(error)[:160]}"
            print(f"| {n}×{h}×{v} | {kind} | {label} | failed: {type(error).__name__} |", flush=True)
            return float("inf")
        timings[kind][label] = round(ms, 3)
        print(f"| {n}×{h}×{v} | {kind} | {label} | {ms:.2f} |", flush=True)
        return ms

    space = DRY_SPACE if dry else FORWARD_SPACE
    label = lambda t: f"{t.block_m}x{t.block_n}x{t.block_k} w{t.num_warps} s{t.num_stages} waves{t.waves} group{t.group_m}"  # noqa: E731
    candidates = [Tiles(*c) for c in space]
    scored = [(trial("forward", label(t), lambda t=t: forward_ms(t)), t) for t in candidates]
    best_fwd_ms, best_fwd = min(scored, key=lambda x: x[0])
    for waves in [] if dry else FORWARD_WAVES:
        if waves != best_fwd.waves:
            t = replace(best_fwd, waves=waves)
            ms = trial("forward", label(t), lambda t=t: forward_ms(t))
            if ms < best_fwd_ms:
                best_fwd_ms, best_fwd = ms, t
    space = DRY_SPACE if dry else BACKWARD_SPACE
    scored = [(trial("backward", label(t), lambda t=t: backward_ms(best_fwd, t)), t) for t in (Tiles(*c) for c in space)]
    best_bwd_ms, best_bwd = min(scored, key=lambda x: x[0])
    for group in [] if dry else BACKWARD_GROUPS:
        if group != best_bwd.group_m:
            t = replace(best_bwd, group_m=group)
            ms = trial("backward", label(t), lambda t=t: backward_ms(best_fwd, t))
            if ms < best_bwd_ms:
                best_bwd_ms, best_bwd = ms, t
    # the winner, checked against the chunked PyTorch path (log-probs and both gradients)
    g = torch.randn(n, device=device)
    logp = ll.linear_terms_triton(hidden, weight, targets, with_entropy=False, tiles=(best_fwd, best_bwd))[0]
    grads = torch.autograd.grad((logp * g).sum(), (hidden, weight))
    ref = ll.linear_terms_torch(hidden, weight, targets, with_entropy=False)[0]
    ref_grads = torch.autograd.grad((ref * g).sum(), (hidden, weight))
    errors = {"logp": rel(logp, ref), "d hidden": rel(grads[0], ref_grads[0]), "d weight": rel(grads[1], ref_grads[1])}
    correct = errors["logp"] <= 1e-2 and errors["d hidden"] <= 3e-2 and errors["d weight"] <= 5e-2
    summary = ", ".join(f"{k} {e:.1e}" for k, e in errors.items())
    print(
        f"# {n}×{h}×{v}: forward {best_fwd_ms:.2f} ms ({label(best_fwd)}), backward {best_bwd_ms:.2f} ms ({label(best_bwd)}); "
        f"errors vs chunked PyTorch {summary}: {'ok' if correct else 'WRONG'}",
        flush=True,
    )
    return {
        "tokens": n,
        "hidden": h,
        "vocab": v,
        "forward": asdict(best_fwd),
        "backward": asdict(best_bwd),
        "forward_ms": round(best_fwd_ms, 3),
        "backward_ms": round(best_bwd_ms, 3),
        "errors": errors,
        "correct": correct,
        "timings": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["8192x896x151936", "8192x4096x128256", "32768x896x151936"])
    parser.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--budget-s", type=float, default=270.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT") or str(REPO / "out" / "gpu"), "linear_logprobs.json"))
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU under TRITON_INTERPRET=1")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.budget_s
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        raise SystemExit("sweep_linear_logprobs.py needs CUDA (--dry-run: the code path on the CPU under TRITON_INTERPRET=1)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    shapes = [(64, 32, 300)] if args.dry_run else [tuple(int(x) for x in s.split("x")) for s in args.shapes]
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(0) if cuda else "CPU (dry run)"
    print(f"# {name} ({device_class(device)}); torch {torch.__version__}; {args.dtype}; budget {args.budget_s:.0f} s", flush=True)
    print("| shape | kernel | tiles | ms |\n| --- | --- | --- | ---: |", flush=True)
    out = Path(args.out)
    table = json.loads(out.read_text()) if out.exists() else json.loads(ll.CONFIG_FILE.read_text())
    entries = table.setdefault(device_class(device), {}).setdefault(str(dtype).removeprefix("torch."), [])
    for n, h, v in shapes:
        if time.monotonic() > deadline:
            print(f"# {n}×{h}×{v}: not swept (budget spent)", flush=True)
            continue
        result = sweep_shape(n, h, v, dtype, args.dry_run, deadline, 1 if args.dry_run else args.repeats)
        if not result["correct"]:
            continue  # never write a configuration that computes wrongly
        result["evidence"] = f"sweep on {name}, {time.strftime('%Y-%m-%d')}, {n} tokens"
        entries[:] = [e for e in entries if (e["hidden"], e["vocab"]) != (h, v)] + [result]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(table, indent=1) + "\n")  # after every shape: a cut-short run keeps what it found
        print("RESULT " + json.dumps({f"sweep/{n}x{h}x{v}": {k: result[k] for k in ("forward_ms", "backward_ms", "correct")}}), flush=True)
    print(f"# wrote {out} in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
