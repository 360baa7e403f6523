"""Accuracy of the mixing skill classifier against source labels: 100 random rows of each of GSM8K train
(math), Code Alpaca (code), LIMA (chat) and HH-RLHF harmless (safety) have their labels hidden; the
rest of each source are the labeled seeds. Source labels are themselves coarse (LIMA holds many
programming questions), so this measures agreement with the source, not truth.

Run: python benchmarks/bench_skill_classifier.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from thresher.accounting import QuarantineWriter
from thresher.mixing.load import load_source
from thresher.mixing.skills import classify
from thresher.mixing.spec import ClassifierSpec, parse_spec

DATA = Path(os.environ.get("THRESHER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SKILLS = ("math", "code", "chat", "safety")
HELD = 100


def main() -> None:
    spec = parse_spec(f"""kind: sft
total: 10
sources:
  - {{name: math, path: {DATA}/gsm8k/train.jsonl, skill: math}}
  - {{name: code, path: {DATA}/sft/code_alpaca_2k.json, skill: code}}
  - {{name: chat, path: {DATA}/sft/lima.json, skill: chat}}
  - {{name: safety, path: {DATA}/preference/hh-rlhf_harmless-base_test.jsonl.gz, use: chosen, skill: safety}}
skills: {{targets: {{math: 0.25, code: 0.25, chat: 0.25, safety: 0.25}}}}
""")
    with tempfile.TemporaryDirectory() as tmp:
        quarantine = QuarantineWriter(Path(tmp) / "q.jsonl")
        frames = [load_source(s, spec.kind, Path("."), quarantine, None)[0] for s in spec.sources]
    rng = np.random.default_rng(0)
    parts, truth = [], []
    for frame in frames:
        order = rng.permutation(frame.height)
        held = frame[order[:HELD]]
        truth += held["skill"].to_list()
        parts += [
            frame[order[HELD:]],
            held.with_columns(
                pl.lit(None, dtype=pl.String).alias("skill"),
                pl.lit(None, dtype=pl.String).alias("skill_from"),
                pl.lit(None, dtype=pl.Float64).alias("skill_score"),
            ),
        ]
    frame = pl.concat(parts)
    hidden = frame["skill"].is_null()
    want = np.array(truth)
    print(f"{'method':<10} {'accuracy':>8} " + " ".join(f"{s:>7}" for s in SKILLS))
    for method in ("rules", "knn", "rules+knn"):
        got = np.array(
            classify(frame, spec.kind, ClassifierSpec(method=method, seeds_per_skill=200), 0, Path("."), set(SKILLS))
            .filter(hidden)["skill"]
            .to_list()
        )
        per = " ".join(f"{np.mean(got[want == s] == s):>7.2f}" for s in SKILLS)
        print(f"{method:<10} {np.mean(got == want):>8.3f} {per}")


if __name__ == "__main__":
    main()
