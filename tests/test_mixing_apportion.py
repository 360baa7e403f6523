"""Mixture amounts: counts, fractions and weights, exact apportionment, the repetition cap, seeded sampling."""

from __future__ import annotations

import random

import numpy as np
import pytest

from thresher.mixing.apportion import MixError, Pool, allocate, largest_remainder, sample_rows, source_rng


def test_largest_remainder_sums_exactly_and_is_proportional() -> None:
    rng = random.Random(3)
    for _ in range(300):
        weights = [rng.random() * 10 + 1e-3 for _ in range(rng.randint(1, 9))]
        total = rng.randint(0, 10_000)
        counts = largest_remainder(total, weights)
        assert sum(counts) == total
        quotas = [total * w / sum(weights) for w in weights]
        assert all(abs(c - q) < 1 for c, q in zip(counts, quotas, strict=True))  # never more than one row off its quota
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]  # ties go to the earlier share
    assert largest_remainder(7, [0.5, 0.25, 0.25]) == [3, 2, 2]  # quotas 3.5, 1.75, 1.75: the .75s get the two left over


def _draw_sizes(pools: list[Pool], total: int | None = None, unit: str = "rows") -> dict[str, int]:
    return {name: len(d.indices) for name, d in allocate(pools, seed=0, unit=unit, total=total).items()}


def test_each_amount_type() -> None:
    pools = [
        Pool("chat", 1000, amount="count", value=1),  # one row, not all of it
        Pool("math", 800, amount="fraction", value=1.0),  # all of it
        Pool("code", 300, amount="fraction", value=0.25),
        Pool("a", 5000, amount="weight", value=3),
        Pool("b", 5000, amount="weight", value=1),
    ]
    counts = _draw_sizes(pools, total=2000)
    assert counts["chat"] == 1 and counts["math"] == 800 and counts["code"] == 75
    assert counts["a"] + counts["b"] == 2000 - 876 and counts["a"] == 843 and counts["b"] == 281
    assert sum(counts.values()) == 2000
    assert _draw_sizes([Pool("x", 10, amount="count", value=4)]) == {"x": 4}  # no total: counts as given
    natural = _draw_sizes([Pool("big", 3000), Pool("small", 1000)], total=400)  # no amount: in proportion to size
    assert natural == {"big": 300, "small": 100}


def test_token_budgets() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(10, 200, size=500)
    draw = allocate([Pool("t", 500, tokens, amount="tokens", value=20_000)], seed=3)["t"]
    got = int(tokens[draw.indices].sum())
    assert got <= 20_000 and 20_000 - got < tokens.max()  # as close as the next row allows, never over
    assert draw.tokens == got and len(np.unique(draw.indices)) == len(draw.indices)
    # a token total shared by weights; a count source's tokens are taken off the total first
    pools = [
        Pool("fixed", 100, rng.integers(1, 50, 100), amount="count", value=10),
        Pool("a", 400, rng.integers(10, 100, 400), amount="weight", value=1),
        Pool("b", 400, rng.integers(10, 100, 400), amount="weight", value=1),
    ]
    draws = allocate(pools, seed=1, unit="tokens", total=10_000)
    fixed = int(draws["fixed"].tokens or 0)
    assert draws["a"].asked + draws["b"].asked == 10_000 - fixed and abs(draws["a"].asked - draws["b"].asked) <= 1
    assert all(0 <= d.asked - int(d.tokens or 0) < 100 for d in (draws["a"], draws["b"]))
    with pytest.raises(MixError, match=r"'t' is asked for 99999 tokens but has \d+ \(max_repetition 1 allows at most"):
        allocate([Pool("t", 500, tokens, amount="tokens", value=99_999)], seed=3)
    up = allocate([Pool("t", 500, tokens, amount="tokens", value=int(tokens.sum()) * 2, max_repetition=2)], seed=3)["t"]
    assert np.bincount(up.indices).max() == 2 and int(tokens[up.indices].sum()) == int(tokens.sum()) * 2


def test_repetition_cap_and_errors_name_the_source() -> None:
    assert _draw_sizes([Pool("small", 100, amount="fraction", value=2.5, max_repetition=3)]) == {"small": 250}
    with pytest.raises(MixError, match=r"'small' is asked for 250 rows but has 100 \(max_repetition 2 allows at most 200\)"):
        _draw_sizes([Pool("small", 100, amount="fraction", value=2.5, max_repetition=2)])
    with pytest.raises(MixError, match="'tiny' is asked for 500 rows but has 100"):
        _draw_sizes([Pool("big", 10_000, amount="weight", value=1), Pool("tiny", 100, amount="weight", value=1)], total=1000)
    with pytest.raises(MixError, match="set total"):
        _draw_sizes([Pool("w", 10, amount="weight", value=1)])
    with pytest.raises(MixError, match="more than the mixture's total 5"):
        _draw_sizes([Pool("c", 10, amount="count", value=6), Pool("w", 10, amount="weight", value=1)], total=5)
    with pytest.raises(MixError, match="give 4 rows but the mixture's total is 5; use weights"):
        _draw_sizes([Pool("c", 10, amount="count", value=4)], total=5)
    with pytest.raises(MixError, match="a weight cannot be compared with a size"):
        _draw_sizes([Pool("n", 10), Pool("w", 10, amount="weight", value=1)], total=5)


def test_sampling_is_seeded_random_and_capped() -> None:
    first = sample_rows(1000, 100, source_rng(7, "chat"))
    assert np.array_equal(first, sample_rows(1000, 100, source_rng(7, "chat")))  # same seed and name, same rows
    assert not np.array_equal(first, np.arange(100))  # never simply the first N
    assert len(np.unique(first)) == 100
    assert not np.array_equal(first, sample_rows(1000, 100, source_rng(8, "chat")))
    assert not np.array_equal(first, sample_rows(1000, 100, source_rng(7, "math")))
    up = sample_rows(10, 25, source_rng(1, "up"), max_repetition=3)
    counts = np.bincount(up, minlength=10)
    assert len(up) == 25 and counts.min() == 2 and counts.max() == 3 and (counts == 3).sum() == 5
    with pytest.raises(MixError, match="cannot draw 25 rows from 10 with max_repetition 2"):
        sample_rows(10, 25, source_rng(1, "up"), max_repetition=2)


def test_sources_without_amount_fill_by_size_up_to_their_caps() -> None:
    # 600 rows from 300 + 15: in proportion to size the small one would need 29 rows; it gives its 15
    # and the large one, allowed to repeat rows twice, gives the rest
    sizes = _draw_sizes([Pool("big", 300, max_repetition=2), Pool("small", 15)], total=600)
    assert sizes == {"big": 585, "small": 15}
    assert _draw_sizes([Pool("a", 100), Pool("b", 300)], total=200) == {"a": 50, "b": 150}
    with pytest.raises(MixError, match=r"needs 700 rows but its sources have at most 615 \('big': 600, 'small': 15\)"):
        _draw_sizes([Pool("big", 300, max_repetition=2), Pool("small", 15)], total=700)
