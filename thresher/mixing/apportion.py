"""How many rows each pool (a source, or a source's rows of one skill) gives to a mixture, and which.

Amounts are explicit on purpose: ``{count: 1}`` is one row and ``{fraction: 1.0}`` is all of a
source, never the ambiguous bare ``1`` / ``1.0`` of older mixers; ``{tokens: T}`` is a token budget.
Counts, fractions and token budgets are drawn first; weights then share what is left of the total
(rows or tokens), split by largest remainder so the parts add up exactly. A pool gives more rows
than it has only by upsampling, and only up to its ``max_repetition``. Rows are drawn at random
with a generator fixed by the seed and the pool's name, never as the first N.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np

from thresher.errors import InputError


class MixError(InputError):
    """A mixture that cannot be built as specified; the message names the source and the numbers."""


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


def draw_tokens(tokens: np.ndarray, budget: int, rng: np.random.Generator, max_repetition: float = 1.0, name: str = "source") -> np.ndarray:
    """Sorted row indices whose tokens add up to at most ``budget``, as close to it as a random order
    allows: rows are taken in random passes (each row once per pass) until the next would overshoot."""
    available = len(tokens)
    most = int(np.floor(available * max_repetition + 1e-9))
    if budget <= 0 or available == 0:
        if budget > 0:
            raise MixError(f"{name} is asked for {budget} tokens but has no rows")
        return np.zeros(0, dtype=np.int64)
    passes = -(-most // available)
    order = np.concatenate([rng.permutation(available) for _ in range(passes)])[:most]
    reach = int(tokens[order].sum())
    if reach < budget:
        raise MixError(
            f"{name} is asked for {budget} tokens but has {int(tokens.sum())} (max_repetition {max_repetition:g} allows at most {reach})"
        )
    taken = int(np.searchsorted(np.cumsum(tokens[order]), budget, side="right"))
    return np.sort(order[:taken], kind="stable")


AmountKey = Literal["count", "fraction", "weight", "tokens", "natural"]


@dataclass
class Pool:
    """Rows one source (or one source's rows of one skill) offers, and how much of them is wanted."""

    name: str
    rows: int
    tokens: np.ndarray | None = None  # per row, when a tokenizer counts them
    amount: AmountKey = "natural"  # natural: a weight equal to the pool's size (rows or tokens)
    value: float = 1.0
    max_repetition: float = 1.0

    def size(self, unit: str) -> float:
        return float(self.tokens.sum()) if unit == "tokens" and self.tokens is not None else float(self.rows)


@dataclass
class Draw:
    indices: np.ndarray  # sorted row indices into the pool (repeated rows appear more than once)
    asked: float  # what the spec asked of this pool, in the unit it asked in
    unit: str  # rows | tokens
    tokens: int | None = None
    notes: list[str] = field(default_factory=list)


def _drawn_tokens(pool: Pool, indices: np.ndarray) -> int | None:
    return int(pool.tokens[indices].sum()) if pool.tokens is not None else None


def _rows_for(pool: Pool) -> int:
    """Rows a count or fraction asks for (fractions rounded half up)."""
    if pool.amount == "count":
        return int(pool.value)
    return int(Fraction(pool.value).limit_denominator(10**12) * pool.rows + Fraction(1, 2))


def _draw(pool: Pool, want: float, unit: str, rng: np.random.Generator) -> Draw:
    if unit == "tokens":
        assert pool.tokens is not None
        indices = draw_tokens(pool.tokens, int(want), rng, pool.max_repetition, f"{pool.name!r}")
    else:
        most = int(np.floor(pool.rows * pool.max_repetition + 1e-9))
        if want > most:
            raise MixError(
                f"{pool.name!r} is asked for {int(want)} rows but has {pool.rows}"
                f" (max_repetition {pool.max_repetition:g} allows at most {most})"
            )
        indices = sample_rows(pool.rows, int(want), rng, pool.max_repetition)
    return Draw(indices, want, unit, _drawn_tokens(pool, indices))


def allocate(pools: list[Pool], seed: int, unit: str = "rows", total: int | None = None, what: str = "the mixture") -> dict[str, Draw]:
    """Which rows each pool gives: fixed amounts first, then weights share ``total`` minus what the fixed
    ones gave (in ``unit``: rows or tokens). Raises MixError naming the pool and the numbers."""
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise MixError(f"pool names must be unique, got {names}")
    if unit == "tokens" and any(p.tokens is None for p in pools):
        raise MixError("token amounts need token counts: set a tokenizer")
    draws: dict[str, Draw] = {}
    for pool in pools:
        rng = source_rng(seed, pool.name)
        if pool.amount in ("count", "fraction"):
            draws[pool.name] = _draw(pool, _rows_for(pool), "rows", rng)
        elif pool.amount == "tokens":
            draws[pool.name] = _draw(pool, pool.value, "tokens", rng)

    def used(draw: Draw) -> int:
        return len(draw.indices) if unit == "rows" else int(draw.tokens or 0)

    fixed = sum(used(d) for d in draws.values())
    shared = [p for p in pools if p.amount in ("weight", "natural")]
    if total is None:
        if shared:
            raise MixError(f"{[p.name for p in shared]} have weights, which share {what}'s total: set total")
        return {name: draws[name] for name in names}
    if fixed > total:
        raise MixError(f"counts, fractions and token budgets already give {fixed} {unit}, more than {what}'s total {total}")
    if not shared:
        if fixed != total:
            raise MixError(f"the sources give {fixed} {unit} but {what}'s total is {total}; use weights to fill a total")
        return {name: draws[name] for name in names}
    natural = [p.name for p in shared if p.amount == "natural"]
    if natural and len(natural) < len(shared):
        raise MixError(
            f"{what}: {natural} have no amount (drawn in proportion to their size) while "
            f"{[p.name for p in shared if p.amount == 'weight']} have weights; a weight cannot be compared with a size: "
            "give all of them weights, or none"
        )
    if natural:
        shares = fill_by_size(shared, total - fixed, unit, what)
    else:
        shares = largest_remainder(total - fixed, [p.value for p in shared])
    for pool, want in zip(shared, shares, strict=True):
        draws[pool.name] = _draw(pool, want, unit, source_rng(seed, pool.name))
    return {name: draws[name] for name in names}


def fill_by_size(pools: list[Pool], budget: int, unit: str, what: str) -> list[int]:
    """``budget`` split in proportion to the pools' sizes; a pool that reaches its cap (size times
    ``max_repetition``) stops there and the others share the rest, in proportion again."""
    caps = [int(np.floor(p.size(unit) * p.max_repetition + 1e-9)) for p in pools]
    if sum(caps) < budget:
        raise MixError(
            f"{what} needs {budget} {unit} but its sources have at most {sum(caps)} "
            f"({', '.join(f'{p.name!r}: {c}' for p, c in zip(pools, caps, strict=True))}); raise max_repetition or lower the share"
        )
    shares = [0] * len(pools)
    open_pools = [i for i, c in enumerate(caps) if c > 0]
    left = budget
    while left > 0:
        split = largest_remainder(left, [pools[i].size(unit) for i in open_pools])
        full = [i for i, n in zip(open_pools, split, strict=True) if n >= caps[i]]
        if not full:
            for i, n in zip(open_pools, split, strict=True):
                shares[i] = n
            break
        for i in full:
            shares[i] = caps[i]
            left -= caps[i]
        open_pools = [i for i in open_pools if i not in full]
    return shares
