"""Conversion throughput and memory: Thresher vs Hugging Face `datasets` vs a bare Polars read.

Builds a large ShareGPT JSONL from real rows (FastChat conversations, cycled with fresh ids),
then converts it to canonical Parquet three ways, each in its own subprocess so peak RSS is
its own:

- thresher: `thresher.convert.convert` (validation, quarantine, provenance, content hashes);
- datasets: `load_dataset("json")` + `.map()` to OpenAI messages + `.to_parquet()`, the usual
  hand-written route (no validation, no provenance);
- polars: `pl.read_ndjson` + a list expression renaming fields, written to Parquet (no
  validation, no provenance, whole file in memory): a floor for what parsing alone costs.

    python benchmarks/bench_convert.py --rows 200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("THRESHER_SHARED_DATA", REPO.parent / "shared" / "data"))


def build_input(path: Path, rows: int) -> int:
    base = json.loads((SHARED / "sft/fastchat_dummy_conversation.json").read_text())
    with open(path, "w") as f:
        for i in range(rows):
            row = dict(base[i % len(base)])
            row["id"] = f"conv-{i}"
            f.write(json.dumps(row) + "\n")
    return path.stat().st_size


RUNNERS = {
    "thresher": """
from thresher.convert import convert
report = convert([INPUT], OUT)
assert report.total.rows_out == ROWS, report.total.as_dict()
""",
    "datasets": """
import datasets
datasets.disable_progress_bars()
ROLE = {"human": "user", "gpt": "assistant", "system": "system"}
def to_messages(row):
    return {"messages": [{"role": ROLE[m["from"]], "content": m["value"]} for m in row["conversations"]]}
ds = datasets.load_dataset("json", data_files=INPUT, split="train", cache_dir=CACHE)
ds = ds.map(to_messages, remove_columns=["conversations"])
ds.to_parquet(OUT)
assert len(ds) == ROWS
""",
    "polars": """
import polars as pl
df = pl.read_ndjson(INPUT)
role = pl.element().struct.field("from").replace_strict({"human": "user", "gpt": "assistant", "system": "system"})
df = df.with_columns(pl.col("conversations").list.eval(
    pl.struct(role.alias("role"), pl.element().struct.field("value").alias("content"))).alias("messages")).drop("conversations")
df.write_parquet(OUT)
assert df.height == ROWS
""",
}


def run_one(name: str, input_path: Path, rows: int, workdir: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one approach, in a fresh interpreter."""
    out = workdir / f"{name}.parquet"
    code = (
        f"import resource, time\nINPUT={str(input_path)!r}\nOUT={str(out)!r}\nROWS={rows}\nCACHE={str(workdir / 'hf_cache')!r}\n"
        "t0 = time.perf_counter()\n" + RUNNERS[name] + "\nprint(time.perf_counter() - t0)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    seconds, rss = (float(x) for x in done.stdout.split()[-2:])
    return seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        input_path = workdir / "conversations.jsonl"
        size = build_input(input_path, args.rows)
        print(f"input: {args.rows} ShareGPT rows, {size / 2**20:.0f} MiB JSONL")
        results = {name: run_one(name, input_path, args.rows, workdir) for name in RUNNERS}
    base = results["thresher"][0]
    print(f"{'approach':10} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13} {'thresher speed ×':>17}")
    for name, (seconds, rss) in results.items():
        print(f"{name:10} {seconds:8.2f} {args.rows / seconds:10.0f} {rss:13.0f} {seconds / base:17.2f}")


if __name__ == "__main__":
    main()
