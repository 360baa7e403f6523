"""Token and n-gram hashing, vectorized with NumPy over whole batches of rows.

Tokens are hashed once: a polynomial hash of each string's UTF-8 bytes (mod 2**64, from prefix
sums over the batch's Arrow data buffer, so no per-token Python), finished with the MurmurHash3
64-bit mixer. N-gram hashes combine ``n`` neighbouring token hashes with array arithmetic,
masked so no n-gram crosses a row boundary. Every n-gram keeps its row and token position,
so matches can be shown as spans. Distinct tokens are hashed once per batch (Arrow dictionary
encoding); integer token ids (tokenizer-token mode) are mixed directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from thresher.curation.normalize import NormalizeConfig, word_tokens

DEFAULT_NORMALIZE = NormalizeConfig()

_U64 = np.uint64
_P = 0x100000001B3  # odd, so it is invertible mod 2**64
_P_INV = pow(_P, -1, 1 << 64)
_LENGTH_MIX = 0x9E3779B97F4A7C15
_COMBINE = 0xC2B2AE3D27D4EB4F
_FMIX1 = 0xFF51AFD7ED558CCD
_FMIX2 = 0xC4CEB9FE1A85EC53


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: spreads every input bit over the output."""
    h = h ^ (h >> _U64(33))
    h = h * _U64(_FMIX1)
    h = h ^ (h >> _U64(33))
    h = h * _U64(_FMIX2)
    return h ^ (h >> _U64(33))


_POWER_CACHE: dict[int, np.ndarray] = {}


def _powers(base: int, count: int) -> np.ndarray:
    """``base**0 .. base**(count-1)`` mod 2**64 (a read-only view of a cache grown by doubling)."""
    cached = _POWER_CACHE.get(base)
    if cached is None or len(cached) < count:
        size = max(count, 2 * len(cached) if cached is not None else 1 << 16)
        powers = np.full(size, base, dtype=_U64)
        powers[0] = 1
        cached = np.cumprod(powers, dtype=_U64)  # wraps mod 2**64, as intended
        cached.flags.writeable = False
        _POWER_CACHE[base] = cached
    return cached[:count]


