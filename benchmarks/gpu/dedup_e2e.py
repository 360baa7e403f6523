"""``thresher dedup`` end to end as a user runs it: a canonical Parquet file of ``--docs`` real-text documents
(benchmarks/corpus.py, one in ten an exact or near copy of an earlier one) in, ``kept.parquet`` and
``removed.parquet`` out, with ``--device cuda`` (everything after normalization on the GPU) and ``--device cpu``;
docs/s of each, and whether their outputs are the same bytes. Rows print as they are measured.

    python3 benchmarks/gpu/dedup_e2e.py --docs 1000000            # on the GPU (the kit)
    python3 benchmarks/gpu/dedup_e2e.py --docs 10000000 --cuda-only  # the scale step: no CPU run to compare
    python3 benchmarks/gpu/dedup_e2e.py --docs 3000 --dry-run      # the code path on the CPU

Past 1M documents the input is the 1M file repeated with fresh ids (Arrow, no per-row Python), so the extra
rows are exact copies of earlier ones.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import documents  # noqa: E402

BASE = 1_000_000


def make_input(path: Path, docs: int, base_docs: int = BASE) -> None:
    """Canonical SFT rows: unique documents, then one in ten a copy (exact, or with one word changed); past
    ``base_docs`` the first ``base_docs`` rows repeated with fresh ids."""
    if docs > base_docs:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        make_input(path, base_docs)
        base = pq.read_table(path)
        tiled = pa.concat_tables([base] * (docs // base_docs + 1)).slice(0, docs)
        ids = pc.binary_join_element_wise("doc-", pc.cast(pa.array(range(docs), pa.int64()), pa.string()), "")
        pq.write_table(tiled.set_column(tiled.schema.get_field_index("id"), "id", ids), path)
        return
    rng = random.Random(0)
    unique = documents(min(docs, 200_000))
    texts = (unique * (docs // len(unique) + 1))[: docs - docs // 10]
    for _ in range(docs // 10):
        words = texts[rng.randrange(len(texts))].split()
        if words and rng.random() < 0.5:
            words[rng.randrange(len(words))] = "changed"
        texts.append(" ".join(words))
    raw = path.with_suffix(".jsonl")
    with raw.open("wb") as f:
        for i, text in enumerate(texts):
            f.write(orjson.dumps({"id": f"doc-{i}", "instruction": "Summarize.", "output": text}) + b"\n")
    sys.path.insert(0, str(REPO))
    from thresher.convert import convert

    convert([str(raw)], path, kind="sft")
    raw.unlink()


def run(source: Path, out: Path, device: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "dedup", str(source), "--out", str(out), "--device", device, "--overwrite"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"dedup --device {device} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--dry-run", action="store_true", help="no CUDA: the 'GPU' run is the CPU again")
    parser.add_argument("--cuda-only", action="store_true", help="no CPU run to compare with (the 10M scale step)")
    parser.add_argument("--base", type=int, default=BASE, help="distinct rows before the input repeats")
    args = parser.parse_args()
    import torch

    gpu = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        made = time.perf_counter()
        make_input(folder / "docs.parquet", args.docs, args.base)
        print(f"# {args.docs:,} documents of ~1 KB, one in ten a copy (input made in {time.perf_counter() - made:.0f} s)", flush=True)
        print("| device | docs | seconds (command, start-up included) | docs/s |\n| --- | ---: | ---: | ---: |", flush=True)
        figures = {}
        for device in dict.fromkeys([gpu] if args.cuda_only else [gpu, "cpu"]):
            seconds = run(folder / "docs.parquet", folder / f"out-{device}", device)
            figures[device] = {"seconds": seconds, "docs_per_s": args.docs / seconds}
            print(f"| {device} | {args.docs:,} | {seconds:.1f} | {args.docs / seconds:,.0f} |", flush=True)
        same = args.cuda_only or all(
            filecmp.cmp(folder / f"out-{gpu}" / name, folder / "out-cpu" / name, shallow=False)
            for name in ("kept.parquet", "removed.parquet")
        )
        summary = json.loads((folder / f"out-{gpu}" / "summary.json").read_text())
        print(
            f"# removed {summary['removed']:,}; "
            + (
                "no CPU run to compare with (--cuda-only)"
                if args.cuda_only
                else f"{gpu} and cpu outputs {'identical' if same else 'DIFFERENT'}"
            ),
            flush=True,
        )
        print(
            "RESULT "
            + json.dumps(
                {
                    "dedup_e2e": {
                        **figures,
                        "device": gpu,
                        "docs": args.docs,
                        "identical": None if args.cuda_only else same,
                        "removed": summary["removed"],
                    }
                }
            )
        )
        if not same:
            raise SystemExit("GPU and CPU dedup outputs differ")


if __name__ == "__main__":
    main()
