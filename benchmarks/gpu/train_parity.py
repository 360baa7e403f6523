"""bf16 training steps with ``kernels=triton`` and ``kernels=torch`` from the same start give the same losses
(fp32 on the CPU under TRITON_INTERPRET=1 with --dry-run): the fused kernels are what the trainer runs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_synth_generate import make_model  # noqa: E402

from tests.helpers import SHARED_DATA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    hidden, layers, steps, length = (32, 1, 2, 64) if args.dry_run else (512, 4, 6, 1024)
    precision = "fp32" if args.dry_run else "bf16"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_model(folder / "model", hidden, layers)
        losses = {}
        for kernels in ("triton", "torch"):
            out = folder / kernels
            config = folder / f"{kernels}.yaml"
            config.write_text(
                f"model: {model}\ndata: {{train: {SHARED_DATA / 'sft/lima.json'}}}\nmax_length: {length}\n"
                f"packing: true\npack_length: {2 * length}\nmax_steps: {steps}\nprecision: {precision}\n"
                f"kernels: {kernels}\noptim: {{lr: 1.0e-3, warmup_ratio: 0.0, schedule: constant}}\n"
                f"seed: 1\noutput_dir: {out}\n"
            )
            done = subprocess.run([sys.executable, "-m", "thresher.cli", "train", "sft", str(config), "-q"], capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"kernels={kernels}: {done.stderr[-2000:]}")
            records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            losses[kernels] = [r["loss"] for r in records if "loss" in r]
    tolerance = 1e-4 if args.dry_run else 2e-2  # bf16 rounding, summed over a few thousand tokens
    gaps = [abs(a - b) / max(abs(b), 1e-9) for a, b in zip(losses["triton"], losses["torch"], strict=True)]
    agree = bool(gaps) and max(gaps) <= tolerance
    print("| step | kernels=triton | kernels=torch | relative gap |\n| ---: | ---: | ---: | ---: |")
    for i, (a, b, g) in enumerate(zip(losses["triton"], losses["torch"], gaps, strict=True), start=1):
        print(f"| {i} | {a:.5f} | {b:.5f} | {g:.2e} |")
    print(
        "RESULT " + json.dumps({"parity": {"agree": agree, "max_relative_gap": max(gaps), "tolerance": tolerance, "precision": precision}})
    )
    if not agree:
        raise SystemExit(f"losses differ by up to {max(gaps):.2e} (tolerance {tolerance})")


if __name__ == "__main__":
    main()
