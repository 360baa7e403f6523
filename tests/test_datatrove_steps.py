"""The dedup job as datatrove pipeline steps on the local executor (2 tasks, 2 workers) equals `thresher dedup`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from thresher.convert import convert
from thresher.curation.datatrove_steps import DedupClusters, DedupFilter, DedupSignatures
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


def test_datatrove_local_executor_matches_single_process(shared_data: Path, tmp_path: Path) -> None:
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
    want = dict(zip(removed["id"].to_list(), removed["duplicate_of"].to_list(), strict=True))
    assert len(want) >= 30  # the job has work to do

    work, logs = tmp_path / "work", tmp_path / "logs"
    reader = JsonlReader(str(docs))
    LocalPipelineExecutor([reader, DedupSignatures(str(work), config)], tasks=2, workers=2, logging_dir=str(logs / "1")).run()
    LocalPipelineExecutor([DedupClusters(str(work), config)], tasks=1, logging_dir=str(logs / "2")).run()
    LocalPipelineExecutor(
        [
            JsonlReader(str(docs)),
            DedupFilter(str(work), exclusion_writer=JsonlWriter(str(tmp_path / "removed"), compression=None)),
            JsonlWriter(str(tmp_path / "kept"), compression=None),
        ],
        tasks=2,
        workers=2,
        logging_dir=str(logs / "3"),
    ).run()
    got = {}
    for path in (tmp_path / "removed").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            got[doc["id"]] = doc["metadata"]["duplicate_of"]
    kept = [json.loads(line)["id"] for p in (tmp_path / "kept").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert got == want
    assert sorted(kept) == sorted(pl.read_parquet(single / "kept.parquet")["id"].to_list())
    assert len(kept) + len(got) == len(first) + len(second)
