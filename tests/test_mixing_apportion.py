"""Mixture amounts: counts, fractions and weights, exact apportionment, the repetition cap, seeded sampling."""

from __future__ import annotations

import random

import numpy as np
import pytest

from thresher.mixing.apportion import MixError, SourceAmount, largest_remainder, plan_counts, sample_rows, source_rng


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


def test_each_amount_type() -> None:
    sources = [
        SourceAmount("chat", available=1000, count=1),  # one row, not all of it
        SourceAmount("math", available=800, fraction=1.0),  # all of it
        SourceAmount("code", available=300, fraction=0.25),
        SourceAmount("a", available=5000, weight=3),
        SourceAmount("b", available=5000, weight=1),
    ]
    counts = plan_counts(sources, total=2000)
    assert counts["chat"] == 1 and counts["math"] == 800 and counts["code"] == 75
    assert counts["a"] + counts["b"] == 2000 - 876 and counts["a"] == 843 and counts["b"] == 281
    assert sum(counts.values()) == 2000
    assert plan_counts([SourceAmount("x", available=10, count=4)]) == {"x": 4}  # no total: counts as given


def test_repetition_cap_and_errors_name_the_source() -> None:
    assert plan_counts([SourceAmount("small", available=100, fraction=2.5, max_repetition=3)]) == {"small": 250}
    with pytest.raises(MixError, match=r"source 'small' is asked for 250 rows but has 100 \(max_repetition 2 allows at most 200\)"):
        plan_counts([SourceAmount("small", available=100, fraction=2.5, max_repetition=2)])
    with pytest.raises(MixError, match="source 'tiny' is asked for 500 rows but has 100"):
        plan_counts([SourceAmount("big", available=10_000, weight=1), SourceAmount("tiny", available=100, weight=1)], total=1000)
    with pytest.raises(MixError, match="set total"):
        plan_counts([SourceAmount("w", available=10, weight=1)])
    with pytest.raises(MixError, match="more than total 5"):
        plan_counts([SourceAmount("c", available=10, count=6), SourceAmount("w", available=10, weight=1)], total=5)
    with pytest.raises(MixError, match="give 6 rows but total is 5"):
        plan_counts([SourceAmount("c", available=10, count=6)], total=5)
    with pytest.raises(MixError, match="exactly one of count, fraction, weight"):
        SourceAmount("both", available=10, count=1, weight=2)


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
