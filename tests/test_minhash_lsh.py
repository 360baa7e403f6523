"""MinHash signatures and LSH: a plain-Python reference, accuracy on real text, recall at the threshold."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from tests.helpers import M64, ref_fmix
from thresher.curation.lsh import (
    Banding,
    candidate_pairs,
    components,
    jaccard_of_pairs,
    lsh_pairs,
    ngram_sets,
    optimal_banding,
)
from thresher.curation.minhash import EMPTY, MinHashParams, empty_rows, estimate_jaccard, probe_table, signatures
from thresher.curation.ngrams import NGrams, ngram_hashes
from thresher.curation.normalize import word_tokens


def ref_signature(hashes: list[int], num_perm: int, seed: int, densify: bool = True) -> list[int]:
    """One-permutation hashing with optimal densification, one n-gram and one bin at a time."""
    empty = 0xFFFFFFFF
    bins = [empty] * num_perm
    for h in hashes:
        g = ref_fmix(h ^ ((seed * 0x2545F4914F6CDD1D + 1) & M64))
        b = ((g >> 32) * num_perm) >> 32
        bins[b] = min(bins[b], min(g & 0xFFFFFFFF, 0xFFFFFFFE))
    if not hashes or not densify:
        return bins
    probes = probe_table(num_perm, seed, 1 << 14)
    out = list(bins)
    for j in range(num_perm):
        t = 0
        while out[j] == empty:
            out[j] = bins[int(probes[t, j])]
            t += 1
    return out


def real_pairs(shared_data: Path, count: int, rng: random.Random, max_rate: float = 0.5) -> tuple[list[str], list[str]]:
    """LIMA answers and copies with a random share of their words replaced (Jaccard from 0 to 1)."""
    lima = json.loads((shared_data / "sft/lima.json").read_text())
    base = [r["output"] for r in lima if len(r["output"].split()) > 80]
    rng.shuffle(base)
    base = base[:count]
    vocab = [w for t in base for w in t.split()]
    edited = []
    for text in base:
        rate = rng.random() * max_rate
        edited.append(" ".join(rng.choice(vocab) if rng.random() < rate else w for w in text.split()))
    return base, edited


def grams_of(texts: list[str], n: int = 3) -> NGrams:
    return ngram_hashes(word_tokens(texts).to_arrow(), n)


def test_signatures_match_plain_python_reference() -> None:
    rng = random.Random()
    seed, num_perm = rng.getrandbits(32), rng.choice([16, 64, 100])
    sets = [[rng.getrandbits(64) for _ in range(rng.choice([0, 1, 2, 5, 40, 300]))] for _ in range(60)]
    grams = NGrams(
        row=np.repeat(np.arange(len(sets)), [len(s) for s in sets]),
        position=np.zeros(sum(map(len, sets)), dtype=np.int64),
        length=np.ones(sum(map(len, sets)), dtype=np.int64),
        hash=np.array([h for s in sets for h in s], dtype=np.uint64),
    )
    got = signatures(grams, len(sets), MinHashParams(num_perm, seed))
    assert got.dtype == np.uint32 and got.shape == (len(sets), num_perm)
    want = [ref_signature(s, num_perm, seed) for s in sets]
    assert got.tolist() == want
    assert empty_rows(got).tolist() == [not s for s in sets]
    # negative control: without densification the reference must disagree (rows with few n-grams)
    assert got.tolist() != [ref_signature(s, num_perm, seed, densify=False) for s in sets]


def test_cpu_densification_equals_probing_round_after_round() -> None:
    """The CPU path (a table for rows with few values, NumPy rounds for the rest) and the device path fill every bin
    as plain probing does, at every fill level from one value to all bins."""
    import torch

    from thresher.curation.minhash import _densify_rounds, densify, densify_on_device

    rng = np.random.default_rng()
    num_perm, seed = int(rng.choice([64, 100, 128])), int(rng.integers(1 << 31))
    table = np.full((3 * num_perm, num_perm), np.int64(EMPTY))
    for r in range(len(table)):
        filled = rng.choice(num_perm, size=1 + r % num_perm, replace=False)
        table[r, filled] = rng.integers(0, 1 << 32 - 1, size=len(filled))
    table[::7] = np.int64(EMPTY)  # rows without values stay empty
    params = MinHashParams(num_perm, seed)
    got = densify(torch.from_numpy(table), params)
    assert torch.equal(got, _densify_rounds(torch.from_numpy(table), params))
    assert bool((got[1::7] != int(EMPTY)).all()) and bool((got[::7] == int(EMPTY)).all())
    # the device path (whole tensors, no host syncs), run here on CPU tensors, in uneven chunks: the same bins
    assert torch.equal(densify_on_device(torch.from_numpy(table), params, chunk_rows=37), got)
    with pytest.raises(AssertionError):  # negative control: another seed's probe order is not these bins
        assert torch.equal(densify_on_device(torch.from_numpy(table), MinHashParams(num_perm, seed + 1)), got)


def test_signature_of_a_row_does_not_depend_on_its_batch(shared_data: Path) -> None:
    texts, edited = real_pairs(shared_data, 80, random.Random())
    both = texts + edited
    params = MinHashParams(128, seed=7)
    whole = signatures(grams_of(both), len(both), params)
    halves = np.concatenate([signatures(grams_of(texts), len(texts), params), signatures(grams_of(edited), len(edited), params)])
    assert np.array_equal(whole, halves)
    assert not np.array_equal(whole, signatures(grams_of(both), len(both), MinHashParams(128, seed=8)))


def test_estimates_within_003_of_true_jaccard_on_real_text(shared_data: Path) -> None:
    rng = random.Random()
    texts, edited = real_pairs(shared_data, 300, rng)
    grams = grams_of(texts + edited)
    n = len(texts)
    pairs = np.stack([np.arange(n), np.arange(n) + n], axis=1)
    true = jaccard_of_pairs(pairs, ngram_sets(grams))
    assert true.min() < 0.2 and true.max() > 0.9  # the pairs span the whole range
    sig = signatures(grams, 2 * n, MinHashParams(128, seed=rng.getrandbits(32)))
    mae = np.abs(estimate_jaccard(sig[:n], sig[n:]) - true).mean()
    assert mae <= 0.03, mae
    # negative control: 8 values per signature are far too few for that accuracy
    few = signatures(grams, 2 * n, MinHashParams(8, seed=rng.getrandbits(32)))
    assert np.abs(estimate_jaccard(few[:n], few[n:]) - true).mean() > 0.03


def test_true_jaccard_of_pairs_matches_python_sets() -> None:
    rng = random.Random()
    rows = [[rng.choice("abcdefgh") for _ in range(rng.randint(0, 12))] for _ in range(40)]
    grams = ngram_hashes(pa.array(rows, type=pa.list_(pa.string())), 2)
    pairs = np.array([(rng.randrange(40), rng.randrange(40)) for _ in range(100)])
    sets = [set() for _ in rows]
    for r, h in zip(grams.row.tolist(), grams.hash.tolist(), strict=True):
        sets[r].add(h)
    want = [len(sets[a] & sets[b]) / len(sets[a] | sets[b]) if sets[a] | sets[b] else 0.0 for a, b in pairs]
    assert np.allclose(jaccard_of_pairs(pairs, ngram_sets(grams)), want)


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_banding_equals_datasketch_choice(threshold: float) -> None:
    from datasketch.lsh import _optimal_param

    for num_perm in (64, 128, 256):
        banding = optimal_banding(threshold, num_perm)
        assert (banding.bands, banding.rows) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_lsh_recall_at_threshold_on_real_pairs(shared_data: Path) -> None:
    rng = random.Random()
    threshold = 0.7
    texts, edited = real_pairs(shared_data, 400, rng, max_rate=0.25)
    grams = grams_of(texts + edited)
    n = len(texts)
    pairs = np.stack([np.arange(n), np.arange(n) + n], axis=1)
    true = jaccard_of_pairs(pairs, ngram_sets(grams))
    sig = signatures(grams, 2 * n, MinHashParams(128, seed=rng.getrandbits(32)))
    banding = optimal_banding(threshold, 128)
    found = {tuple(p) for p in lsh_pairs(sig, banding).tolist()}
    hit = np.array([(i, i + n) in found for i in range(n)])
    above, below = true >= threshold + 0.15, true <= threshold - 0.2
    assert above.sum() > 30 and below.sum() > 30
    assert hit[above].mean() >= 0.95, hit[above].mean()
    assert hit[below].mean() <= 0.05, hit[below].mean()
    # around the threshold the hit rate follows the S-curve 1 - (1 - J**r)**b
    near = np.abs(true - threshold) <= 0.15
    expected = banding.collision_probability(true[near]).mean()
    assert abs(hit[near].mean() - expected) <= 0.1, (hit[near].mean(), expected)


def test_candidate_pairs_and_components() -> None:
    keys = np.array([[1, 9], [2, 9], [1, 8], [3, 7], [4, 7], [5, 6]], dtype=np.uint64)
    # band 0 joins rows 0 and 2; band 1 joins 0-1 and 3-4
    assert candidate_pairs(keys).tolist() == [[0, 1], [0, 2], [3, 4]]
    assert candidate_pairs(keys, np.array([True, True, False, True, True, True])).tolist() == [[0, 1], [3, 4]]
    labels = components(6, candidate_pairs(keys))
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] and len(set(labels.tolist())) == 3
    # a row with no n-grams never pairs, even with another empty row
    empty = np.full((2, 8), EMPTY, dtype=np.uint32)
    assert lsh_pairs(empty, Banding(2, 4)).shape == (0, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_signatures_equal_cpu(shared_data: Path) -> None:
    texts, edited = real_pairs(shared_data, 200, random.Random())
    grams = grams_of(texts + edited, 5)
    params = MinHashParams(128, seed=random.getrandbits(32))
    assert np.array_equal(signatures(grams, 400, params, "cuda"), signatures(grams, 400, params, "cpu"))
