"""Embedding audit overhead: Thresher's ``embedding`` audit against plain ``SentenceTransformer.encode`` of the same texts.

The texts the audit embeds (each turn of real conversations from LIMA / Alpaca / Code Alpaca, and
each GSM8K / HumanEval / MMLU test item as question and as question + answer) are encoded once by
sentence-transformers directly (the floor any embedding audit pays), then audited by Thresher from
a cold cache (read and convert rows, encode, FAISS search, match table). Prints the overhead of
everything that is not encoding.

    .venv/bin/python benchmarks/bench_decontam_embedding.py [--rows 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHARED  # noqa: E402

from thresher.decontam.audit import AuditConfig, run_audit  # noqa: E402
from thresher.decontam.benchmarks import load_benchmark  # noqa: E402
from thresher.decontam.similarity import EmbeddingMatchConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    rows = []
    for name in ("sft/lima.json", "sft/alpaca_en_demo.json", "sft/code_alpaca_2k.json", "sft/new_codealpaca.json"):
        for r in json.loads((SHARED / name).read_text()):
            answer = r.get("output") or r.get("response") or ""
            if r["instruction"].strip() and answer.strip():
                rows.append({"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": answer}]})
    rows = rows[: args.rows]
    benches = [
        load_benchmark(n, str(SHARED / p))
        for n, p in (("gsm8k", "gsm8k/test.jsonl"), ("humaneval", "humaneval/HumanEval.jsonl.gz"), ("mmlu", "mmlu/data"))
    ]
    # the texts the audit encodes: every turn, every item's question, and question + answer where there is an answer
    train_texts = [m["content"] for r in rows for m in r["messages"]]
    bench_texts = [q for b in benches for q in b.items["question"].to_list()]
    bench_texts += [f"{q}\n{a}" for b in benches for q, a in b.items.select("question", "answer").iter_rows() if a]
    print(f"{len(rows)} training rows ({len(train_texts)} turns), {len(bench_texts)} benchmark texts")

    from sentence_transformers import SentenceTransformer

    from thresher.models import resolve_embedding_model

    model = SentenceTransformer(resolve_embedding_model(None), device="cpu")
    model.encode(["warm up"])
    started = time.perf_counter()
    model.encode(train_texts + bench_texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    plain = time.perf_counter() - started
    print(f"SentenceTransformer.encode (train + bench): {plain:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        config = AuditConfig(methods=("embedding",), embedding=EmbeddingMatchConfig(cache_dir=str(Path(tmp) / "cache")))
        started = time.perf_counter()
        result = run_audit([str(path)], benches, config)
        audit = time.perf_counter() - started
        started = time.perf_counter()
        run_audit([str(path)], benches, config)
        warm = time.perf_counter() - started
    print(
        f"thresher embedding audit, cold cache: {audit:.1f} s ({result.matches.height} matches recorded); "
        f"overhead over encode: {100 * (audit - plain) / plain:+.1f}%"
    )
    print(f"thresher embedding audit, warm cache (nothing to encode): {warm:.1f} s")


if __name__ == "__main__":
    main()
