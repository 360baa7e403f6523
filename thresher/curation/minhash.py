"""MinHash signatures of n-gram sets: one-permutation hashing with optimal densification, in torch.

Each n-gram hash ``h`` is re-mixed with the seed, ``g = fmix64(h ^ seed)``; its top 32 bits pick
one of ``num_perm`` bins and its low 32 bits are the value, and each bin keeps the smallest value
of the row (one-permutation hashing, Li et al. 2012: one hash per n-gram instead of ``num_perm``).
A bin that no n-gram reached borrows the value of the first non-empty bin along a probe sequence
that depends only on the bin and the seed, never on the row (optimal densification, Shrivastava
2017), so two rows agree in a bin with probability equal to their Jaccard similarity.

The code is plain wrapping int64 arithmetic in torch, so the CPU and CUDA paths run the same
operations and give identical signatures for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from thresher.curation.ngrams import NGrams
from thresher.errors import InputError

EMPTY = np.uint32(0xFFFFFFFF)  # the signature value of a row with no n-grams
_MAX_VALUE = 0xFFFFFFFE  # values are capped below EMPTY
_LOW32 = 0xFFFFFFFF
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD).astype(np.int64).item()
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53).astype(np.int64).item()
_SEED_MIX = 0x2545F4914F6CDD1D
_MAX_PROBES = 1 << 14  # probes before the deterministic fallback (reached only by rows with ~1 n-gram)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical (unsigned) right shift of int64 values."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def fmix64_torch(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 64-bit finalizer on int64 tensors, bit-identical to ``ngrams.fmix64`` on uint64."""
    x = x ^ _shift_right(x, 33)
    x = x * _FMIX1
    x = x ^ _shift_right(x, 33)
    x = x * _FMIX2
    return x ^ _shift_right(x, 33)


def _as_int64(values: int) -> int:
    return np.uint64(values & 0xFFFFFFFFFFFFFFFF).astype(np.int64).item()


@dataclass(frozen=True)
class MinHashParams:
    """Signature width and seed (the same seed gives the same signatures on every device)."""

    num_perm: int = 128
    seed: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.num_perm < (1 << 31):
            raise InputError(f"num_perm must be between 1 and 2**31-1, got {self.num_perm}")


@lru_cache(maxsize=8)
def probe_table(num_perm: int, seed: int, rounds: int) -> np.ndarray:
    """``[rounds, num_perm]`` bins to borrow from: round ``t`` sends empty bin ``j`` to ``table[t, j]``."""
    rng = np.random.Generator(np.random.PCG64([seed, num_perm, 0xD3]))
    return rng.integers(0, num_perm, size=(rounds, num_perm), dtype=np.int64)


def _bins_and_values(hashes: torch.Tensor, params: MinHashParams) -> tuple[torch.Tensor, torch.Tensor]:
    mixed = fmix64_torch(hashes ^ _as_int64(params.seed * _SEED_MIX + 1))
    bins = _shift_right(_shift_right(mixed, 32) * params.num_perm, 32)
    values = torch.clamp(mixed & _LOW32, max=_MAX_VALUE)
    return bins, values


@lru_cache(maxsize=8)
def first_rounds(num_perm: int, seed: int) -> np.ndarray:
    """``[num_perm, num_perm]``: entry ``[j, s]`` is the first probe round that sends empty bin ``j`` to bin ``s``
    (``_MAX_PROBES`` when none does). The bin an empty bin borrows from is, among the row's non-empty bins, the
    one with the smallest entry in its row of this table: the one plain probing would reach first."""
    probes = probe_table(num_perm, seed, _MAX_PROBES)
    first = np.full(num_perm * num_perm, _MAX_PROBES, dtype=np.int64)
    flat = (np.arange(num_perm, dtype=np.int64)[None, :] * num_perm + probes).ravel()
    np.minimum.at(first, flat, np.repeat(np.arange(_MAX_PROBES, dtype=np.int64), num_perm))
    return first.reshape(num_perm, num_perm)


_SPARSE = 16  # rows with at most this many non-empty bins skip probing: it needs ~num_perm/m rounds per bin
_PROBE_ROUNDS = 32  # probe rounds for the other rows (what is left after them is resolved like sparse rows)
_CHUNK = 1 << 22  # (empty bin, candidate bin) pairs resolved at once


