"""bf16 training with ``kernels=triton`` and ``kernels=torch`` from the same start gives the same losses, for SFT
and DPO: the compiled kernels are what the trainer runs, and they train like the PyTorch path.

    python benchmarks/gpu/train_parity.py             # on the GPU: Qwen2.5-0.5B's shape, 20 steps each, bf16
    python benchmarks/gpu/train_parity.py --dry-run   # a tiny model, 2 steps, fp32 on the CPU under the interpreter

One process: the weights are made once; the ``torch`` runs go first, since patching a model family's RoPE is
process-wide. Prints a table per task and ``RESULT {"parity": …}`` (agree, the largest relative gap, the tolerance).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))

import torch  # noqa: E402
from bench_train_cpu import _subsets  # noqa: E402
from train_throughput import make_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    shape, steps, length, precision = (None, 2, 24, "fp32") if args.dry_run else ("qwen2.5-0.5b", args.steps, 2048, "bf16")
    from thresher.train.config import TrainConfig
    from thresher.train.dpo import run_dpo
    from thresher.train.sft import run_sft

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = folder / "model"
        make_weights(model, shape, device, torch.bfloat16 if precision == "bf16" else torch.float32)
        sft, pref = _subsets(folder, 400, 3 * steps if args.dry_run else 8 * steps + 8)
        losses: dict[tuple[str, str], list[float]] = {}
        for kernels in ("torch", "triton"):
            for task, data, run in (("sft", sft, run_sft), ("dpo", pref, run_dpo)):
                out = folder / f"{task}-{kernels}"
                config = TrainConfig(
                    model=str(model),
                    data={"train": str(data)},
                    max_length=length,
                    packing=True,
                    pack_length=2 * length,
                    max_steps=steps,
                    precision=precision,
                    device=device,
                    kernels=kernels,
                    optim={"lr": 1e-5, "warmup_ratio": 0.0, "schedule": "constant"},
                    dpo={"loss": "sigmoid", "beta": 0.1, "cache_dir": str(out / "cache")},
                    seed=1,
                    output_dir=str(out),
                )
                began = time.perf_counter()
                run(config)
                print(f"# {task} kernels={kernels}: {time.perf_counter() - began:.1f} s", flush=True)
                records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                assert records[0]["kernels"]["linear_logprobs"] == kernels, records[0]
                losses[(task, kernels)] = [r["loss"] for r in records if "loss" in r]
    tolerance = 1e-4 if args.dry_run else 2e-2  # bf16 rounding, summed over a few thousand tokens a step
    gaps: dict[str, float] = {}
    for task in ("sft", "dpo"):
        a, b = losses[(task, "triton")], losses[(task, "torch")]
        rel = [abs(x - y) / max(abs(y), 1e-3) for x, y in zip(a, b, strict=True)]
        gaps[task] = max(rel)
        print(f"| {task} step | kernels=triton | kernels=torch | relative gap |\n| ---: | ---: | ---: | ---: |")
        for i, (x, y, g) in enumerate(zip(a, b, rel, strict=True), start=1):
            print(f"| {i} | {x:.5f} | {y:.5f} | {g:.2e} |")
    agree = all(g <= tolerance for g in gaps.values())
    print("RESULT " + json.dumps({"parity": {"agree": agree, "max_relative_gap": gaps, "tolerance": tolerance, "precision": precision}}))
    if not agree:
        raise SystemExit(f"losses differ: {gaps} (tolerance {tolerance})")


if __name__ == "__main__":
    main()
