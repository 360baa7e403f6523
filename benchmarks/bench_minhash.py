"""MinHash signatures, text in -> signatures out: Thresher vs datasketch (`MinHash.bulk`) vs rensa.

Same documents (real text, ~1 KB each), same num_perm, same shingles (word 5-grams of the
lower-cased words). Each tool tokenizes the way its users do: Thresher in Polars/Arrow
(`word_tokens` -> `ngram_hashes` -> `signatures`); datasketch and rensa get Python-built shingle
lists (a regex over the lower-cased text), which is included in their time.

    python benchmarks/bench_minhash.py --docs 20000
"""

from __future__ import annotations

import argparse
import platform
import re
import time

import numpy as np
from corpus import documents

WORD = re.compile(r"[^\W_]+")


def python_shingles(texts: list[str], n: int) -> list[list[str]]:
    out = []
    for text in texts:
        words = WORD.findall(text.lower())
        out.append([" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))])
    return out


def run_thresher(texts: list[str], n: int, num_perm: int, device: str) -> np.ndarray:
    from thresher.curation.minhash import MinHashParams, signatures
    from thresher.curation.ngrams import ngram_hashes
    from thresher.curation.normalize import word_tokens

    out = []
    for lo in range(0, len(texts), 8192):
        batch = texts[lo : lo + 8192]
        grams = ngram_hashes(word_tokens(batch).to_arrow(), n)
        out.append(signatures(grams, len(batch), MinHashParams(num_perm, seed=1), device))
    return np.concatenate(out)


def run_datasketch(texts: list[str], n: int, num_perm: int) -> list:
    from datasketch import MinHash

    shingles = python_shingles(texts, n)
    return MinHash.bulk([[s.encode() for s in doc] for doc in shingles], num_perm=num_perm)


def run_rensa(texts: list[str], n: int, num_perm: int) -> object:
    import rensa

    return rensa.RMinHash.digest_matrix_from_token_sets(python_shingles(texts, n), num_perm, 1)


def timed(fn, *args) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datasketch-docs", type=int, default=None, help="time datasketch on fewer docs (it is slow)")
    args = parser.parse_args()
    texts = documents(args.docs)
    run_thresher(texts[:500], args.ngram, args.num_perm, args.device)  # warm up imports and torch
    rows = []
    t = timed(run_thresher, texts, args.ngram, args.num_perm, args.device)
    rows.append(("thresher", len(texts), t))
    t = timed(run_rensa, texts, args.ngram, args.num_perm)
    rows.append(("rensa (RMinHash.digest_matrix_from_token_sets)", len(texts), t))
    some = texts[: args.datasketch_docs or len(texts)]
    t = timed(run_datasketch, some, args.ngram, args.num_perm)
    rows.append(("datasketch (MinHash.bulk)", len(some), t))
    print(f"{platform.processor() or platform.machine()}, {args.docs} docs of ~1 KB, num_perm={args.num_perm}, word {args.ngram}-grams")
    thresher_rate = rows[0][1] / rows[0][2]
    print("| tool | docs | seconds | docs/s | Thresher speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, docs, seconds in rows:
        rate = docs / seconds
        print(f"| {name} | {docs} | {seconds:.2f} | {rate:,.0f} | {thresher_rate / rate:.2f}x |")


if __name__ == "__main__":
    main()
