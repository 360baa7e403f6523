"""Near-duplicate detection quality: precision / recall / F1 of Thresher's MinHash-LSH vs
datasketch's MinHashLSH at the same threshold and num_perm, on a labeled set built from real text.

The set: real ~1 KB documents from ../shared/data, and for each of a share of them an edited
copy (a random fraction of words replaced by words of the corpus) spanning Jaccard 0..1 around
the threshold. The truth is the true Jaccard of word 5-gram sets; a pair is a duplicate when it is
>= the threshold. Every pair either tool reports is scored against the truth.

Two scores per tool. "as reported": the pairs the tool returns. datasketch's ``query`` returns every
pair in a bucket, Thresher's ``lsh_pairs`` only each member with its bucket's leader (enough for the
connected components dedup acts on), so a cluster of k copies is k-1 pairs for Thresher and k(k-1)/2
for datasketch, and pair recall penalizes Thresher for pairs it implies but does not list. "as dedup
uses them": both tools' pairs closed into connected components and scored as every pair within a
component — what a dedup that keeps one row per component does with them (chaining included).

    python benchmarks/bench_near_dup_quality.py --docs 4000 --threshold 0.8
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
from bench_minhash import python_shingles
from corpus import documents


def build(docs: int, seed: int) -> tuple[list[str], list[tuple[int, int]]]:
    rng = random.Random(seed)
    base = documents(docs, seed=seed)
    vocab = [w for t in base[:500] for w in t.split()]
    texts = list(base)
    planted = []
    for i in range(docs // 2):
        rate = rng.random() * 0.12
        words = [rng.choice(vocab) if rng.random() < rate else w for w in base[i].split()]
        planted.append((i, len(texts)))
        texts.append(" ".join(words))
    return texts, planted


def true_jaccard(pairs: np.ndarray, texts: list[str], n: int) -> np.ndarray:
    from thresher.curation.lsh import jaccard_of_pairs, ngram_sets
    from thresher.curation.ngrams import ngram_hashes
    from thresher.curation.normalize import word_tokens

    return jaccard_of_pairs(pairs, ngram_sets(ngram_hashes(word_tokens(texts).to_arrow(), n)))


def thresher_pairs(texts: list[str], threshold: float, num_perm: int, n: int, seed: int = 1) -> np.ndarray:
    from thresher.curation.lsh import lsh_pairs, optimal_banding
    from thresher.curation.minhash import MinHashParams, signatures
    from thresher.curation.ngrams import ngram_hashes
    from thresher.curation.normalize import word_tokens

    sig = signatures(ngram_hashes(word_tokens(texts).to_arrow(), n), len(texts), MinHashParams(num_perm, seed=seed))
    return lsh_pairs(sig, optimal_banding(threshold, num_perm))


def datasketch_pairs(texts: list[str], threshold: float, num_perm: int, n: int, seed: int = 1) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    hashes = MinHash.bulk([[s.encode() for s in doc] for doc in python_shingles(texts, n)], num_perm=num_perm, seed=seed)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    found = {(min(i, j), max(i, j)) for i, m in enumerate(hashes) for j in lsh.query(m) if j != i}
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)


def components(pairs: np.ndarray) -> np.ndarray:
    """Every pair within each connected component of ``pairs`` (the transitive closure dedup acts on)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    implied = [(a, b) for rows in groups.values() for i, a in enumerate(sorted(rows)) for b in sorted(rows)[i + 1 :]]
    return np.array(implied, dtype=np.int64).reshape(-1, 2)


def score(
    found: np.ndarray, truth: set[tuple[int, int]], jaccard: dict[tuple[int, int], float], threshold: float
) -> tuple[float, float, float, int]:
    reported = {tuple(p) for p in found.tolist()}
    tp = sum(1 for p in reported if jaccard[p] >= threshold)
    precision = tp / len(reported) if reported else 1.0
    recall = len(reported & truth) / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, len(reported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signature-seeds", type=int, default=1, help="run each tool with MinHash seeds 1..N (one row each)")
    args = parser.parse_args()
    texts, planted = build(args.docs, args.seed)
    runs = {}
    for sig_seed in range(1, args.signature_seeds + 1):
        for name, fn in (("thresher", thresher_pairs), ("datasketch MinHashLSH", datasketch_pairs)):
            start = time.perf_counter()
            label = f"{name} (seed {sig_seed})" if args.signature_seeds > 1 else name
            runs[label] = (fn(texts, args.threshold, args.num_perm, args.ngram, sig_seed), time.perf_counter() - start)
    closed = {name: components(found) for name, (found, _) in runs.items()}
    candidates = np.unique(np.concatenate([np.array(planted)] + [p for p, _ in runs.values()] + list(closed.values())), axis=0)
    values = true_jaccard(candidates, texts, args.ngram)
    jaccard = {tuple(p): v for p, v in zip(candidates.tolist(), values.tolist(), strict=True)}
    truth = {p for p, v in jaccard.items() if v >= args.threshold}  # pairs some tool reports or implies, or planted
    planted_j = np.array([jaccard[p] for p in planted])
    print(
        f"{len(texts)} docs, {len(planted)} edited copies (true Jaccard {planted_j.min():.2f}..{planted_j.max():.2f}), "
        f"{len(truth)} true duplicate pairs at threshold {args.threshold}, num_perm={args.num_perm}, word {args.ngram}-grams"
    )
    print("| tool | pairs as reported | precision | recall | F1 | pairs as dedup uses them | precision | recall | F1 | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    means: dict[str, list[tuple[float, ...]]] = {}
    for name, (found, seconds) in runs.items():
        p, r, f, count = score(found, truth, jaccard, args.threshold)
        cp, cr, cf, ccount = score(closed[name], truth, jaccard, args.threshold)
        means.setdefault(name.split(" (seed")[0], []).append((p, r, f, cp, cr, cf))
        print(f"| {name} | {count} | {p:.3f} | {r:.3f} | {f:.3f} | {ccount} | {cp:.3f} | {cr:.3f} | {cf:.3f} | {seconds:.2f} |")
    if args.signature_seeds > 1:
        for name, rows in means.items():
            m = np.mean(np.array(rows), axis=0)
            print(
                f"| {name}: mean of {len(rows)} seeds | | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | | {m[3]:.3f} | {m[4]:.3f} | {m[5]:.3f} | |"
            )


if __name__ == "__main__":
    main()
