"""``thresher audit|decontaminate --executor local|ray``: the audit's scan as datatrove tasks.

The command's own process reads and converts the training inputs once (counting rows per source, quarantining
bad rows, drawing the calibration sample) and writes each canonical batch to a numbered file with its place in
the stream (global offset, input, first row in that input). Then ``AuditScan`` runs as ``--tasks`` tasks on
``LocalPipelineExecutor`` or ``RayPipelineExecutor``: task r builds the detectors from the benchmark items and
scans every batch b with b mod tasks = r, exactly as the in-process scan does, and saves what its detectors
gathered (``Detector.state``) and its candidate rows' provenance. The command absorbs the tasks' states into its
own detectors; ``finish`` and everything after it (rephrase, judge, evidence, report, split) run as without an
executor, so the outputs are the same bytes (tests/test_decontam_executors.py).

Work files live in a hidden folder of the output folder, removed at the end: on a cluster, ``--out`` must be on
storage every node sees; with the embedding method, so should the embedding cache (``--cache-dir``).
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from thresher.accounting import Account, QuarantineWriter
from thresher.decontam.audit import AuditConfig, RowLedger, make_detector, placed_batches, prepare_batch, scan_batch, train_turns
from thresher.decontam.calibrate import RowSample
from thresher.decontam.matching import Detector
from thresher.executors import Executor, check_complete, stage_runner
from thresher.records import Kind

ITEMS = "items.parquet"


class AuditScan(PipelineStep):
    """The scan of every ``world_size``-th batch: the detectors' states and the candidate rows, to ``states/RANK``."""

    name = "thresher audit: scan"
    type = "🦠 - DECONT"

    def __init__(self, folder: str, config: AuditConfig, batches: list[dict[str, Any]]) -> None:
        super().__init__()
        self.folder, self.config, self.batches = folder, config, batches

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        folder = Path(self.folder)
        items = pl.read_parquet(folder / ITEMS)
        detectors = [make_detector(m, items, self.config) for m in self.config.detector_methods]
        ledger = RowLedger()
        for place in self.batches[rank::world_size]:
            table = pq.read_table(folder / "batches" / f"{place['number']:06d}.parquet")
            batch, prepared = prepare_batch(detectors, self.config, Kind(place["kind"]), table)
            batch.offset = place["offset"]
            ledger.keep(batch, table, place["input"], place["first_in_input"], scan_batch(detectors, batch, prepared))
            self.stat_update("rows", value=len(batch))
        states = folder / "states"
        states.mkdir(exist_ok=True)
        partial = states / f".{rank:05d}.pkl"
        with partial.open("wb") as f:
            pickle.dump({"ledger": ledger.frames, "detectors": [d.state() for d in detectors]}, f)
        partial.replace(states / f"{rank:05d}.pkl")  # whole or absent
        return
        yield


def scan_on_executor(
    train: list[str],
    kind: Kind | None,
    config: AuditConfig,
    items: pl.DataFrame,
    detectors: list[Detector],
    ledger: RowLedger,
    sample: RowSample,
    counts: dict[str, Account],
    quarantine: QuarantineWriter | None,
    on_rows: Callable[[int], None] | None,
    executor: Executor,
    work_dir: Path,
) -> None:
    """Fill ``ledger``, ``sample``, ``counts`` and the ``detectors`` as the in-process scan does, with the scan
    itself on ``executor``."""
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=work_dir))
    try:
        (work / "batches").mkdir()
        items.write_parquet(work / ITEMS)
        places: list[dict[str, Any]] = []
        for place, found, table in placed_batches(train, kind, config, counts, quarantine):
            pq.write_table(table, work / "batches" / f"{len(places):06d}.parquet", compression="lz4")
            places.append({"number": len(places), "kind": found.value, **asdict(place)})
            ledger.count(table)
            if config.calibrate:
                sample.add_turns(place.offset, train_turns(table, found, config.fields))
            if on_rows:
                on_rows(table.num_rows)
        tasks = max(1, min(executor.tasks, len(places)))
        stage_runner(executor, work)([AuditScan(str(work), config, places)], tasks, "scan")
        check_complete(work, "scan", tasks, "audit")
        for rank in range(tasks):
            with (work / "states" / f"{rank:05d}.pkl").open("rb") as f:
                state = pickle.load(f)  # written by this command's own tasks, in its own work folder
            ledger.frames.extend(state["ledger"])
            for detector, gathered in zip(detectors, state["detectors"], strict=True):
                detector.absorb(gathered)
    finally:
        shutil.rmtree(work, ignore_errors=True)
