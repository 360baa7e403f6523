"""Short multiple-choice items copied with their options, in four letterings: how many the ``ngram`` audit finds.

Plants ``--items`` MMLU test items whose question is under 8 words, each as the question followed by its
options labeled ``A. …``, ``(a) …``, ``A) …`` or not at all, as SFT rows among 300 LIMA rows (the false
positive control), runs ``thresher audit`` against the MMLU release folder, and prints recall per
lettering and the LIMA rows flagged.

    python benchmarks/bench_decontam_mc_labels.py [--items 60 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import SHARED  # noqa: E402

from thresher.decontam.benchmarks import load_benchmark  # noqa: E402

STYLES = {
    "A.": lambda i, o: f"{'ABCD'[i]}. {o}",
    "(a)": lambda i, o: f"({'abcd'[i]}) {o}",
    "A)": lambda i, o: f"{'ABCD'[i]}) {o}",
    "none": lambda i, o: o,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    items = load_benchmark("mmlu", str(SHARED / "mmlu/data")).items
    short = items.filter(pl.col("question").str.split(" ").list.len() < 8).sample(n=args.items, seed=args.seed)
    names = list(STYLES)
    rows = []
    for k, item in enumerate(short.iter_rows(named=True)):
        style = STYLES[names[k % len(names)]]
        text = item["question"] + "\n" + "\n".join(style(i, o) for i, o in enumerate(item["options"].splitlines()))
        rows.append({"instruction": text, "output": "The answer is " + item["answer"]})
    lima = json.loads((SHARED / "sft/lima.json").read_text())[:300]
    rows += [{"instruction": r["instruction"], "output": r["output"]} for r in lima]
    with tempfile.TemporaryDirectory() as tmp:
        train, out = Path(tmp) / "train.json", Path(tmp) / "audit"
        train.write_text(json.dumps(rows))
        done = subprocess.run(
            [sys.executable, "-m", "thresher.cli", "audit", "-t", str(train), "-b", f"mmlu={SHARED / 'mmlu/data'}", "--out", str(out)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        flagged = set(pl.read_parquet(out / "matches.parquet").filter("flagged")["train_row"].to_list())
    print(f"# {args.items} short MMLU items (< 8 words) among 300 LIMA rows, seed {args.seed}")
    print("| lettering | planted | found | recall |\n| --- | ---: | ---: | ---: |")
    for s, name in enumerate(names):
        planted = [k for k in range(args.items) if k % len(names) == s]
        found = sum(1 for k in planted if k in flagged)
        print(f"| {name} | {len(planted)} | {found} | {found / len(planted):.2f} |")
    lima_flagged = len({r for r in flagged if r >= args.items})
    print(f"| LIMA rows flagged (false positives) | 300 | {lima_flagged} | |")


if __name__ == "__main__":
    main()
