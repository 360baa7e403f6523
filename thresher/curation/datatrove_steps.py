"""Thresher's dedup as datatrove pipeline steps, so the same job runs on datatrove's local, Slurm or
Ray executors. Four stages, each a separate executor run, and no stage holding every document's
signature:

1. ``DedupSignatures`` (any number of tasks): each task's documents -> small per-row features
   (``features/RANK.npz``: input, length, exact key), ids and sources (``ids/RANK.npz``), MinHash
   signatures (``signatures/RANK.npz``) and LSH band keys split into ``band_shards`` shards
   (``bands/SHARD/RANK.npz``).
2. ``DedupBuckets`` (any number of tasks, up to the shards): each task buckets its shards' bands
   over every document and writes the candidate pairs (``pairs/SHARD.npy``, global row ordinals).
   Its memory: its bands' keys (8 bytes per document and band), not the signatures.
3. ``DedupClusters`` (one task): connected components over the candidate pairs, the exact keys and
   lengths, through the same ``decide`` as ``thresher dedup``; the signatures and ids it needs (removed
   rows and their keepers) are read one task's file at a time -> ``decisions/RANK.npz``. Its memory
   grows with the candidate pairs and a few bytes per document, not with documents × permutations.
4. ``DedupFilter`` (the same tasks as stage 1): drops each task's duplicates, recording
   ``duplicate_of``, ``dedup_method`` and ``dedup_score`` in the metadata of removed documents
   (sent to ``exclusion_writer`` when one is given).

Rows are ordered by (rank, position in the task), which is what ``keep="first"`` and
``"source-priority"`` (rank = source) go by. Decisions equal ``thresher dedup``'s on the same rows in
the same order (tests/test_datatrove_steps.py, on the local executor and on Ray).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import polars as pl
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from thresher.curation.dedup import KEPT, DedupConfig, FeatureArrays, Features, add_text_features, banding_of, decide
from thresher.curation.lsh import band_keys, candidate_pairs
from thresher.curation.minhash import empty_rows, estimate_jaccard

STEP_TYPE = "🫂 - DEDUP"
DEFAULT_CONFIG = DedupConfig()
DEFAULT_BAND_SHARDS = 4


def _save(folder: Any, name: str, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **cast(dict[str, Any], arrays))
    with folder.open(name, "wb") as f:
        f.write(buffer.getvalue())


def _load(folder: Any, name: str) -> dict[str, np.ndarray]:
    with folder.open(name, "rb") as f:
        return dict(np.load(io.BytesIO(f.read()), allow_pickle=False))


def _rank_of(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].split(".")[0])


def _ranks(folder: Any) -> list[int]:
    """The stage-1 tasks that wrote features, in order."""
    return sorted(_rank_of(name) for name in folder.list_files("features"))


class DedupSignatures(PipelineStep):
    """Stage 1: per-row features, ids, MinHash signatures and sharded band keys of this task's documents."""

    name = "thresher dedup: signatures"
    type = STEP_TYPE

    def __init__(
        self,
        output_folder: DataFolderLike,
        config: DedupConfig = DEFAULT_CONFIG,
        batch_size: int = 4096,
        band_shards: int = DEFAULT_BAND_SHARDS,
    ) -> None:
        super().__init__()
        if config.method == "embedding" or config.verify:
            raise ValueError("the datatrove steps support exact and minhash dedup without --verify")
        if band_shards < 1:
            raise ValueError(f"band_shards must be at least 1, got {band_shards}")
        self.folder = get_datafolder(output_folder)
        self.config = config
        self.batch_size = batch_size
        self.band_shards = band_shards

    def _flush(self, batch: list[Document], rank: int, into: Features) -> None:
        texts = pl.Series("text", [d.text for d in batch], dtype=pl.String)
        sources = [str(d.metadata.get("source", "")) for d in batch]
        add_text_features(texts, [str(d.id) for d in batch], sources, rank, self.config, into)
        self.stat_update("documents", value=len(batch))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        features = Features()
        batch: list[Document] = []
        for doc in data:
            batch.append(doc)
            if len(batch) == self.batch_size:
                self._flush(batch, rank, features)
                batch = []
        if batch:
            self._flush(batch, rank, features)
        write_features(self.folder, rank, features.finish(), self.config, self.band_shards)
        return
        yield


def write_features(folder: Any, number: int, arrays: FeatureArrays, config: DedupConfig, band_shards: int) -> None:
    """Stage 1's files for one task (or one batch: ``number`` orders the rows globally): per-row features, ids and
    sources, signatures and the band keys split into ``band_shards`` shards."""
    _save(folder, f"features/{number:05d}.npz", input_index=arrays.input_index, length=arrays.length, exact=arrays.exact)
    _save(folder, f"ids/{number:05d}.npz", ids=arrays.ids.to_numpy().astype(str), sources=arrays.source.to_numpy().astype(str))
    if config.method == "minhash":
        signature = arrays.signature if arrays.signature is not None else np.zeros((0, config.num_perm), np.uint32)
        _save(folder, f"signatures/{number:05d}.npz", signature=signature)
        keys = band_keys(signature, banding_of(config))
        valid = ~empty_rows(signature)
        for shard in range(min(band_shards, keys.shape[1])):
            _save(folder, f"bands/{shard:03d}/{number:05d}.npz", keys=keys[:, shard::band_shards], valid=valid)