def _string_buffer(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and each string's offsets into them (starting at 0)."""
    arr = arr.cast(pa.large_string())
    if arr.null_count:
        raise ValueError("cannot hash null strings")
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    base = int(offsets[0])
    total = int(offsets[-1]) - base
    data = np.frombuffer(data_buf, dtype=np.uint8, count=total, offset=base) if total else np.zeros(0, np.uint8)
    return data, offsets - base


CHUNK_BYTES = 1 << 23  # bytes hashed per pass: the uint64 temporaries take ~40 bytes per byte (~320 MiB)


def _hash_ranges(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, seed: int) -> np.ndarray:
    """The hash of each byte range ``data[start:end]`` (ranges in order: starts and ends non-decreasing).

    Runs of ranges spanning at most ``CHUNK_BYTES`` are hashed one run at a time (a longer range alone), so
    memory stays bounded whatever the batch size; a hash depends only on its range's bytes, so the runs
    give the same hashes as one pass."""
    if len(data) <= CHUNK_BYTES or not len(starts):
        return _hash_ranges_once(data, starts, ends, seed)
    out = np.empty(len(starts), dtype=_U64)
    i = 0
    while i < len(starts):
        low = int(starts[i])
        j = max(i + 1, int(np.searchsorted(ends, low + CHUNK_BYTES, side="right")))
        high = int(ends[i:j].max())
        out[i:j] = _hash_ranges_once(data[low:high], starts[i:j] - low, ends[i:j] - low, seed)
        i = j
    return out


def _hash_ranges_once(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, seed: int) -> np.ndarray:
    """``_hash_ranges`` in one pass: ``h = sum_j (byte_j + 1) * P**j`` from prefix sums."""
    total = len(data)
    prefix = np.zeros(total + 1, dtype=_U64)
    np.cumsum((data.astype(_U64) + _U64(1)) * _powers(_P, total), dtype=_U64, out=prefix[1:])
    inverse = _powers(_P_INV, total + 1)
    h = (prefix[ends] - prefix[starts]) * inverse[starts]
    lengths = (ends - starts).astype(_U64) + _U64(1)  # +1: the empty string does not hash to 0
    return fmix64(h ^ (lengths * _U64(_LENGTH_MIX)) ^ _U64(seed & 0xFFFFFFFFFFFFFFFF))


def hash_strings(strings: pa.Array | pa.ChunkedArray | list[str], seed: int = 0) -> np.ndarray:
    """A 64-bit hash of each string (UTF-8 bytes), equal strings giving equal hashes."""
    arr = pa.array(strings, type=pa.large_string()) if isinstance(strings, list) else strings
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    data, offsets = _string_buffer(arr)
    return _hash_ranges(data, offsets[:-1], offsets[1:], seed)


@dataclass(frozen=True)
class HashedTokens:
    """The token hashes of a batch of rows, row by row: ``hash[offsets[i]:offsets[i + 1]]`` are row i's."""

    hash: np.ndarray  # uint64
    offsets: np.ndarray  # int64, rows + 1

    def __len__(self) -> int:
        """The number of rows."""
        return len(self.offsets) - 1


_ASCII_WORD = np.zeros(256, dtype=bool)
_ASCII_WORD[[*range(ord("a"), ord("z") + 1), *range(ord("0"), ord("9") + 1)]] = True


def ascii_word_hashes(texts: pa.Array, seed: int = 0) -> HashedTokens:
    """Hashes of the words (runs of ``[a-z0-9]``) of lowercase ASCII texts, straight from the bytes:
    equal to hashing the strings ``normalize.word_tokens`` gives, without building them."""
    data, offsets = _string_buffer(texts)
    rows = len(offsets) - 1
    is_word = _ASCII_WORD[data]
    first = is_word.copy()
    first[1:] &= ~is_word[:-1]
    last = is_word.copy()
    last[:-1] &= ~is_word[1:]
    filled = offsets[1:] > offsets[:-1]  # words never cross a row boundary
    first[offsets[:-1][filled]] = is_word[offsets[:-1][filled]]
    last[offsets[1:][filled] - 1] = is_word[offsets[1:][filled] - 1]
    starts, ends = np.flatnonzero(first), np.flatnonzero(last) + 1
    row = np.searchsorted(offsets, starts, side="right") - 1
    counts = np.bincount(row, minlength=rows)
    token_offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=token_offsets[1:])
    return HashedTokens(_hash_ranges(data, starts, ends, seed), token_offsets)


def merge_hashed(parts: list[tuple[np.ndarray, HashedTokens]], rows: int) -> HashedTokens:
    """Token hashes of subsets of rows (each with its row indices) put back in row order."""
    counts = np.zeros(rows, dtype=np.int64)
    for which, tokens in parts:
        counts[which] = np.diff(tokens.offsets)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    out = np.zeros(int(offsets[-1]), dtype=_U64)
    for which, tokens in parts:
        per_row = np.diff(tokens.offsets)
        dest = np.repeat(offsets[which] - tokens.offsets[:-1], per_row) + np.arange(len(tokens.hash))
        out[dest] = tokens.hash
    return HashedTokens(out, offsets)


def hash_token_column(values: pa.Array, seed: int = 0) -> np.ndarray:
    """Hash of each token (string, or integer token id): distinct tokens are hashed once, then gathered."""
    if pa.types.is_integer(values.type):
        ids = np.asarray(values.cast(pa.uint64()), dtype=_U64)
        return fmix64((ids + _U64(1)) * _U64(_LENGTH_MIX) ^ _U64(seed & 0xFFFFFFFFFFFFFFFF))
    if not len(values):
        return np.zeros(0, dtype=_U64)
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = np.asarray(encoded.indices, dtype=np.int64)
    return hash_strings(encoded.dictionary, seed)[codes]