def densify(table: torch.Tensor, params: MinHashParams) -> torch.Tensor:
    """Fill empty bins (== EMPTY) of rows that have at least one value, by optimal densification: empty bin ``j``
    takes the value of the first non-empty bin along its probe sequence ``probe_table[:, j]``. The CPU path
    (NumPy, flat indices) and the device path (``densify_on_device``: whole tensors, no host syncs) give the
    same bins as plain probing round after round (``_densify_rounds``, the reference)."""
    if table.device.type == "cpu":
        return torch.from_numpy(_densify_cpu(table.numpy(), params))
    return densify_on_device(table, params)


def _densify_cpu(table: np.ndarray, params: MinHashParams) -> np.ndarray:
    """Rows with few values (``_SPARSE``), which probing needs hundreds of rounds for, are resolved at once with
    ``first_rounds`` (work: empty bins x the row's values); the others probe round after round over flat indices
    (each round one gather over the bins still empty), and the few bins left after ``_PROBE_ROUNDS`` go the first
    way too. ``benchmarks/bench_densify.py`` times it against the round loop alone: on 90k short rows (median 7
    non-empty bins of 128) 12.8 s → 1.5 s, on 115k mixed rows 3.2 s → 0.9-1.4 s, same bins. Sparse rows
    up to 16 values and 32 rounds: up to 32 values is faster on short rows (1.0 s) and slower on mixed ones
    (1.5 s); fewer rounds leave more to the table (8 rounds: 1.05-1.17 s on mixed rows)."""
    k = params.num_perm
    empty_value = np.int64(EMPTY)
    flat = table.reshape(-1)
    filled = flat.copy()
    present = table != empty_value
    counts = present.sum(axis=1)
    empty = np.flatnonzero(~present & (counts > 0)[:, None])
    sparse = counts[empty // k] <= _SPARSE
    left = [_by_first_round(flat, present, counts, empty[sparse], filled, params)]
    idx = empty[~sparse]
    probes = probe_table(k, params.seed, _PROBE_ROUNDS)
    for t in range(_PROBE_ROUNDS):
        if not len(idx):
            break
        col = idx % k
        got = flat[idx - col + probes[t][col]]
        hit = got != empty_value
        filled[idx[hit]] = got[hit]
        idx = idx[~hit]
    left.append(_by_first_round(flat, present, counts, idx, filled, params))
    for i in np.concatenate(left).tolist():  # fallback, practically unreachable: the next non-empty bin to the right
        r, c = divmod(i, k)
        values = flat[r * k : (r + 1) * k]
        order = (np.arange(k) + c) % k
        filled[i] = values[order][values[order] != empty_value][0]
    return filled.reshape(table.shape)


def _by_first_round(
    flat: np.ndarray, present: np.ndarray, counts: np.ndarray, idx: np.ndarray, filled: np.ndarray, params: MinHashParams
) -> np.ndarray:
    """Fill the empty bins at flat positions ``idx`` from their row's non-empty bin with the smallest first round;
    return the positions no round reaches (for the fallback)."""
    k = params.num_perm
    if not len(idx):
        return idx
    first = first_rounds(k, params.seed).reshape(-1)
    starts = np.cumsum(counts) - counts  # where each row's non-empty bins start in ``bins``
    bins = np.flatnonzero(present) % k  # row-major: each row's non-empty bins, in order
    per_pair = counts[idx // k]
    ends = np.cumsum(per_pair)
    unreached = []
    lo = 0
    while lo < len(idx):
        base = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _CHUNK, side="right")))
        pos, n = idx[lo:hi], per_pair[lo:hi]
        row, col = pos // k, pos % k
        begin = np.cumsum(n) - n
        within = np.arange(int(n.sum())) - np.repeat(begin, n)
        candidate = bins[np.repeat(starts[row], n) + within]
        key = first[np.repeat(col * k, n) + candidate] * k + candidate  # rounds differ per bin: the smallest key wins
        best = np.minimum.reduceat(key, begin)
        found = best < _MAX_PROBES * k
        filled[pos[found]] = flat[row[found] * k + best[found] % k]
        unreached.append(pos[~found])
        lo = hi
    return np.concatenate(unreached)


_DEVICE_CHUNK_ROWS = 1024  # rows a time on the device: rows x num_perm² int32 (64 MB at 128 bins)


