"""The audit as datatrove pipeline steps, so a cluster user decontaminates on datatrove's local, Slurm or Ray executors.

1. ``DecontamIndex`` (one task): loads the benchmarks once (hub or local release files) and writes
   their items to ``FOLDER/items.parquet``; with the embedding method, also their vectors to the
   embedding cache in ``FOLDER/embeddings``, so no worker encodes them again.
2. ``DecontamFilter`` (any number of tasks): every worker builds the detectors from those items and
   checks its documents in batches with the same code as ``thresher audit``; a contaminated
   document is dropped (or sent to ``exclusion_writer``) with ``contaminated_bench``,
   ``contaminated_id``, ``contamination_method``, ``contamination_score`` and ``contamination_evidence``
   in its metadata. The training-side n-gram cap, and the training-side counts behind shared text (a match whose
   overlap is only text many items or rows share does not flag unless ``config.flag`` has ``shared_boilerplate``),
   count the documents a worker has seen so far.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from thresher.decontam.audit import AuditConfig, combined_items, make_detector
from thresher.decontam.benchmarks import load_benchmarks
from thresher.decontam.matching import TrainBatch
from thresher.decontam.ngram import NgramDetector

STEP_TYPE = "🦠 - DECONT"
DEFAULT_CONFIG = AuditConfig()
ITEMS = "items.parquet"


def _with_cache(config: AuditConfig, folder: Any) -> AuditConfig:
    if "embedding" not in config.detector_methods or config.embedding.cache_dir or not folder.is_local():
        return config
    return replace(config, embedding=replace(config.embedding, cache_dir=str(Path(folder.path) / "embeddings")))


class DecontamIndex(PipelineStep):
    """Stage 1 (one task): the benchmark items, loaded once for every worker."""

    name = "thresher decontam: index"
    type = STEP_TYPE

    def __init__(
        self, folder: DataFolderLike, benches: list[str], bench_fields: list[str] | None = None, config: AuditConfig = DEFAULT_CONFIG
    ) -> None:
        super().__init__()
        self.folder = get_datafolder(folder)
        self.benches = benches
        self.bench_fields = bench_fields
        self.config = config

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("DecontamIndex runs as one task (tasks=1)")
        items = combined_items(load_benchmarks(self.benches, self.bench_fields))
        with self.folder.open(ITEMS, "wb") as f:
            items.write_parquet(f)
        self.stat_update("benchmark_items", value=items.height)
        config = _with_cache(self.config, self.folder)
        if "embedding" in config.detector_methods:
            make_detector("embedding", items, config)  # encodes the items into the shared cache
        return
        yield


class DecontamFilter(BaseFilter):
    """Stage 2 (any number of tasks): drop documents that contain benchmark items."""

    name = "thresher decontam: filter"
    type = STEP_TYPE

    def __init__(
        self, folder: DataFolderLike, config: AuditConfig = DEFAULT_CONFIG, exclusion_writer: Any = None, batch_size: int = 4096
    ) -> None:
        super().__init__(exclusion_writer, batch_size=batch_size)
        self.folder = get_datafolder(folder)
        self.config = _with_cache(config, self.folder)
        if "judge" in config.methods:
            raise ValueError("the datatrove filter runs ngram, minhash and embedding; run the judge with `thresher audit`")
        self._items: pl.DataFrame | None = None
        self._detectors: list[Any] = []
        self._seen = 0

    def _load(self) -> None:
        with self.folder.open(ITEMS, "rb") as f:
            self._items = pl.read_parquet(f)
        self._detectors = [make_detector(m, self._items, self.config) for m in self.config.detector_methods]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        if self._items is None:
            self._load()
        assert self._items is not None
        texts = pl.Series("text", [d.text for d in batch], dtype=pl.String)
        train = TrainBatch.of(texts, self._seen)
        self._seen += len(batch)
        found = []
        for detector in self._detectors:
            detector.scan(train)
            matches = detector.drain()
            flagged = matches.filter(pl.col("score") >= self.config.threshold(detector.name))
            if "shared_boilerplate" not in self.config.flag:  # as the audit's policy: shared text alone does not flag
                flagged = flagged.filter(
                    pl.col("distinct_score").is_null() | (pl.col("distinct_score") >= self.config.threshold(detector.name))
                )
            if isinstance(detector, NgramDetector):
                flagged = flagged.with_columns(detector.evidence(flagged).alias("evidence"))
            else:
                flagged = flagged.with_columns(pl.lit("").alias("evidence"))
            found.append(flagged.select("row", "item", "method", "score", "evidence"))
        results: list[bool | tuple[bool, str]] = [True] * len(batch)
        if not found:
            return results
        best = (
            pl.concat(found)
            .sort(["row", "score"], descending=[False, True])
            .unique("row", keep="first")
            .join(self._items.select("item", "bench", "bench_id"), on="item")
        )
        for row, bench, bench_id, method, score, evidence in best.select(
            "row", "bench", "bench_id", "method", "score", "evidence"
        ).iter_rows():
            doc = batch[row - train.offset]
            doc.metadata.update(
                contaminated_bench=bench,
                contaminated_id=bench_id,
                contamination_method=method,
                contamination_score=float(score),
                contamination_evidence=evidence,
            )
            self.stat_update(f"contaminated_{bench}")
            results[row - train.offset] = (False, "contaminated")
        return results

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._seen = 0
        yield from super().run(data, rank, world_size)
