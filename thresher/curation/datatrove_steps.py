"""Thresher's dedup as datatrove pipeline steps, so the same job runs on datatrove's local, Slurm or
Ray executors. Three stages, each a separate executor run:

1. ``DedupSignatures`` (any number of tasks): features of each task's documents -> ``FOLDER/features/RANK.npz``.
2. ``DedupClusters`` (one task): all features, in rank order, through the same ``decide`` as
   ``thresher dedup`` -> ``FOLDER/decisions/RANK.npz``.
3. ``DedupFilter`` (the same tasks as stage 1): drops each task's duplicates, recording
   ``duplicate_of``, ``dedup_method`` and ``dedup_score`` in the metadata of removed documents
   (sent to ``exclusion_writer`` when one is given).

Rows are ordered by (rank, position in the task), which is what ``keep="first"`` and
``"source-priority"`` (rank = source) go by.
"""

from __future__ import annotations

import io
from typing import Any, cast

import numpy as np
import polars as pl
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from thresher.curation.dedup import KEPT, DedupConfig, FeatureArrays, Features, add_text_features, decide

STEP_TYPE = "🫂 - DEDUP"
DEFAULT_CONFIG = DedupConfig()


def _save(folder: Any, name: str, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **cast(dict[str, Any], arrays))
    with folder.open(name, "wb") as f:
        f.write(buffer.getvalue())


def _load(folder: Any, name: str) -> dict[str, np.ndarray]:
    with folder.open(name, "rb") as f:
        return dict(np.load(io.BytesIO(f.read()), allow_pickle=False))


class DedupSignatures(PipelineStep):
    """Stage 1: exact keys, MinHash signatures and lengths of this task's documents."""

    name = "thresher dedup: signatures"
    type = STEP_TYPE

    def __init__(self, output_folder: DataFolderLike, config: DedupConfig = DEFAULT_CONFIG, batch_size: int = 4096) -> None:
        super().__init__()
        if config.method == "embedding" or config.verify:
            raise ValueError("the datatrove steps support exact and minhash dedup without --verify")
        self.folder = get_datafolder(output_folder)
        self.config = config
        self.batch_size = batch_size

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
        arrays = features.finish()
        signature = arrays.signature if arrays.signature is not None else np.zeros((len(arrays), 0), np.uint32)
        _save(
            self.folder,
            f"features/{rank:05d}.npz",
            ids=arrays.ids.to_numpy().astype(str),
            sources=arrays.source.to_numpy().astype(str),
            length=arrays.length,
            exact=arrays.exact,
            signature=signature,
        )
        return
        yield


class DedupClusters(PipelineStep):
    """Stage 2 (one task): the duplicates among all documents, decided once for every rank."""

    name = "thresher dedup: clusters"
    type = STEP_TYPE

    def __init__(self, folder: DataFolderLike, config: DedupConfig = DEFAULT_CONFIG) -> None:
        super().__init__()
        self.folder = get_datafolder(folder)
        self.config = config

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("DedupClusters runs as one task (tasks=1)")
        names = sorted(self.folder.list_files("features"))
        parts = [_load(self.folder, name) for name in names]
        ranks = [int(name.rsplit("/", 1)[-1].split(".")[0]) for name in names]
        features = FeatureArrays(
            input_index=np.concatenate([np.full(len(p["ids"]), r, np.int64) for p, r in zip(parts, ranks, strict=True)]),
            source=pl.Series("source", np.concatenate([p["sources"] for p in parts]).tolist(), dtype=pl.String),
            ids=pl.Series("id", np.concatenate([p["ids"] for p in parts]).tolist(), dtype=pl.String),
            length=np.concatenate([p["length"] for p in parts]),
            exact=np.concatenate([p["exact"] for p in parts]),
            signature=np.concatenate([p["signature"] for p in parts]) if self.config.method == "minhash" else None,
            texts=None,
        )
        decisions = decide(features, self.config)
        ids = features.ids.to_numpy().astype(str)
        start = 0
        for part, r in zip(parts, ranks, strict=True):
            stop = start + len(part["ids"])
            dup = decisions.duplicate_of[start:stop]
            _save(
                self.folder,
                f"decisions/{r:05d}.npz",
                duplicate_of=np.where(dup == KEPT, "", ids[np.maximum(dup, 0)]),
                method=decisions.method[start:stop].astype(str),
                score=decisions.score[start:stop],
            )
            self.stat_update("removed", value=int((dup != KEPT).sum()))
            start = stop
        return
        yield


class DedupFilter(BaseFilter):
    """Stage 3: drop this task's duplicates (same tasks and reader as stage 1)."""

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