def text_keys(texts: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """``[n, 2]`` uint64: a 128-bit key of each text (two independently seeded 64-bit hashes)."""
    return np.stack([hash_strings(texts, seed=0x5EED), hash_strings(texts, seed=0xC0FFEE)], axis=1)


@dataclass(frozen=True)
class NGrams:
    """N-gram hashes of a batch: which row, at which token, how many tokens, and the hash."""

    row: np.ndarray  # int64, index of the row in the batch
    position: np.ndarray  # int64, index of the first token within its row
    length: np.ndarray  # int64, tokens in the n-gram (n, or fewer for a short row kept whole)
    hash: np.ndarray  # uint64

    def __len__(self) -> int:
        return len(self.hash)


Tokens: TypeAlias = pa.ListArray | pa.LargeListArray | pa.ChunkedArray | HashedTokens


def token_hashes(tokens: Tokens, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every token of a list column, and the row offsets into them (starting at 0)."""
    if isinstance(tokens, HashedTokens):
        if seed:
            raise ValueError("pre-hashed tokens carry seed 0")
        return tokens.hash, tokens.offsets
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    if pa.types.is_list(tokens.type):
        tokens = tokens.cast(pa.large_list(tokens.type.value_type))
    offsets = np.asarray(tokens.offsets, dtype=np.int64)
    token_hash = hash_token_column(tokens.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])), seed)
    return token_hash, offsets - offsets[0]


def ngram_hashes(tokens: Tokens, n: int, seed: int = 0, short_rows: str = "whole") -> NGrams:
    """Hashes of every run of ``n`` consecutive tokens in each row of a list column (strings or token ids).

    The n-gram hash is ``fmix64(sum_k t[i+k] * C**(n-1-k) ^ length * L ^ seed)`` over the token
    hashes ``t``: ``n`` shifted multiply-adds over the whole batch, no gather per n-gram.
    ``short_rows="whole"``: a row with 1..n-1 tokens gives one n-gram of all its tokens
    (so short items still match); ``"drop"``: such rows give none.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if short_rows not in ("whole", "drop"):
        raise ValueError(f"short_rows must be 'whole' or 'drop', not {short_rows!r}")
    token_hash, offsets = token_hashes(tokens, seed)
    counts = np.diff(offsets)
    grams_per_row = np.maximum(counts - n + 1, 0)
    if short_rows == "whole":
        grams_per_row = np.where((counts > 0) & (counts < n), 1, grams_per_row)
    row = np.repeat(np.arange(len(counts), dtype=np.int64), grams_per_row)
    # position of each n-gram within its row: 0, 1, ... restarting at each row
    first_gram = np.cumsum(grams_per_row) - grams_per_row
    position = np.arange(len(row), dtype=np.int64) - np.repeat(first_gram, grams_per_row)
    length = np.minimum(counts[row], n)
    start = offsets[row] + position
    # polynomial over the n tokens that start at every token position (ignoring row ends) ...
    windows = max(len(token_hash) - n + 1, 0)
    poly = np.zeros(windows, dtype=_U64)
    for k in range(n):
        poly = poly * _U64(_COMBINE) + token_hash[k : k + windows]
    full = length == n
    acc = np.zeros(len(row), dtype=_U64)
    acc[full] = poly[start[full]]  # ... of which the n-grams inside one row are picked
    short = np.flatnonzero(~full)
    if len(short):  # rows shorter than n, hashed whole
        short_acc = np.zeros(len(short), dtype=_U64)
        for k in range(int(length[short].max())):
            inside = k < length[short]
            step = short_acc * _U64(_COMBINE) + token_hash[np.where(inside, start[short] + k, 0)]
            short_acc = np.where(inside, step, short_acc)
        acc[short] = short_acc
    mixed = acc ^ (length.astype(_U64) * _U64(_LENGTH_MIX)) ^ _U64(seed & 0xFFFFFFFFFFFFFFFF)
    return NGrams(row=row, position=position, length=length, hash=fmix64(mixed))


PREFIX_BITS = 22


def prefix_key(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A screening key of a window's first two token hashes (its low ``PREFIX_BITS`` bits index a bitmap)."""
    return (first * _U64(_COMBINE) + second) & _U64((1 << PREFIX_BITS) - 1)


def window_hashes(
    tokens: Tokens, lengths: list[int], seed: int = 0, prefix_screen: np.ndarray | None = None, screen_below: int = 0
) -> dict[int, NGrams]:
    """For each ``L`` in ``lengths``, the hashes of every run of exactly ``L`` tokens inside a row.

    One pass of the same polynomial as ``ngram_hashes`` yields every length on the way, so a window
    of ``L`` tokens hashes equal to an ``L``-gram, and to a row of ``L`` tokens kept whole: a short
    benchmark item is found inside longer training rows. ``prefix_screen`` (a bool bitmap over
    ``prefix_key`` of the first two tokens) keeps only the windows shorter than ``screen_below`` that
    can start a wanted run, so looking for a few short items costs little.
    """
    wanted = sorted({int(L) for L in lengths})
    if not wanted or wanted[0] < 1:
        raise ValueError(f"window lengths must be at least 1, got {lengths}")
    token_hash, offsets = token_hashes(tokens, seed)
    counts = np.diff(offsets)
    row_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    position_of = np.arange(len(token_hash), dtype=np.int64) - offsets[row_of]
    left = counts[row_of] - position_of  # tokens from each position to the end of its row
    screened = None
    if prefix_screen is not None and len(token_hash) > 1:
        screened = prefix_screen[prefix_key(token_hash[:-1], token_hash[1:])]
    out: dict[int, NGrams] = {}
    poly = np.zeros(len(token_hash), dtype=_U64)
    for k in range(wanted[-1]):
        windows = max(len(token_hash) - k, 0)
        poly = poly[:windows] * _U64(_COMBINE) + token_hash[k : k + windows]
        size = k + 1
        if size not in wanted:
            continue
        keep = left[:windows] >= size
        if screened is not None and size < screen_below and size >= 2:
            keep &= screened[:windows]
        start = np.flatnonzero(keep)
        mixed = poly[start] ^ _U64(size * _LENGTH_MIX & 0xFFFFFFFFFFFFFFFF) ^ _U64(seed & 0xFFFFFFFFFFFFFFFF)
        out[size] = NGrams(
            row=row_of[start], position=position_of[start], length=np.full(len(start), size, dtype=np.int64), hash=fmix64(mixed)
        )
    return out


def word_hashes(texts: pl.Series, config: NormalizeConfig = DEFAULT_NORMALIZE) -> HashedTokens:
    """Hashes of the normalized words of each text, equal to hashing ``normalize.word_tokens(texts, config)``.

    Pure-ASCII rows (most of them) are lowercased and split into words on their bytes with NumPy;
    the other rows take the Unicode path (NFKC, diacritics, regex words).
    """
    if config.digits_to_zero or not config.lowercase:
        return HashedTokens(*token_hashes(word_tokens(texts, config).to_arrow(), 0))
    non_ascii = texts.str.contains(r"[^\x00-\x7F]").fill_null(False).to_numpy()
    parts = []
    plain = np.flatnonzero(~non_ascii)
    if len(plain):
        lowered = texts.gather(plain).str.to_lowercase().to_arrow()
        if isinstance(lowered, pa.ChunkedArray):
            lowered = lowered.combine_chunks()
        parts.append((plain, ascii_word_hashes(lowered)))
    other = np.flatnonzero(non_ascii)
    if len(other):
        parts.append((other, HashedTokens(*token_hashes(word_tokens(texts.gather(other), config).to_arrow(), 0))))
    return merge_hashed(parts, len(texts))
