"""The dedup job as datatrove pipeline steps (signatures, band-sharded buckets, clusters over pairs, filter) equals
`thresher dedup`: on datatrove's local executor (2 tasks, 2 workers) (on Ray through the command line: tests/test_dedup_executors.py)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from thresher.convert import convert
from thresher.curation.datatrove_steps import DedupBuckets, DedupClusters, DedupFilter, DedupSignatures
from thresher.curation.dedup import DedupConfig, dedup


def _rows(shared_data: Path) -> tuple[list[dict], list[dict]]:
    rng = random.Random(7)
    lima = [r for r in json.loads((shared_data / "sft/lima.json").read_text()) if not r.get("history")][:150]
    first = [{"id": f"a{i}", "instruction": r["instruction"], "output": r["output"]} for i, r in enumerate(lima[:100])]
    second = []
    for i, r in enumerate(first[:60]):
        words = r["output"].split()
        if i % 3 == 0:  # near copy
            words[rng.randrange(len(words))] = "changed"
        elif i % 3 == 1:  # exact copy after normalization
            words = [w.upper() for w in words]
        else:  # unrelated
            words = lima[100 + i % 50]["output"].split()
        second.append(
            {"id": f"b{i}", "instruction": r["instruction"] if i % 3 != 2 else lima[100 + i % 50]["instruction"], "output": " ".join(words)}
        )
    return first, second


Executor = Callable[[list, int, Path], None]  # (pipeline, tasks, logging dir) -> runs it


def _local(pipeline: list, tasks: int, logs: Path) -> None:
    LocalPipelineExecutor(pipeline, tasks=tasks, workers=2, logging_dir=str(logs)).run()


def _dedup_on(executor: Executor, shared_data: Path, tmp_path: Path) -> None:
    first, second = _rows(shared_data)
    docs, canonical = tmp_path / "docs", []
    docs.mkdir()
    for name, rows in (("0-first", first), ("1-second", second)):
        (docs / f"{name}.jsonl").write_text(
            "".join(json.dumps({"id": r["id"], "text": r["instruction"] + "\n" + r["output"], "source": name}) + "\n" for r in rows)
        )
        raw = tmp_path / f"{name}.jsonl"
        raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
        canonical.append(str(tmp_path / f"{name}.parquet"))
        convert([str(raw)], canonical[-1], kind="sft")
    config = DedupConfig(method="minhash", threshold=0.7)

    single = tmp_path / "single"
    dedup(canonical, single, config)
    removed = pl.read_parquet(single / "removed.parquet")
    want = {i: (d, round(s, 9)) for i, d, s in zip(removed["id"], removed["duplicate_of"], removed["score"], strict=True)}
    assert len(want) >= 30  # the job has work to do

    work, logs = tmp_path / "work", tmp_path / "logs"
    executor([JsonlReader(str(docs)), DedupSignatures(str(work), config, band_shards=3)], 2, logs / "1")
    assert len(list((work / "bands").iterdir())) == 3  # the bands really are sharded: 3 shards over 2 bucket tasks
    executor([DedupBuckets(str(work), config)], 2, logs / "2")
    executor([DedupClusters(str(work), config)], 1, logs / "3")
    executor(
        [
            JsonlReader(str(docs)),
            DedupFilter(str(work), exclusion_writer=JsonlWriter(str(tmp_path / "removed"), compression=None)),
            JsonlWriter(str(tmp_path / "kept"), compression=None),
        ],
        2,
        logs / "4",
    )
    got = {}
    for path in (tmp_path / "removed").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            got[doc["id"]] = (doc["metadata"]["duplicate_of"], round(doc["metadata"]["dedup_score"], 9))
    kept = [json.loads(line)["id"] for p in (tmp_path / "kept").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert got == want  # the same removals, keepers and scores
    assert sorted(kept) == sorted(pl.read_parquet(single / "kept.parquet")["id"].to_list())
    assert len(kept) + len(got) == len(first) + len(second)


def test_datatrove_local_executor_matches_single_process(shared_data: Path, tmp_path: Path) -> None:
    _dedup_on(_local, shared_data, tmp_path)
