"""Locality-sensitive hashing over MinHash signatures, true-Jaccard verification and clustering.

Signatures are cut into ``bands`` bands of ``rows`` values; rows whose band values agree in any
band are candidates. Everything is vectorized: band keys are hashed with array arithmetic, and
the rows sharing a key are found by sorting the keys, never by a per-row Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from thresher.curation.minhash import empty_rows
from thresher.curation.ngrams import NGrams, fmix64

_U64 = np.uint64
BAND_MIX = 0x9E3779B97F4A7C15
_INTEGRATION_POINTS = 201


@dataclass(frozen=True)
class Banding:
    """How a signature of ``bands * rows`` values is cut; ``bands * rows`` may be below ``num_perm``."""

    bands: int
    rows: int

    def collision_probability(self, jaccard: np.ndarray | float) -> np.ndarray:
        """Probability that two rows with this Jaccard similarity share at least one band."""
        return 1.0 - (1.0 - np.asarray(jaccard, dtype=np.float64) ** self.rows) ** self.bands


def optimal_banding(threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5) -> Banding:
    """The bands x rows (with ``bands * rows <= num_perm``) minimizing the weighted false positive
    area (below ``threshold``) plus false negative area (above it) of the S-curve."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    best: tuple[float, Banding] | None = None
    below = np.linspace(0.0, threshold, _INTEGRATION_POINTS)
    above = np.linspace(threshold, 1.0, _INTEGRATION_POINTS)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            banding = Banding(bands, rows)
            fp = np.trapezoid(banding.collision_probability(below), below)
            fn = np.trapezoid(1.0 - banding.collision_probability(above), above)
            error = false_positive_weight * fp + false_negative_weight * fn
            if best is None or error < best[0] - 1e-12:
                best = (error, banding)
    assert best is not None
    return best[1]


def band_keys(signatures: np.ndarray, banding: Banding) -> np.ndarray:
    """``[n, bands]`` uint64 keys: a hash of each band's values and the band's index."""
    n, width = signatures.shape
    if banding.bands * banding.rows > width:
        raise ValueError(
            f"{banding.bands} bands x {banding.rows} rows needs {banding.bands * banding.rows} values, signatures have {width}"
        )
    used = signatures[:, : banding.bands * banding.rows].astype(_U64).reshape(n, banding.bands, banding.rows)
    keys = np.broadcast_to(np.arange(banding.bands, dtype=_U64) * _U64(BAND_MIX), (n, banding.bands)).copy()
    for r in range(banding.rows):
        keys = fmix64(keys * _U64(0x100000001B3) ^ used[:, :, r])
    return keys


def candidate_pairs(keys: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``[m, 2]`` int64 pairs ``(leader, member)``: within each band bucket, every member paired
    with the bucket's lowest row index (enough for connected components). Unique, sorted."""
    n, bands = keys.shape
    index = np.arange(n, dtype=np.int64)
    if valid is not None:
        index = index[valid]
    found = []
    for band in range(bands):
        column = keys[index, band]
        order = np.argsort(column, kind="stable")  # stable: rows of one bucket stay in index order
        sorted_keys, sorted_rows = column[order], index[order]
        new_bucket = np.ones(len(sorted_keys), dtype=bool)
        new_bucket[1:] = sorted_keys[1:] != sorted_keys[:-1]
        leader_at = np.maximum.accumulate(np.where(new_bucket, np.arange(len(sorted_keys)), 0))
        member = ~new_bucket
        found.append(np.stack([sorted_rows[leader_at[member]], sorted_rows[member]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def lsh_pairs(signatures: np.ndarray, banding: Banding) -> np.ndarray:
    """Candidate pairs of rows (rows without n-grams never pair)."""
    return candidate_pairs(band_keys(signatures, banding), ~empty_rows(signatures))


def ngram_sets(grams: NGrams) -> pl.DataFrame:
    """Each row's distinct n-gram hashes as a (row, hash) table."""
    return pl.DataFrame({"row": grams.row, "hash": grams.hash}).unique()


def jaccard_of_pairs(pairs: np.ndarray, sets: pl.DataFrame) -> np.ndarray:
    """True Jaccard similarity of the n-gram sets of each pair (0 when both are empty)."""
    if not len(pairs):
        return np.zeros(0, dtype=np.float64)
    table = pl.DataFrame({"pair": np.arange(len(pairs)), "left": pairs[:, 0], "right": pairs[:, 1]})
    sizes = sets.group_by("row").len("size")
    left = table.join(sets, left_on="left", right_on="row").select("pair", "hash")
    right = table.join(sets, left_on="right", right_on="row").select("pair", "hash")
    shared = left.join(right, on=["pair", "hash"]).group_by("pair").len("shared")
    scored = (
        table.join(shared, on="pair", how="left")
        .join(sizes.rename({"size": "left_size"}), left_on="left", right_on="row", how="left")
        .join(sizes.rename({"size": "right_size"}), left_on="right", right_on="row", how="left")
        .fill_null(0)
        .sort("pair")
    )
    shared_n = scored["shared"].to_numpy().astype(np.float64)
    union = scored["left_size"].to_numpy() + scored["right_size"].to_numpy() - shared_n
    return np.divide(shared_n, union, out=np.zeros_like(shared_n), where=union > 0)


def components(num_rows: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label of each row, given undirected edges ``pairs`` (union-find equivalent)."""
    if not len(pairs):
        return np.arange(num_rows, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(num_rows, num_rows))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)
