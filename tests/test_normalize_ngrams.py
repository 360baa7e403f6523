"""Normalization and n-gram hashing, checked against plain-Python references on random and real text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.helpers import M64, ref_fmix
from thresher.curation.ngrams import hash_strings, ngram_hashes
from thresher.curation.normalize import NormalizeConfig, normalize, word_tokens, words_of


def ref_hash(s: str, seed: int = 0) -> int:
    """The token hash written out byte by byte, the way a reader would check it."""
    h, power = 0, 1
    data = s.encode("utf-8")
    for b in data:
        h = (h + (b + 1) * power) & M64
        power = (power * 0x100000001B3) & M64
    return ref_fmix(h ^ (((len(data) + 1) * 0x9E3779B97F4A7C15) & M64) ^ seed)


def ref_ngrams(rows: list[list[str]], n: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    out = []
    for r, toks in enumerate(rows):
        spans = [(p, n) for p in range(len(toks) - n + 1)] or ([(0, len(toks))] if toks else [])
        for p, length in spans:
            acc = 0
            for t in toks[p : p + length]:
                acc = (acc * 0xC2B2AE3D27D4EB4F + ref_hash(t, seed)) & M64
            out.append((r, p, length, ref_fmix(acc ^ ((length * 0x9E3779B97F4A7C15) & M64) ^ seed)))
    return out


def random_words(rng: random.Random, count: int) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyzéüßж数学 0123456789"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(count)]


def test_token_hash_matches_reference_on_fresh_random_strings() -> None:
    rng = random.Random()  # fresh inputs every run
    words = random_words(rng, 2000)
    seed = rng.getrandbits(64)
    got = hash_strings(words, seed=seed)
    assert got.dtype == np.uint64
    assert got.tolist() == [ref_hash(w, seed) for w in words]
    # a sliced Arrow array (non-zero offsets) hashes the same
    sliced = pa.array(words, type=pa.string()).slice(100, 500)
    assert hash_strings(sliced, seed=seed).tolist() == got[100:600].tolist()
    # negative control: a reference that drops the last byte must disagree
    broken = [ref_hash(w.encode()[:-1].decode("utf-8", "ignore"), seed) for w in words if len(w.encode()) > 1]
    assert broken != [h for w, h in zip(words, got.tolist(), strict=True) if len(w.encode()) > 1]


def test_distinct_tokens_do_not_collide_and_seeds_differ(shared_data: Path) -> None:
    words = sorted({w for r in json.loads((shared_data / "sft/lima.json").read_text()) for w in r["output"].split()})
    assert len(words) > 20_000
    hashes = hash_strings(words)
    assert len(np.unique(hashes)) == len(words)
    assert not np.array_equal(hashes, hash_strings(words, seed=1))
    assert hash_strings(["", "a"]).tolist()[0] != 0


@pytest.mark.parametrize("n", [1, 3, 8])
def test_ngrams_match_reference_and_never_cross_rows(n: int) -> None:
    rng = random.Random()
    vocab = random_words(rng, 30)
    rows = [[rng.choice(vocab) for _ in range(rng.randint(0, 15))] for _ in range(300)]
    seed = rng.getrandbits(32)
    got = ngram_hashes(pa.array(rows, type=pa.list_(pa.string())), n, seed=seed)
    want = ref_ngrams(rows, n, seed)
    assert list(zip(got.row.tolist(), got.position.tolist(), got.length.tolist(), got.hash.tolist(), strict=True)) == want


def test_ngram_boundaries_and_short_rows() -> None:
    rows = pa.array([["a", "b"], ["c", "d"], ["a", "b", "c", "d"], ["x"]])
    grams = ngram_hashes(rows, 3)
    # rows 0, 1 and 3 are shorter than n: one whole-row n-gram each; row 2 has two 3-grams
    assert grams.row.tolist() == [0, 1, 2, 2, 3]
    assert grams.length.tolist() == [2, 2, 3, 3, 1]
    # "b c d" appears only inside row 2, never stitched from the end of row 0 and row 1
    assert len(set(grams.hash.tolist())) == 5
    dropped = ngram_hashes(rows, 3, short_rows="drop")
    assert dropped.row.tolist() == [2, 2]
    assert set(dropped.hash.tolist()) <= set(grams.hash.tolist())


def test_normalization_steps() -> None:
    text = ["  Café  Ñandú, l’été!! ＡＢＣ 1234\t\nDone. "]
    assert normalize(text).to_list() == ["cafe nandu l ete abc 1234 done"]
    assert normalize(text, NormalizeConfig(digits_to_zero=True)).to_list() == ["cafe nandu l ete abc 0000 done"]
    kept = NormalizeConfig(strip_diacritics=False, lowercase=False, punctuation_to_space=False)
    assert normalize(text, kept).to_list() == ["Café Ñandú, l’été!! ABC 1234 Done."]
    assert word_tokens(["Hello, World! x_1"]).to_list() == [["hello", "world", "x", "1"]]  # "_" is punctuation
    # the same words differently dressed give the same tokens, hence the same n-grams
    a, b = word_tokens(["The QUICK brown fox — jumps!", "the quick, brown FOX jumps"]).to_list()
    assert a == b


def test_words_of_normalized_text_equal_word_tokens(shared_data: Path) -> None:
    rows = json.loads((shared_data / "sft/lima.json").read_text())
    texts = [r["instruction"] + "\n" + r["output"] for r in rows] + ["  Café  Ñandú, l’été!! ＡＢＣ x_1 ½ ²"]
    for config in (
        NormalizeConfig(),
        NormalizeConfig(digits_to_zero=True, strip_diacritics=False),
        NormalizeConfig(punctuation_to_space=False, collapse_whitespace=False, lowercase=False),
    ):
        assert words_of(normalize(texts, config)).to_list() == word_tokens(texts, config).to_list()


def test_hashing_in_bounded_chunks_gives_the_one_pass_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large batches are hashed a run of ranges at a time (memory stays bounded); fresh random texts, rows
    from empty to longer than a chunk: the hashes equal those of one pass, for strings and for words."""
    import thresher.curation.ngrams as ngrams

    rng = random.Random()
    texts = ["".join(rng.choice("ab c1é\n") for _ in range(rng.choice([0, 1, 9, 400, 3000]))) for _ in range(500)]
    words = pa.array([t.encode("ascii", "ignore").decode() for t in texts], pa.large_string())
    strings = pa.array(texts, pa.large_string())
    whole = hash_strings(strings, seed=7), ngrams.ascii_word_hashes(words).hash
    for chunk in (1, 13, 2048):
        monkeypatch.setattr(ngrams, "CHUNK_BYTES", chunk)
        assert np.array_equal(hash_strings(strings, seed=7), whole[0]), chunk
        assert np.array_equal(ngrams.ascii_word_hashes(words).hash, whole[1]), chunk
