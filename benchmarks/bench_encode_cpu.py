"""CPU embedding: plain ``SentenceTransformer.encode`` vs Thresher's ONNX Runtime backends, on the texts an
embedding audit encodes (benchmark items — questions, questions with answers — and training turns).

For each backend: seconds for the same texts, the speed-up over sentence-transformers, and how close the
vectors are (cosine with the sentence-transformers vector: minimum and mean). Then the estimated cold
time of the issue's audit (16k training rows against GSM8K, MATH, HumanEval and MMLU: every text the
audit would encode, counted exactly, at each backend's measured rate).

    .venv/bin/python benchmarks/bench_encode_cpu.py [--texts 3000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHARED  # noqa: E402

from thresher.curation.embeddings import load_encoder  # noqa: E402
from thresher.decontam.benchmarks import load_benchmarks  # noqa: E402


def audit_texts() -> tuple[list[str], list[str]]:
    """Item texts (question; question + answer) of GSM8K, MATH, HumanEval, MMLU, and 16k rows' turns."""
    benches = load_benchmarks(
        [
            f"gsm8k={SHARED / 'gsm8k/test.jsonl'}",
            f"math={SHARED / 'math/math_test.jsonl'}",
            f"humaneval={SHARED / 'humaneval/HumanEval.jsonl.gz'}",
            f"mmlu={SHARED / 'mmlu/data'}",
        ]
    )
    items = []
    for b in benches:
        q, a = b.items["question"].to_list(), b.items["answer"].to_list()
        items += q + [x + "\n" + y for x, y in zip(q, a, strict=True) if y]
    turns = []
    for name in ("sft/lima.json", "sft/alpaca_en_demo.json", "sft/code_alpaca_2k.json"):
        for r in json.loads((SHARED / name).read_text()):
            turns += [(r["instruction"] + ("\n" + r["input"] if r.get("input") else "")).strip(), r.get("output", "")]
    for line in (SHARED / "gsm8k/train.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        turns += [r["question"], r["answer"]]
    rows = 1029 + 999 + 2015 + 7473
    extra = random.Random(1).sample(turns, 2 * (16000 - rows))  # 16k rows: the rest drawn again
    return items, [t for t in turns + extra if t.strip()]


def audit_end_to_end(backend: str) -> None:
    """The issue's audit, cold (an empty cache), as a user runs it: 16k SFT rows, GSM8K, MATH, HumanEval, MMLU."""
    import subprocess
    import tempfile

    _, turns = audit_texts()
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        with train.open("wb") as f:
            for i in range(0, len(turns) - 1, 2):
                f.write(
                    orjson.dumps({"messages": [{"role": "user", "content": turns[i]}, {"role": "assistant", "content": turns[i + 1]}]})
                    + b"\n"
                )
        command = [
            sys.executable,
            "-m",
            "thresher.cli",
            "audit",
            "-t",
            str(train),
            "-b",
            f"gsm8k={SHARED / 'gsm8k/test.jsonl'}",
            "-b",
            f"math={SHARED / 'math/math_test.jsonl'}",
            "-b",
            f"humaneval={SHARED / 'humaneval/HumanEval.jsonl.gz'}",
            "-b",
            f"mmlu={SHARED / 'mmlu/data'}",
            "--methods",
            "embedding",
            "--embed-backend",
            backend,
            "--cache-dir",
            str(Path(tmp) / "cache"),
            "--out",
            str(Path(tmp) / "out"),
        ]
        for run in ("cold", "warm"):
            started = time.perf_counter()
            subprocess.run(command + (["--overwrite"] if run == "warm" else []), check=True, capture_output=True)
            print(f"audit of {len(turns) // 2} rows, --embed-backend {backend}, {run}: {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--audit", help="also run the audit end to end, cold then warm, with this backend")
    args = parser.parse_args()
    if args.audit:
        audit_end_to_end(args.audit)
        return
    items, turns = audit_texts()
    everything = items + turns
    sample = random.Random(0).sample(everything, args.texts)
    print(
        f"audit texts: {len(items)} item texts + {len(turns)} training turns = {len(everything)}; "
        f"distinct: {len(set(everything))}; timing a sample of {len(sample)}"
    )
    reference = None
    base = 0.0
    for backend in ("torch", "onnx", "onnx-int8"):
        encoder = load_encoder(None, "cpu", backend)
        encoder.encode(sample[:64], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)  # warm up
        started = time.perf_counter()
        vectors = encoder.encode(sample, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        seconds = time.perf_counter() - started
        if reference is None:
            reference, base = vectors, seconds
        cosine = np.sum(vectors * reference, axis=1)
        estimate = seconds / len(sample) * len(set(everything)) / 60
        print(
            f"{backend:10s} {seconds:6.1f} s ({len(sample) / seconds:5.1f} texts/s, {base / seconds:.2f}x) "
            f"cosine to sentence-transformers min {cosine.min():.4f} mean {cosine.mean():.5f}; "
            f"estimated cold audit encoding {estimate:.1f} min"
        )


if __name__ == "__main__":
    main()
