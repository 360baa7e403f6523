"""``thresher dedup --executor local|ray``: the heavy stages of dedup on datatrove's executors.

The command's own process reads and converts the inputs once (counting, quarantining and spooling them as the
in-process path does), then runs, as datatrove pipelines on ``LocalPipelineExecutor`` or ``RayPipelineExecutor``:

1. ``CanonicalFeatures`` (``--tasks`` tasks): task r computes the features, signatures and band keys of every
   batch b with b mod tasks = r, from the same canonical batches the in-process path reads;
2. ``DedupBuckets`` (one task per band shard, up to ``--tasks``): candidate pairs per shard of bands;
3. ``DedupClusters`` (one task): components over the pairs and the decisions.

The command then writes ``kept.parquet``, ``removed.parquet`` and the summary with the in-process path's own
writer, so the outputs are the same bytes (tests/test_dedup_executors.py). The work files live in a hidden folder
of the output folder, removed at the end: on a cluster, ``--out`` and the inputs must be on storage every node
sees. ``--ray-address`` joins a running cluster; without it a local Ray starts with ``--tasks`` CPUs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep

from thresher.accounting import Account
from thresher.curation.datatrove_steps import DedupBuckets, DedupClusters, _load, _ranks, write_features
from thresher.curation.dedup import Decisions, DedupConfig, FeatureArrays, Features, Spool, _batch_features, iter_inputs
from thresher.errors import InputError
from thresher.executors import Executor, check_complete, stage_runner
from thresher.records import Kind


def check_supported(config: DedupConfig) -> None:
    if config.method == "embedding" or config.verify:
        raise InputError("--executor runs exact and minhash dedup without --verify; run embedding dedup or --verify in one process")


class CanonicalFeatures(PipelineStep):
    """Stage 1 on canonical inputs: this task's batches (every ``world_size``-th), each to its own numbered files."""

    name = "thresher dedup: canonical features"
    type = "🫂 - DEDUP"

    def __init__(self, inputs: list[str], kind: Kind, config: DedupConfig, spooled: dict[int, str], folder: str, band_shards: int) -> None:
        super().__init__()
        self.inputs, self.kind, self.config, self.spooled = inputs, kind, config, spooled
        self.folder, self.band_shards = folder, band_shards

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        folder = get_datafolder(self.folder)
        spool = Spool(Path(self.folder))
        spool.paths = {index: Path(path) for index, path in self.spooled.items()}
        batches = iter_inputs(self.inputs, self.kind, {}, None, self.config.batch_rows, skip_bad=True, spool=spool)
        for number, (index, kind, table) in enumerate(batches):
            if number % world_size == rank:
                found = Features()
                _batch_features(table, kind, index, self.config, found)
                write_features(folder, number, found.finish(), self.config, self.band_shards)
                self.stat_update("documents", value=table.num_rows)
        return
        yield


def spool_inputs(
    inputs: list[str], kind: Kind | None, quarantine: Any, batch_rows: int, spool: Spool, on_batch: Callable[[int], None] | None
) -> tuple[Kind, dict[str, Account]]:
    """The first pass without features: conversion, accounting, quarantine and the spool."""
    counts: dict[str, Account] = {}
    found_kind = kind
    for _, batch_kind, table in iter_inputs(inputs, kind, counts, quarantine, batch_rows, spool=spool):
        found_kind = batch_kind
        if on_batch:
            on_batch(table.num_rows)
    return found_kind or Kind.SFT, counts


def run_stages(
    inputs: list[str], kind: Kind, config: DedupConfig, spool: Spool, executor: Executor, out: Path
) -> tuple[FeatureArrays, Decisions]:
    """Stages 1–3 on the executor; the features the writer needs and the decisions, read back in input order."""
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out))
    try:
        run = stage_runner(executor, work)
        data = str(work / "data")
        spooled = {index: str(path) for index, path in spool.paths.items()}
        run([CanonicalFeatures(inputs, kind, config, spooled, data, executor.band_shards)], executor.tasks, "features")
        check_complete(work, "features", executor.tasks, "dedup")
        if config.method == "minhash":
            shards = min(executor.band_shards, executor.tasks)
            run([DedupBuckets(data, config)], shards, "buckets")
            check_complete(work, "buckets", shards, "dedup")
        run([DedupClusters(data, config)], 1, "clusters")
        check_complete(work, "clusters", 1, "dedup")
        return _read_back(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _read_back(data: str) -> tuple[FeatureArrays, Decisions]:
    folder = get_datafolder(data)
    numbers = _ranks(folder)
    features = [_load(folder, f"features/{n:05d}.npz") for n in numbers]
    names = [_load(folder, f"ids/{n:05d}.npz") for n in numbers]
    decided = [_load(folder, f"decisions/{n:05d}.npz") for n in numbers]

    def cat(parts: list[dict[str, np.ndarray]], key: str, empty: np.ndarray) -> np.ndarray:
        return np.concatenate([p[key] for p in parts]) if parts else empty

    arrays = FeatureArrays(
        input_index=cat(features, "input_index", np.zeros(0, np.int64)),
        source=pl.Series("source", pa.array(cat(names, "sources", np.zeros(0, str)).tolist(), pa.string())),
        ids=pl.Series("id", pa.array(cat(names, "ids", np.zeros(0, str)).tolist(), pa.string())),
        length=cat(features, "length", np.zeros(0, np.int64)),
        exact=cat(features, "exact", np.zeros((0, 2), np.uint64)),
        signature=None,
        texts=None,
    )
    decisions = Decisions(
        duplicate_of=cat(decided, "keeper", np.zeros(0, np.int64)).astype(np.int64),
        method=cat(decided, "method", np.zeros(0, str)).astype(object),
        score=cat(decided, "score", np.zeros(0, np.float64)),
    )
    return arrays, decisions
