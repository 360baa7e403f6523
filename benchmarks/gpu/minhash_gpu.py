"""MinHash signatures on CUDA: docs/s over ``--docs`` real-text documents (~1 KB, from benchmarks/corpus.py),
text in -> signatures out as ``thresher dedup --device cuda`` computes them (normalization on the CPU, then word
hashes, n-grams, MinHash and densification on the device: ``thresher.curation.device_minhash``), and CPU == CUDA
signatures on a subset, bit for bit. On a machine without CUDA (the kit's dry run) the device is the CPU."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_minhash import run_thresher  # noqa: E402
from corpus import documents  # noqa: E402


def run_device(texts: list[str], n: int, num_perm: int, device: str) -> np.ndarray:
    """What dedup runs on a GPU: normalize (CPU, Polars), then every later step on ``device``."""
    sys.path.insert(0, str(REPO))
    from thresher.curation.device_minhash import text_signatures
    from thresher.curation.minhash import MinHashParams
    from thresher.curation.normalize import normalize

    return np.concatenate(
        [text_signatures(normalize(texts[lo : lo + 8192]), n, MinHashParams(num_perm, seed=1), device) for lo in range(0, len(texts), 8192)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--check", type=int, default=20_000, help="documents compared CPU against CUDA")
    parser.add_argument("--num-perm", type=int, default=128)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    made = time.perf_counter()
    pool = documents(min(args.docs, 50_000))
    texts = (pool * (args.docs // len(pool) + 1))[: args.docs]  # repeats cost the same work as new text
    made = time.perf_counter() - made
    check = texts[: min(args.check, len(texts))]
    equal = bool(np.array_equal(run_thresher(check, 5, args.num_perm, "cpu"), run_device(check, 5, args.num_perm, device)))
    run_device(texts[:2000], 5, args.num_perm, device)  # warm-up
    started = time.perf_counter()
    signatures = run_device(texts, 5, args.num_perm, device)
    seconds = time.perf_counter() - started
    rate = len(texts) / seconds
    print(f"# {device}: {len(texts):,} docs of ~1 KB, num_perm {args.num_perm}, word 5-grams (corpus built in {made:.1f} s)")
    print("| device | docs | seconds | docs/s | CPU == device on |\n| --- | ---: | ---: | ---: | ---: |")
    print(f"| {device} | {len(texts)} | {seconds:.2f} | {rate:,.0f} | {len(check)} docs: {'equal' if equal else 'DIFFERENT'} |")
    print(
        "RESULT "
        + json.dumps(
            {
                "minhash": {
                    "device": device,
                    "docs": len(texts),
                    "seconds": seconds,
                    "docs_per_s": rate,
                    "equal": equal,
                    "shape": list(signatures.shape),
                }
            }
        )
    )
    if not equal:
        raise SystemExit("CPU and device signatures differ")


if __name__ == "__main__":
    main()