def densify_on_device(table: torch.Tensor, params: MinHashParams, chunk_rows: int = _DEVICE_CHUNK_ROWS) -> torch.Tensor:
    """``densify`` as whole-tensor operations (any device; the GPU path): every empty bin ``j`` of a row borrows from
    the row's non-empty bin ``s`` with the smallest ``first_rounds[j, s]`` (the bin plain probing reaches first;
    rounds are distinct per ``j``, so there are no ties), and a bin no round reaches from the next non-empty bin to
    its right. No data-dependent loop and no host synchronization: the old device path probed round after round,
    syncing with the host every round (up to 16,384 rounds for rows with one n-gram)."""
    k = params.num_perm
    empty_value = int(EMPTY)
    first = torch.from_numpy(first_rounds(k, params.seed)).to(table.device, torch.int32)  # [j, s]
    right = (torch.arange(k, device=table.device)[None, :] - torch.arange(k, device=table.device)[:, None]) % k  # [j, s]
    out = table.clone()
    for lo in range(0, table.shape[0], chunk_rows):
        part = table[lo : lo + chunk_rows]
        present = part != empty_value  # [rows, s]
        key = torch.where(present[:, None, :], first[None, :, :], _MAX_PROBES)  # [rows, j, s]
        best, source = key.min(dim=2)
        nearest = torch.where(present[:, None, :], right[None, :, :], k).argmin(dim=2)  # the fallback's bin
        source = torch.where(best < _MAX_PROBES, source, nearest)
        fill = ~present & present.any(dim=1, keepdim=True)
        out[lo : lo + chunk_rows] = torch.where(fill, part.gather(1, source), part)
    return out


def _densify_rounds(table: torch.Tensor, params: MinHashParams) -> torch.Tensor:
    """Plain probing, round after round (each round one gather over the bins still empty): the reference the
    other paths are tested against (``benchmarks/bench_densify.py`` times it)."""
    empty_value = int(EMPTY)
    filled = table.clone()
    row, col = torch.nonzero(table == empty_value, as_tuple=True)
    has_any = (table != empty_value).any(dim=1)
    keep = has_any[row]
    row, col = row[keep], col[keep]
    probes = torch.from_numpy(probe_table(params.num_perm, params.seed, _MAX_PROBES))
    for t in range(_MAX_PROBES):
        if not len(row):
            break
        borrowed = table[row, probes[t].to(table.device)[col]]  # one round's probes: num_perm ints to the device
        hit = borrowed != empty_value
        filled[row[hit], col[hit]] = borrowed[hit]
        row, col = row[~hit], col[~hit]
    if len(row):  # fallback, practically unreachable: the next non-empty bin to the right
        for r, c in zip(row.tolist(), col.tolist(), strict=True):
            values = table[r]
            order = (torch.arange(params.num_perm, device=table.device) + c) % params.num_perm
            filled[r, c] = values[order][values[order] != empty_value][0]
    return filled


def signature_table(rows: torch.Tensor, hashes: torch.Tensor, num_rows: int, params: MinHashParams) -> torch.Tensor:
    """``[num_rows, num_perm]`` int64 densified signatures on the tensors' device, from each n-gram's row and int64
    hash (one-permutation MinHash, then ``densify``)."""
    bins, values = _bins_and_values(hashes, params)
    table = torch.full((num_rows * params.num_perm,), int(EMPTY), dtype=torch.int64, device=hashes.device)
    table.scatter_reduce_(0, rows * params.num_perm + bins, values, reduce="amin", include_self=True)
    return densify(table.view(num_rows, params.num_perm), params)


def signatures(grams: NGrams, num_rows: int, params: MinHashParams = MinHashParams(), device: str = "cpu") -> np.ndarray:
    """``[num_rows, num_perm]`` uint32 signatures; rows without n-grams are all ``EMPTY``."""
    hashes = torch.from_numpy(np.ascontiguousarray(grams.hash).view(np.int64)).to(device)
    rows = torch.from_numpy(np.ascontiguousarray(grams.row)).to(device)
    return signature_table(rows, hashes, num_rows, params).cpu().numpy().astype(np.uint32)


def empty_rows(sigs: np.ndarray) -> np.ndarray:
    """Rows that had no n-grams (their signature is all ``EMPTY``)."""
    return np.all(sigs == EMPTY, axis=1)


def estimate_jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of paired signatures (rows of ``left`` and ``right``); 0 for empty rows."""
    left, right = np.atleast_2d(left), np.atleast_2d(right)
    agree = (left == right).mean(axis=1)
    return np.where(empty_rows(left) | empty_rows(right), 0.0, agree)