class DedupBuckets(PipelineStep):
    """Stage 2: the candidate pairs of this task's band shards (shards rank, rank + tasks, …) over every document."""

    name = "thresher dedup: buckets"
    type = STEP_TYPE

    def __init__(self, folder: DataFolderLike, config: DedupConfig = DEFAULT_CONFIG) -> None:
        super().__init__()
        self.folder = get_datafolder(folder)
        self.config = config

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if self.config.method != "minhash":
            return
        ranks = _ranks(self.folder)
        shards = sorted({name.split("/")[1] for name in self.folder.list_files("bands", recursive=True)})
        for shard in shards[rank::world_size]:
            parts = [_load(self.folder, f"bands/{shard}/{r:05d}.npz") for r in ranks]
            keys = np.concatenate([p["keys"] for p in parts])  # rows in (rank, position) order: global ordinals
            valid = np.concatenate([p["valid"] for p in parts])
            pairs = candidate_pairs(keys, valid)
            _save(self.folder, f"pairs/{shard}.npz", pairs=pairs)
            self.stat_update("candidate pairs", value=len(pairs))
        return
        yield


class DedupClusters(PipelineStep):
    """Stage 3 (one task): the duplicates among all documents, from the candidate pairs, decided once for every rank."""

    name = "thresher dedup: clusters"
    type = STEP_TYPE

    def __init__(self, folder: DataFolderLike, config: DedupConfig = DEFAULT_CONFIG) -> None:
        super().__init__()
        self.folder = get_datafolder(folder)
        self.config = config

    def _gather(self, kind: str, key: str, rows: np.ndarray, offsets: np.ndarray, ranks: list[int]) -> np.ndarray:
        """``key`` of the global ``rows`` (sorted, unique) from each task's ``kind`` file, one file at a time."""
        out: list[np.ndarray] = []
        for i, r in enumerate(ranks):
            lo, hi = np.searchsorted(rows, [offsets[i], offsets[i + 1]])
            if hi > lo:
                out.append(_load(self.folder, f"{kind}/{r:05d}.npz")[key][rows[lo:hi] - offsets[i]])
        return np.concatenate(out) if out else np.zeros(0)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("DedupClusters runs as one task (tasks=1)")
        ranks = _ranks(self.folder)
        parts = [_load(self.folder, f"features/{r:05d}.npz") for r in ranks]
        sizes = np.array([len(p["length"]) for p in parts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        features = FeatureArrays(
            input_index=np.concatenate([p["input_index"] for p in parts]) if parts else np.zeros(0, np.int64),
            source=pl.Series("source", [], dtype=pl.String),  # not needed: rank order is source order
            ids=pl.Series("id", [], dtype=pl.String),  # read at the end, for the removed rows' keepers only
            length=np.concatenate([p["length"] for p in parts]) if parts else np.zeros(0, np.int64),
            exact=np.concatenate([p["exact"] for p in parts]) if parts else np.zeros((0, 2), np.uint64),
            signature=None,
            texts=None,
        )
        del parts
        decisions = decide(features, self.config, near=self._near(ranks, offsets))
        dup = decisions.duplicate_of
        keepers = np.unique(dup[dup != KEPT])
        keeper_ids = self._gather("ids", "ids", keepers, offsets, ranks).astype(str)
        for i, r in enumerate(ranks):
            start, stop = offsets[i], offsets[i + 1]
            part = dup[start:stop]
            removed = part != KEPT
            names = np.full(len(part), "", dtype=keeper_ids.dtype if len(keeper_ids) else "<U1")
            names[removed] = keeper_ids[np.searchsorted(keepers, part[removed])]
            _save(
                self.folder,
                f"decisions/{r:05d}.npz",
                duplicate_of=names,
                keeper=part,  # the kept row's global ordinal (KEPT for kept rows)
                method=decisions.method[start:stop].astype(str),
                score=decisions.score[start:stop],
            )
            self.stat_update("removed", value=int(removed.sum()))
        return
        yield

    def _near(self, ranks: list[int], offsets: np.ndarray) -> Callable[[np.ndarray], tuple[np.ndarray, Callable[..., np.ndarray]]]:
        def near(alive: np.ndarray) -> tuple[np.ndarray, Callable[..., np.ndarray]]:
            names = self.folder.list_files("pairs") if self.folder.exists("pairs") else []
            found = [_load(self.folder, name)["pairs"] for name in sorted(names)]
            pairs = np.unique(np.concatenate(found), axis=0) if found and sum(map(len, found)) else np.zeros((0, 2), np.int64)

            def score(rows: np.ndarray, kept: np.ndarray) -> np.ndarray:
                needed = np.unique(np.concatenate([rows, kept]))
                sig = self._gather("signatures", "signature", needed, offsets, ranks)
                return estimate_jaccard(sig[np.searchsorted(needed, rows)], sig[np.searchsorted(needed, kept)])

            return pairs, score

        return near


class DedupFilter(BaseFilter):
    """Stage 4: drop this task's duplicates (same tasks and reader as stage 1)."""

    name = "thresher dedup: filter"
    type = STEP_TYPE

    def __init__(self, folder: DataFolderLike, exclusion_writer: Any = None) -> None:
        super().__init__(exclusion_writer)
        self.folder = get_datafolder(folder)
        self._decisions: dict[str, np.ndarray] = {}
        self._next = 0

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        i = self._next
        self._next += 1
        duplicate_of = str(self._decisions["duplicate_of"][i])
        if not duplicate_of:
            return True
        doc.metadata.update(
            duplicate_of=duplicate_of, dedup_method=str(self._decisions["method"][i]), dedup_score=float(self._decisions["score"][i])
        )
        return False, "duplicate"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._decisions = _load(self.folder, f"decisions/{rank:05d}.npz")
        self._next = 0
        yield from super().run(data, rank, world_size)
