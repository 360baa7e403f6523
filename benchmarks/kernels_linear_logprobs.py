"""Per-token log-probs through the LM head, forward + backward: time and peak memory of Thresher's
fused Triton kernel (its weight gradient summed in bf16 by default, ``-exact`` in fp32 slabs) and its
chunked PyTorch path against PyTorch eager (full logits), torch.compile of eager, Liger-Kernel's fused
linear cross-entropy and Cut Cross-Entropy with its gradient filter on (its default) and off (where
they install).

All methods compute the summed NLL of the targets (log-probs for ours), then backward to the hidden
states and the head weight, on the same fresh random inputs. Each method runs in its own process
so peak memory is its own (CUDA: max allocated; CPU: peak RSS growth). The Triton kernel, Liger and
CCE need CUDA; on the CPU the table has eager, compile and the chunked path.

Run: python benchmarks/kernels_linear_logprobs.py [--tokens 4096 8192 --hidden 4096 --vocab 128256 --dtype bf16]
(CPU-sized: --tokens 2048 --hidden 512 --vocab 32000 --dtype fp32; ``--methods`` picks some; a row prints as soon
as its method is measured; the Triton kernel runs on the CPU only under TRITON_INTERPRET=1, for the dry run)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from thresher.kernels.linear_logprobs import linear_logprobs, linear_terms_triton, triton_usable  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _eager(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    logits = (h @ w.t()).float()
    return -torch.log_softmax(logits, -1).gather(-1, t[:, None]).sum()


def method(name: str):  # noqa: ANN201 - returns a loss function
    if name == "eager":
        return _eager
    if name == "compile":
        return torch.compile(_eager)
    if name == "thresher-chunked":
        return lambda h, w, t: -linear_logprobs(h, w, t, backend="torch", chunk=1024, with_entropy=False)[0].sum()
    if name == "thresher-triton":
        return lambda h, w, t: -linear_terms_triton(h, w, t, with_entropy=False)[0].sum()
    if name == "thresher-triton-exact":
        return lambda h, w, t: -linear_terms_triton(h, w, t, with_entropy=False, exact_grads=True)[0].sum()
    if name == "liger":
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

        loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")
        return lambda h, w, t: loss(w, h, t)
    if name == "cce":
        from cut_cross_entropy import linear_cross_entropy

        return lambda h, w, t: linear_cross_entropy(h, w, t, reduction="sum")
    if name == "cce-nofilter":
        from cut_cross_entropy import linear_cross_entropy

        return lambda h, w, t: linear_cross_entropy(h, w, t, reduction="sum", filter_eps=None)
    raise ValueError(name)


GPU_METHODS = ["eager", "compile", "thresher-chunked", "thresher-triton", "thresher-triton-exact", "liger", "cce", "cce-nofilter"]


def child(name: str, n: int, hidden: int, vocab: int, dtype_name: str, repeats: int) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    h = torch.randn(n, hidden, device=device, dtype=dtype, requires_grad=True)
    w = (torch.randn(vocab, hidden, device=device) / hidden**0.5).to(dtype).requires_grad_()
    t = torch.randint(0, vocab, (n,), device=device)
    fn = method(name)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = fn(h, w, t)  # warm-up (and compilation)
    loss.backward()
    h.grad = w.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        inputs_mb = torch.cuda.memory_allocated() / 2**20
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = fn(h, w, t)
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        h.grad = w.grad = None
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - inputs_mb
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {"ms": 1000 * sorted(times)[len(times) // 2], "peak_mb": peak, "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", choices=GPU_METHODS, help="these only (eager first: the ratios' base)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    cpu_methods = ["eager", "compile", "thresher-chunked"] + (["thresher-triton"] if triton_usable(torch.device("cpu")) else [])
    names = args.methods or (GPU_METHODS if cuda else cpu_methods)
    device = torch.cuda.get_device_name(0) if cuda else f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    print(
        f"# {device}; torch {torch.__version__}; hidden {args.hidden}, vocab {args.vocab}, {args.dtype}, forward + backward, "
        f"median of {args.repeats}",
        flush=True,
    )
    print("| tokens | method | ms | vs eager | peak MB (beyond inputs) | vs eager | TFLOP/s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    flush = {"flush": True}
    for n in args.tokens:
        base = None
        flops = 6 * n * args.hidden * args.vocab  # forward matmul + two backward matmuls
        for name in names:  # eager first: every later row has its ratio when it prints
            done = subprocess.run(
                [sys.executable, __file__, "--child", name, str(n), str(args.hidden), str(args.vocab), args.dtype, str(args.repeats)],
                capture_output=True,
                text=True,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"| {n} | {name} | failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'} | | | | |", **flush)
                continue
            r = json.loads(line[7:])
            base = r if name == "eager" else base
            ratio_t = f"{r['ms'] / base['ms']:.2f}×" if base else "–"
            ratio_m = f"{r['peak_mb'] / base['peak_mb']:.2f}×" if base and base["peak_mb"] > 0 else "–"
            print(f"| {n} | {name} | {r['ms']:.1f} | {ratio_t} | {r['peak_mb']:,.0f} | {ratio_m} | {flops / r['ms'] / 1e9:.1f} |", **flush)
            key = f"linear_logprobs/{n}x{args.hidden}x{args.vocab}/{name}"
            print("RESULT " + json.dumps({key: {**r, "vs_eager": r["ms"] / base["ms"] if base else None}}), **flush)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, n, hidden, vocab, dtype, repeats = sys.argv[2:]
        print("RESULT " + json.dumps(child(name, int(n), int(hidden), int(vocab), dtype, int(repeats))))
    else:
        main()
