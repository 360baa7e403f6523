"""Exact and near (MinHash) dedup of 1M rows of ~1 KB: wall time and peak RSS of `thresher dedup`.

Builds a canonical SFT Parquet of real text (../shared/data paragraphs joined into ~1 KB
documents) with 5% exact copies (re-cased) and 5% near copies (one word changed) planted, then
runs `thresher dedup` in a fresh process per method and reports its wall time, peak RSS and counts.

    python benchmarks/bench_dedup_scale.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from corpus import documents

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def build(path: Path, rows: int, seed: int = 0) -> dict[str, int]:
    from thresher.records import Kind, schema_for

    rng = random.Random(seed)
    unique = int(rows * 0.9)
    docs = documents(unique, seed=seed)
    exact = near = 0
    writer = pq.ParquetWriter(path, schema_for(Kind.SFT), compression="zstd")
    batch = []
    for i in range(rows):
        if i < unique:
            text = docs[i]
        elif i % 2 == 0:
            text, exact = docs[rng.randrange(unique)].upper(), exact + 1
        else:
            words = docs[rng.randrange(unique)].split()
            words[rng.randrange(len(words))] = "zzzchanged"
            text, near = " ".join(words), near + 1
        batch.append(
            {
                "id": f"row-{i}",
                "source": "bench",
                "metadata": None,
                "messages": [{"role": "user", "content": text[:200]}, {"role": "assistant", "content": text[200:] or "."}],
                "provenance": {"file": "generated", "row": i, "line": None, "content_hash": f"{i:032x}"},
            }
        )
        if len(batch) == 50_000:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema_for(Kind.SFT)))
            batch = []
    if batch:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema_for(Kind.SFT)))
    writer.close()
    return {"rows": rows, "planted_exact": exact, "planted_near": near}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--methods", default="exact,minhash")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.parquet"
        started = time.perf_counter()
        planted = build(data, args.rows)
        print(f"built {args.rows} rows ({data.stat().st_size / 2**20:.0f} MiB Parquet) in {time.perf_counter() - started:.0f} s; {planted}")
        print("| method | seconds | rows/s | peak RSS MiB | kept | removed (by method) |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for method in args.methods.split(","):
            out = Path(tmp) / method
            command = [sys.executable, "-m", "thresher.cli", "dedup", str(data), "--out", str(out), "--method", method]
            result = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
            seconds, rss_kib, code = result.stdout.split()
            if code != "0":
                raise SystemExit(f"{method} failed with exit code {code}")
            summary = json.loads((out / "summary.json").read_text())
            print(
                f"| {method} | {float(seconds):.0f} | {args.rows / float(seconds):,.0f} | {int(rss_kib) / 1024:,.0f} | "
                f"{summary['kept']} | {summary['removed']} {summary['removed_by_method']} |"
            )


if __name__ == "__main__":
    main()
