"""How many rows each source gives to a mixture: explicit counts, fractions of a source, and weights
that share what is left of the total, rounded so the counts add up exactly (largest remainder).

Amounts are explicit on purpose: ``{count: 1}`` is one row and ``{fraction: 1.0}`` is all of a
source, never the ambiguous bare ``1`` / ``1.0`` of older mixers. A source gives more rows than it
has only by upsampling, and only up to its ``max_repetition``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


class MixError(ValueError):
    """A mixture that cannot be built as specified; the message names the source and the numbers."""


@dataclass(frozen=True)
class SourceAmount:
    """One source's amount: exactly one of ``count``, ``fraction``, ``weight``."""

    name: str
    available: int  # rows the source has after its steps
    count: int | None = None
    fraction: float | None = None
    weight: float | None = None
    max_repetition: float = 1.0  # how many times a row may appear at most (1.0: no upsampling)

    def __post_init__(self) -> None:
        given = [x for x in (self.count, self.fraction, self.weight) if x is not None]
        if len(given) != 1:
            raise MixError(f"source {self.name!r}: give exactly one of count, fraction, weight (got {len(given)})")
        if self.count is not None and self.count < 0:
            raise MixError(f"source {self.name!r}: count must be >= 0, got {self.count}")
        if self.fraction is not None and self.fraction < 0:
            raise MixError(f"source {self.name!r}: fraction must be >= 0, got {self.fraction}")
        if self.weight is not None and self.weight <= 0:
            raise MixError(f"source {self.name!r}: weight must be > 0, got {self.weight}")
        if self.max_repetition < 1:
            raise MixError(f"source {self.name!r}: max_repetition must be >= 1, got {self.max_repetition}")

    @property
    def most(self) -> int:
        """The most rows this source can give (upsampling included)."""
        return int(np.floor(self.available * self.max_repetition + 1e-9))


def largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` into integers that sum to ``total`` exactly.

    Each share gets the floor of its quota; the rows left over go to the largest fractional parts,
    ties to the earlier share. Exact rational arithmetic, so the result never depends on float rounding.
    """
    if total < 0:
        raise MixError(f"cannot split a negative total ({total})")
    if not weights:
        if total:
            raise MixError(f"nothing to split {total} rows between")
        return []
    exact = [Fraction(w).limit_denominator(10**12) for w in weights]
    whole = sum(exact)
    if whole <= 0:
        raise MixError("weights must add up to more than 0")
    quotas = [total * w / whole for w in exact]
    counts = [int(q) for q in quotas]  # floor: quotas are >= 0
    left = total - sum(counts)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def plan_counts(sources: list[SourceAmount], total: int | None = None) -> dict[str, int]:
    """Rows per source: counts as given, fractions of each source rounded half up, weights sharing
    ``total`` minus the rest. Raises MixError when a source cannot give what it is asked for."""
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise MixError(f"source names must be unique, got {names}")
    counts: dict[str, int] = {}
    for s in sources:
        if s.count is not None:
            counts[s.name] = s.count
        elif s.fraction is not None:
            counts[s.name] = int(Fraction(s.fraction).limit_denominator(10**12) * s.available + Fraction(1, 2))
    weighted = [s for s in sources if s.weight is not None]
    if weighted:
        if total is None:
            raise MixError(f"sources {[s.name for s in weighted]} have weights, which share the mixture's total: set total")
        fixed = sum(counts.values())
        if fixed > total:
            raise MixError(f"counts and fractions already give {fixed} rows, more than total {total}; nothing is left for "
                           f"{[s.name for s in weighted]}")
        for s, n in zip(weighted, largest_remainder(total - fixed, [float(s.weight) for s in weighted]), strict=True):  # type: ignore[arg-type]
            counts[s.name] = n
    elif total is not None and sum(counts.values()) != total:
        raise MixError(f"the sources give {sum(counts.values())} rows but total is {total}; use weights to fill a total")
    for s in sources:
        if counts[s.name] > s.most:
            raise MixError(f"source {s.name!r} is asked for {counts[s.name]} rows but has {s.available}"
                           f" (max_repetition {s.max_repetition:g} allows at most {s.most})")
    return {name: counts[name] for name in names}


def source_rng(seed: int, name: str) -> np.random.Generator:
    """A random generator for one source: fixed by the mixture's seed and the source's name, so adding
    or reordering sources does not change what the others draw."""
    digest = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, digest])


def sample_rows(available: int, want: int, rng: np.random.Generator, max_repetition: float = 1.0) -> np.ndarray:
    """Sorted row indices: ``want`` rows drawn at random (never the first ``want``). Beyond ``available``,
    every row is repeated as often as it fits and the rest drawn at random, up to ``max_repetition``."""
    if want < 0:
        raise MixError(f"cannot draw {want} rows")
    most = int(np.floor(available * max_repetition + 1e-9))
    if want > most:
        raise MixError(f"cannot draw {want} rows from {available} with max_repetition {max_repetition:g} (at most {most})")
    if want == 0 or available == 0:
        return np.zeros(0, dtype=np.int64)
    full, rest = divmod(want, available)
    parts = [np.repeat(np.arange(available, dtype=np.int64), full)] if full else []
    parts.append(np.sort(rng.choice(available, size=rest, replace=False)).astype(np.int64))
    return np.sort(np.concatenate(parts), kind="stable")
