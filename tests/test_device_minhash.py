"""The GPU dedup path (normalized text -> word hashes -> n-grams -> MinHash -> densification, all on the device),
run here on CPU tensors: bit-identical to the CPU path on real text with ASCII and non-ASCII rows, empty rows, rows
shorter than n; with a negative control. The kit asserts the same on CUDA."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from thresher.curation import device_minhash, ngrams
from thresher.curation.minhash import MinHashParams, signatures
from thresher.curation.normalize import normalize, words_of


def _texts(shared_data: Path) -> list[str]:
    rng = random.Random()
    rows = json.loads((shared_data / "sft/lima.json").read_text())[:150]
    texts = [r["instruction"] + "\n" + r["output"] for r in rows]
    texts += ["", "   ", "one", "two words", "Ünïcödé naïve café — 北京 2024!", "a_b c-d", "x" * 3000, "9 8 7 6 5 4"]
    rng.shuffle(texts)
    return texts


def test_word_and_ngram_hashes_equal_the_cpu_path(shared_data: Path) -> None:
    normalized = normalize(_texts(shared_data))
    ascii_only = normalized.filter(~normalized.str.contains(r"[^\x00-\x7F]"))
    arrow = ascii_only.to_arrow().cast("large_string")
    data, offsets = ngrams._string_buffer(arrow)
    got_hash, got_offsets = device_minhash.ascii_word_hashes(torch.from_numpy(data.copy()), torch.from_numpy(offsets.copy()))
    want = ngrams.token_hashes(words_of(ascii_only).to_arrow(), 0)
    assert np.array_equal(got_offsets.numpy(), want[1]) and np.array_equal(got_hash.numpy().view(np.uint64), want[0])
    for n in (1, 3, 5):
        row, hashes = device_minhash.ngram_hashes(got_hash, got_offsets, n)
        grams = ngrams.ngram_hashes(words_of(ascii_only).to_arrow(), n, short_rows="whole")
        assert np.array_equal(row.numpy(), grams.row) and np.array_equal(hashes.numpy().view(np.uint64), grams.hash), n


def test_text_signatures_equal_the_cpu_path(shared_data: Path) -> None:
    normalized = normalize(_texts(shared_data))
    params = MinHashParams(128, seed=random.getrandbits(31))
    want = signatures(ngrams.ngram_hashes(words_of(normalized).to_arrow(), 5, short_rows="whole"), len(normalized), params)
    got = device_minhash.text_signatures(normalized, 5, params, "cpu")
    assert got.dtype == np.uint32 and np.array_equal(got, want)
    with pytest.raises(AssertionError):  # negative control: another n-gram size is not these signatures
        assert np.array_equal(device_minhash.text_signatures(normalized, 4, params, "cpu"), want)
    assert np.array_equal(device_minhash.text_signatures(pl.Series("t", [], dtype=pl.String), 5, params, "cpu"), want[:0])


def test_buckets_and_components_on_the_device_equal_the_cpu_path() -> None:
    """Band keys, candidate pairs and connected components in torch (CPU tensors here) against lsh.py's NumPy/SciPy:
    the same keys, the same pairs, the same groups."""
    from thresher.curation import lsh

    rng = np.random.default_rng()
    sig = rng.integers(0, 2**32 - 1, size=(3000, 64), dtype=np.uint32)
    for i in range(1, 3000, 3):  # chains of near copies: long components
        j = int(rng.integers(0, i))
        sig[i] = np.where(rng.random(64) < 0.1, sig[i], sig[j])
    sig[::97] = 0xFFFFFFFF  # rows without n-grams never pair
    banding = lsh.Banding(8, 8)
    keys = device_minhash.band_keys(torch.from_numpy(sig.astype(np.int64)), banding)
    assert np.array_equal(keys.numpy().view(np.uint64), lsh.band_keys(sig, banding))
    valid = torch.from_numpy(~np.all(sig == 0xFFFFFFFF, axis=1))
    pairs = device_minhash.candidate_pairs(keys, valid).numpy()
    want = lsh.lsh_pairs(sig, banding)
    assert len(want) > 500 and np.array_equal(pairs, want)
    got = device_minhash.components(len(sig), torch.from_numpy(pairs)).numpy()
    ref = lsh.components(len(sig), want)
    smallest = np.full(ref.max() + 1, len(sig))
    np.minimum.at(smallest, ref, np.arange(len(sig)))
    assert np.array_equal(got, smallest[ref])  # each row labelled by its component's smallest row
    assert len(np.unique(got)) < len(sig) - 500  # real merging happened
    with pytest.raises(AssertionError):  # negative control: dropping a tenth of the pairs splits components
        assert np.array_equal(device_minhash.components(len(sig), torch.from_numpy(pairs[::10])).numpy(), got)
