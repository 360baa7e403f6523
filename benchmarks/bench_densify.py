"""MinHash densification on the CPU: Thresher's split (a table for rows with few values, NumPy probe rounds for
the rest) vs probing round after round in torch (the device path, and what the CPU ran before), on the same
signature tables from real text: short rows (instructions) and mixed rows (whole records). Same bins checked.

    python benchmarks/bench_densify.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from thresher.curation.minhash import EMPTY, MinHashParams, _bins_and_values, _densify_rounds, densify, first_rounds
from thresher.curation.ngrams import ngram_hashes
from thresher.curation.normalize import word_tokens

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def table_of(texts: list[str], params: MinHashParams) -> torch.Tensor:
    grams = ngram_hashes(word_tokens(texts).to_arrow(), 5)
    hashes = torch.from_numpy(np.ascontiguousarray(grams.hash).view(np.int64))
    rows = torch.from_numpy(np.ascontiguousarray(grams.row))
    bins, values = _bins_and_values(hashes, params)
    table = torch.full((len(texts) * params.num_perm,), int(EMPTY), dtype=torch.int64)
    table.scatter_reduce_(0, rows * params.num_perm + bins, values, reduce="amin", include_self=True)
    return table.view(len(texts), params.num_perm)


def main() -> None:
    records = [r for f in ("alpaca_en_demo.json", "code_alpaca_2k.json", "lima.json") for r in json.loads((DATA / "sft" / f).read_text())]
    gsm8k = [json.loads(line)["question"] for line in (DATA / "gsm8k" / "train.jsonl").read_text().splitlines()]
    corpora = {
        "short rows (instructions x30)": [r["instruction"] for r in records if "instruction" in r] * 30,
        "mixed rows (records + GSM8K x10)": [" ".join(v for v in r.values() if isinstance(v, str)) for r in records] * 10 + gsm8k * 10,
    }
    params = MinHashParams(128, 1)
    first_rounds(params.num_perm, params.seed)  # built once per (num_perm, seed) and cached
    print("| rows | count | median non-empty bins | torch rounds (s) | thresher CPU (s) | speed-up | same bins |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, texts in corpora.items():
        table = table_of(texts, params)
        start = time.perf_counter()
        slow = _densify_rounds(table, params)
        rounds_s = time.perf_counter() - start
        start = time.perf_counter()
        fast = densify(table, params)
        fast_s = time.perf_counter() - start
        median = float((table != int(EMPTY)).sum(1).float().median())
        same = torch.equal(slow, fast)
        print(f"| {name} | {len(texts)} | {median:.0f} | {rounds_s:.2f} | {fast_s:.2f} | {rounds_s / fast_s:.1f}x | {same} |")


if __name__ == "__main__":
    main()
