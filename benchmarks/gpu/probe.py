"""The machine the kit ran on, and its ceilings: GPU, driver, library versions, the device-to-device copy
bandwidth (bytes read + written) and the bf16 matrix rate on random data, which the other steps compare with."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

import torch


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    for _ in range(3):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    found = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("triton", "transformers", "trl", "liger_kernel", "polars", "sentence_transformers", "faiss"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "?")
        except ImportError:
            found[name] = None
    if cuda:
        found["gpu"] = torch.cuda.get_device_name(0)
        try:
            found["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            found["driver"] = None
    n = (1 << 28) if cuda and not args.dry_run else (1 << 20)  # 512 MB of bf16 on the GPU
    x = torch.empty(n, dtype=torch.bfloat16, device=device)
    seconds = timed(lambda: x.clone(), 10)
    found["copy_gb_s"] = round(2 * x.numel() * 2 / seconds / 1e9, 1)
    m = 8192 if cuda and not args.dry_run else 256
    a = torch.randn(m, m, device=device, dtype=torch.bfloat16 if cuda else torch.float32)
    seconds = timed(lambda: a @ a, 10)
    found["matmul_tflops"] = round(2 * m**3 / seconds / 1e12, 1)
    print("| what | value |\n| --- | --- |")
    for key, value in found.items():
        print(f"| {key} | {value} |")
    print("RESULT " + json.dumps({"environment": found}))


if __name__ == "__main__":
    main()
