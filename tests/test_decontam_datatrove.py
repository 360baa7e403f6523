"""The audit as datatrove steps (index once, filter on 2 workers) drops exactly the rows `run_audit` flags."""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from thresher.decontam.audit import AuditConfig, run_audit
from thresher.decontam.benchmarks import load_benchmarks
from thresher.decontam.datatrove_steps import DecontamFilter, DecontamIndex


def test_datatrove_steps_drop_what_the_audit_flags(shared_data: Path, tmp_path: Path) -> None:
    lima = json.loads((shared_data / "sft/lima.json").read_text())[:200]
    gsm = [json.loads(line) for line in (shared_data / "gsm8k/test.jsonl").read_text().splitlines()[:40]]
    rows = [{"id": f"l{i}", "instruction": r["instruction"], "output": r["output"]} for i, r in enumerate(lima)]
    for i, g in enumerate(gsm[:20]):  # planted: verbatim questions, and answers
        rows.insert(i * 9, {"id": f"g{i}", "instruction": "Solve: " + g["question"], "output": "Let me think."})
    docs, raw = tmp_path / "docs", tmp_path / "train.jsonl"
    docs.mkdir()
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for part in range(2):
        chunk = rows[part::2]
        (docs / f"{part}.jsonl").write_text(
            "".join(json.dumps({"id": r["id"], "text": r["instruction"] + "\n" + r["output"]}) + "\n" for r in chunk)
        )
    benches = [f"gsm8k={shared_data / 'gsm8k/test.jsonl'}", f"humaneval={shared_data / 'humaneval/HumanEval.jsonl.gz'}"]
    config = AuditConfig(methods=("ngram", "minhash"))

    result = run_audit([str(raw)], load_benchmarks(benches), config)
    want = set(result.flagged_rows()["train_id"].to_list())
    assert {f"g{i}" for i in range(20)} <= want

    work, logs, kept, removed = tmp_path / "work", tmp_path / "logs", tmp_path / "kept", tmp_path / "removed"
    LocalPipelineExecutor([DecontamIndex(str(work), benches, config=config)], tasks=1, logging_dir=str(logs / "1")).run()
    LocalPipelineExecutor(
        [JsonlReader(str(docs)), DecontamFilter(str(work), config, exclusion_writer=JsonlWriter(str(removed))), JsonlWriter(str(kept))],
        tasks=2,
        workers=2,
        logging_dir=str(logs / "2"),
    ).run()

    def ids(folder: Path) -> list[dict]:
        import gzip

        return [json.loads(line) for f in sorted(folder.glob("*.jsonl.gz")) for line in gzip.open(f, "rt")]

    dropped = ids(removed)
    assert {d["id"] for d in dropped} == want
    assert len(ids(kept)) + len(dropped) == len(rows)
    first = next(d for d in dropped if d["id"] == "g0")["metadata"]
    assert first["contaminated_bench"] == "gsm8k" and first["contaminated_id"] == "0" and first["contamination_score"] == 1.0
    assert "janet s ducks" in first["contamination_evidence"]


def test_the_filter_keeps_shared_templates_as_the_audit_does(shared_data: Path, tmp_path: Path) -> None:
    """MATH's "Determine the number of ways to arrange the letters of the word X" template, in six documents with
    other words, is shared text: kept, while a verbatim MATH item is removed. Negative control: with every class
    flagged, the template documents go too."""
    from datatrove.data import Document

    from thresher.decontam.classes import CLASSES

    bench = [f"math={shared_data / 'math/math_test.jsonl'}"]
    copy = next(
        json.loads(line)["problem"] for line in (shared_data / "math/math_test.jsonl").read_text().splitlines()[:50] if len(line) > 300
    )
    words = ["RADII", "PROOF", "ALABAMA", "TOOT", "MADAM", "TARTAR"]
    texts = [f"Determine the number of ways to arrange the letters of the word {w}." for w in words] + [copy]

    def kept(config: AuditConfig) -> list[bool]:
        work = tmp_path / f"work{len(config.flag)}"
        LocalPipelineExecutor(
            [DecontamIndex(str(work), bench, config=config)], tasks=1, logging_dir=str(tmp_path / "logs" / str(len(config.flag)))
        ).run()
        step = DecontamFilter(str(work), config)
        return [r is True for r in step.filter_batch([Document(text=t, id=str(i)) for i, t in enumerate(texts)])]

    assert kept(AuditConfig()) == [True] * 6 + [False]
    assert kept(AuditConfig(flag=CLASSES)) == [False] * 7
