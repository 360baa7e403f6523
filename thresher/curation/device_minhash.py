"""Normalized text -> MinHash signatures with every step after normalization on one device (the GPU path of
``thresher dedup --device cuda``): the texts' bytes go up once (pinned), and word boundaries, word hashes,
n-gram hashes, one-permutation MinHash and densification run there as whole-tensor operations, with no host
synchronization until the signatures come back.

Pure-ASCII rows (after normalization: lowercase, punctuation turned to spaces) take that path; a row with other
characters takes the CPU n-gram hasher (Unicode word rules) and joins the rest on the device. Every formula is the
CPU path's (``ngrams._hash_ranges``, ``ngrams.ngram_hashes``, ``minhash.signatures``) in wrapping int64
arithmetic, so the signatures are bit-identical to it: tests/test_device_minhash.py checks that on CPU tensors,
and the GPU kit on CUDA.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from thresher.curation import lsh as lsh_mix
from thresher.curation import ngrams
from thresher.curation.minhash import EMPTY, MinHashParams, fmix64_torch, signature_table
from thresher.curation.normalize import words_of

_I64 = lambda value: int(np.uint64(value & 0xFFFFFFFFFFFFFFFF).astype(np.int64))  # noqa: E731 - a uint64 constant as int64

_COMBINE = _I64(ngrams._COMBINE)
_LENGTH_MIX = _I64(ngrams._LENGTH_MIX)
_POWERS: dict[tuple[str, int], torch.Tensor] = {}


def _powers(base: int, count: int, device: torch.device) -> torch.Tensor:
    """base**i mod 2**64 as int64 on ``device`` (the CPU path's cached table, uploaded once and grown by doubling)."""
    key = (str(device), base)
    have = _POWERS.get(key)
    if have is None or len(have) < count:
        table = ngrams._powers(base, max(count, 2 * len(have) if have is not None else 1 << 16))
        have = torch.from_numpy(table.view(np.int64).copy()).to(device)
        _POWERS[key] = have
    return have[:count]


def _word_table(device: torch.device) -> torch.Tensor:
    return torch.from_numpy(ngrams._ASCII_WORD).to(device)


def ascii_word_hashes(data: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hashes of the words (runs of ``[a-z0-9]``) of lowercase ASCII rows given as bytes and row offsets, and each
    row's offsets into them: ``ngrams.ascii_word_hashes`` on a device."""
    rows = len(offsets) - 1
    device = data.device
    if not len(data):
        return torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(rows + 1, dtype=torch.int64, device=device)
    is_word = _word_table(device)[data.long()]
    first = is_word.clone()
    first[1:] &= ~is_word[:-1]
    last = is_word.clone()
    last[:-1] &= ~is_word[1:]
    filled = offsets[1:] > offsets[:-1]  # words never cross a row boundary
    heads, tails = offsets[:-1][filled], offsets[1:][filled] - 1
    first[heads] = is_word[heads]
    last[tails] = is_word[tails]
    starts = torch.nonzero(first).flatten()
    ends = torch.nonzero(last).flatten() + 1
    total = len(data)
    weighted = (data.long() + 1) * _powers(ngrams._P, total, device)
    prefix = torch.zeros(total + 1, dtype=torch.int64, device=device)
    prefix[1:] = torch.cumsum(weighted, 0)  # wraps mod 2**64, as the CPU path's uint64 sums do
    h = (prefix[ends] - prefix[starts]) * _powers(ngrams._P_INV, total + 1, device)[starts]
    lengths = ends - starts + 1
    hashes = fmix64_torch(h ^ (lengths * _LENGTH_MIX))  # seed 0
    row = torch.searchsorted(offsets, starts, right=True) - 1
    counts = torch.bincount(row, minlength=rows)
    token_offsets = torch.zeros(rows + 1, dtype=torch.int64, device=device)
    token_offsets[1:] = torch.cumsum(counts, 0)
    return hashes, token_offsets


def ngram_hashes(token_hash: torch.Tensor, offsets: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, hash) of every n-gram, rows shorter than ``n`` kept whole: ``ngrams.ngram_hashes`` on a device."""
    device = token_hash.device
    counts = offsets[1:] - offsets[:-1]
    grams_per_row = torch.clamp(counts - n + 1, min=0)
    grams_per_row = torch.where((counts > 0) & (counts < n), torch.ones_like(counts), grams_per_row)
    rows = torch.arange(len(counts), device=device)
    row = torch.repeat_interleave(rows, grams_per_row)
    first_gram = torch.cumsum(grams_per_row, 0) - grams_per_row
    position = torch.arange(len(row), device=device) - torch.repeat_interleave(first_gram, grams_per_row)
    length = torch.clamp(counts[row], max=n)
    start = offsets[row] + position
    windows = max(len(token_hash) - n + 1, 0)
    poly = torch.zeros(windows, dtype=torch.int64, device=device)
    for k in range(n):
        poly = poly * _COMBINE + token_hash[k : k + windows]
    acc = torch.zeros(len(row), dtype=torch.int64, device=device)
    full = length == n
    acc[full] = poly[start[full]]
    short = torch.nonzero(~full).flatten()
    if len(short):  # rows shorter than n, hashed whole (at most n - 1 steps)
        short_acc = torch.zeros(len(short), dtype=torch.int64, device=device)
        for k in range(n - 1):
            inside = k < length[short]
            step = short_acc * _COMBINE + token_hash[torch.where(inside, start[short] + k, 0)]
            short_acc = torch.where(inside, step, short_acc)
        acc[short] = short_acc
    return row, fmix64_torch(acc ^ (length * _LENGTH_MIX))


def _upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A copy of ``array`` on ``device``: through pinned memory, asynchronously, to a GPU."""
    tensor = torch.from_numpy(np.array(array))  # a copy: Arrow's buffers are read-only
    return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor


def text_signatures(normalized: pl.Series, n: int, params: MinHashParams, device: str) -> np.ndarray:
    """``[rows, num_perm]`` uint32 signatures of normalized texts, equal to
    ``minhash.signatures(ngram_hashes(words_of(normalized), n), ...)``, computed on ``device``."""
    rows = len(normalized)
    target = torch.device(device)
    out = torch.full((rows, params.num_perm), int(EMPTY), dtype=torch.int64, device=target)
    ascii_rows = (~normalized.str.contains(r"[^\x00-\x7F]").fill_null(False)).to_numpy()
    plain = np.flatnonzero(ascii_rows)
    if len(plain):
        arrow = normalized.gather(plain).to_arrow().cast(pa.large_string())
        if isinstance(arrow, pa.ChunkedArray):
            arrow = arrow.combine_chunks()
        data, offsets = ngrams._string_buffer(arrow)
        token_hash, token_offsets = ascii_word_hashes(_upload(data, target), _upload(offsets, target))
        row, hashes = ngram_hashes(token_hash, token_offsets, n)
        out[torch.from_numpy(plain).to(target)] = signature_table(row, hashes, len(plain), params)
    other = np.flatnonzero(~ascii_rows)
    if len(other):  # Unicode word rules: the CPU n-gram hasher, then the same MinHash on the device
        grams = ngrams.ngram_hashes(words_of(normalized.gather(other)).to_arrow(), n, short_rows="whole")
        row = torch.from_numpy(grams.row).to(target)
        hashes = torch.from_numpy(np.ascontiguousarray(grams.hash).view(np.int64)).to(target)
        out[torch.from_numpy(other).to(target)] = signature_table(row, hashes, len(other), params)
    return out.cpu().numpy().astype(np.uint32)


# ---------------------------------------------------------------- LSH and components on the device


def band_keys(signatures: torch.Tensor, banding: lsh_mix.Banding) -> torch.Tensor:
    """``[n, bands]`` int64 keys, bit-identical to ``lsh.band_keys`` (which works in uint64)."""
    n, bands, rows = signatures.shape[0], banding.bands, banding.rows
    used = signatures[:, : bands * rows].long().reshape(n, bands, rows)
    keys = (torch.arange(bands, dtype=torch.int64, device=signatures.device) * _I64(lsh_mix.BAND_MIX)).expand(n, bands).clone()
    for r in range(rows):
        keys = fmix64_torch(keys * _I64(0x100000001B3) ^ used[:, :, r])
    return keys


def candidate_pairs(keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``lsh.candidate_pairs`` on a device: per band, a stable sort of the keys; each bucket's members paired with its
    lowest row; unique pairs, sorted."""
    index = torch.nonzero(valid).flatten()
    found = []
    for band in range(keys.shape[1]):
        column = keys[index, band]
        sorted_keys, order = torch.sort(column, stable=True)
        sorted_rows = index[order]
        new_bucket = torch.ones(len(sorted_keys), dtype=torch.bool, device=keys.device)
        new_bucket[1:] = sorted_keys[1:] != sorted_keys[:-1]
        starts = torch.where(new_bucket, torch.arange(len(sorted_keys), device=keys.device), 0)
        leader_at = torch.cummax(starts, 0).values
        member = ~new_bucket
        found.append(torch.stack([sorted_rows[leader_at[member]], sorted_rows[member]], dim=1))
    if not found:
        return torch.zeros((0, 2), dtype=torch.int64, device=keys.device)
    pairs = torch.cat(found)
    return torch.unique(pairs, dim=0) if len(pairs) else pairs.reshape(0, 2)


def components(num_rows: int, pairs: torch.Tensor) -> torch.Tensor:
    """A connected-component label per row (the smallest row of its component): min-label propagation with pointer
    jumping, one host check per round (rounds grow with the log of the components' diameter, not the rows)."""
    device = pairs.device
    label = torch.arange(num_rows, device=device)
    if not len(pairs):
        return label
    a, b = pairs[:, 0], pairs[:, 1]
    while True:
        low = torch.minimum(label[a], label[b])
        new = label.clone()
        new.scatter_reduce_(0, a, low, reduce="amin")
        new.scatter_reduce_(0, b, low, reduce="amin")
        new = new[new]  # pointer jumping: follow labels to their own labels
        new = new[new]
        if torch.equal(new, label):
            return label
        label = new


def lsh_pairs(signatures: np.ndarray, banding: lsh_mix.Banding) -> np.ndarray:
    """``lsh.lsh_pairs`` on the GPU: band keys, bucket sorts and unique pairs there (the same pairs)."""
    on_device = torch.from_numpy(signatures.astype(np.int64)).to("cuda")
    valid = ~(on_device == int(EMPTY)).all(dim=1)  # rows without n-grams never pair (``minhash.empty_rows``)
    return candidate_pairs(band_keys(on_device, banding), valid).cpu().numpy()


def components_of(num_rows: int, pairs: np.ndarray) -> np.ndarray:
    """``lsh.components`` on the GPU (each row labelled by its component's smallest row: the same groups)."""
    return components(num_rows, torch.from_numpy(pairs).to("cuda")).cpu().numpy()


__all__ = [
    "ascii_word_hashes",
    "band_keys",
    "candidate_pairs",
    "components",
    "components_of",
    "lsh_pairs",
    "ngram_hashes",
    "text_signatures",
]
