"""Converting every real SFT and preference file: exact counts, nothing lost, JSONL round trip."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import read_quarantine, read_rows
from thresher.convert import convert
from thresher.records import Kind

# file -> (rows in the file per SOURCES.md, kind, quarantined by category)
EXPECTED: dict[str, tuple[int, Kind, dict[str, int]]] = {
    "sft/alpaca_en_demo.json": (999, Kind.SFT, {}),
    "sft/alpaca_seed_tasks.jsonl": (175, Kind.SFT, {}),
    "sft/code_alpaca_2k.json": (2017, Kind.SFT, {"empty_content": 2}),  # two rows have an empty output
    "sft/fastchat_dummy_conversation.json": (500, Kind.SFT, {}),
    "sft/lima.json": (1029, Kind.SFT, {}),
    "sft/new_codealpaca.json": (4535, Kind.SFT, {}),
    "sft/self_instruct_user_oriented_instructions.jsonl": (252, Kind.SFT, {}),
    "preference/alpaca_eval_annotations_claude-2.1_vs_gpt4_1106_preview.json.gz": (805, Kind.PREFERENCE, {"tie": 2}),
    "preference/alpaca_eval_annotations_gpt35_turbo_instruct_vs_gpt4_1106_preview.json.gz": (804, Kind.PREFERENCE, {"tie": 3}),
    # HH-RLHF has turns with empty replies and a few pairs whose transcripts diverge early.
    "preference/hh-rlhf_harmless-base_test.jsonl.gz": (2312, Kind.PREFERENCE, {"empty_content": 4, "bad_transcript": 5}),
    "preference/llamafactory_dpo_en_demo.json": (300, Kind.PREFERENCE, {}),
    # KTO rows are single responses with a label, not pairs: they become SFT rows, label kept in metadata.
    "preference/llamafactory_kto_en_demo.json": (300, Kind.SFT, {}),
}


def test_every_shared_file_is_covered(shared_data: Path) -> None:
    on_disk = {str(p.relative_to(shared_data)) for d in ("sft", "preference") for p in (shared_data / d).iterdir()}
    assert on_disk == set(EXPECTED)


def _source_rows(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _leaf_strings(value: Any, key: str | None = None) -> list[str]:
    if isinstance(value, str):
        return [] if key in ("from", "role") or not value.strip() else [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _leaf_strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _leaf_strings(v, key)]
    return []


def _record_text(record: dict[str, Any]) -> str:
    parts = [record["id"], record["metadata"] or ""]
    for name in ("messages", "prompt", "chosen", "rejected"):
        parts += [m["content"] for m in record.get(name) or []]
    if record.get("metadata"):
        parts += _leaf_strings(json.loads(record["metadata"]))
    return "\x00".join(parts)


def _hh_transcript(turns: list[dict[str, str]]) -> str:
    return "".join(f"\n\n{'Human' if t['role'] == 'user' else 'Assistant'}: {t['content']}" for t in turns)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_convert_real_file(name: str, shared_data: Path, tmp_path: Path) -> None:
    rows_in, kind, quarantined = EXPECTED[name]
    src = shared_data / name
    out = tmp_path / "out.jsonl"
    report = convert([str(src)], out, on_error="quarantine")

    # exact accounting: in = out + quarantined, by reason
    assert report.kind is kind
    assert report.total.rows_in == rows_in
    assert dict(report.total.quarantined) == quarantined
    assert report.total.rows_out == rows_in - sum(quarantined.values())
    assert report.total.balanced
    records = read_rows(out)
    assert len(records) == report.total.rows_out
    bad = read_quarantine(report.quarantine) if quarantined else []
    assert len(bad) == sum(quarantined.values())
    assert all(entry["reason"] and entry["file"] == str(src) and entry["raw"] for entry in bad)
    # every input row is either out or quarantined, exactly once
    assert sorted([r["provenance"]["row"] for r in records] + [e["row"] for e in bad]) == list(range(rows_in))

    # content preserved: every non-empty string of the source row survives in the record
    source = _source_rows(src)
    assert len(source) == rows_in
    for record in records:
        original = source[record["provenance"]["row"]]
        if "hh-rlhf" in name:
            assert _hh_transcript(record["prompt"] + record["chosen"]).strip() == original["chosen"].strip()
            assert _hh_transcript(record["prompt"] + record["rejected"]).strip() == original["rejected"].strip()
            continue
        text = _record_text(record)
        missing = [s for s in _leaf_strings(original) if s not in text]
        assert not missing, f"{name} row {record['provenance']['row']} lost {missing[:1]}"

    # JSONL round trip: reading our JSONL back gives identical rows, and equals a direct Parquet conversion
    again = tmp_path / "again.parquet"
    convert([str(out)], again)
    assert read_rows(again) == records
    direct = tmp_path / "direct.parquet"
    convert([str(src)], direct, on_error="quarantine", quarantine=tmp_path / "q2.jsonl")
    assert read_rows(direct) == records


def test_ids_are_kept_or_derived_stably(shared_data: Path, tmp_path: Path) -> None:
    convert([str(shared_data / "sft/fastchat_dummy_conversation.json")], tmp_path / "a.parquet")
    assert [r["id"] for r in read_rows(tmp_path / "a.parquet")][:2] == ["identity_0", "identity_1"]
    for run in ("b", "c"):
        convert([str(shared_data / "sft/lima.json")], tmp_path / f"{run}.parquet")
    ids_b = [r["id"] for r in read_rows(tmp_path / "b.parquet")]
    assert ids_b == [r["id"] for r in read_rows(tmp_path / "c.parquet")]
    assert len(set(ids_b)) == len(ids_b) and ids_b[5] == "lima/5"


def test_lima_history_becomes_multi_turn(shared_data: Path, tmp_path: Path) -> None:
    convert([str(shared_data / "sft/lima.json")], tmp_path / "lima.parquet")
    records = read_rows(tmp_path / "lima.parquet")
    multi = [r for r in records if len(r["messages"]) > 2]
    assert len(multi) == 29  # the rows with a non-empty history
    for r in multi:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)


def test_alpaca_eval_preference_picks_the_preferred_output(shared_data: Path, tmp_path: Path) -> None:
    name = "preference/alpaca_eval_annotations_claude-2.1_vs_gpt4_1106_preview.json.gz"
    convert([str(shared_data / name)], tmp_path / "p.parquet", on_error="quarantine")
    source = _source_rows(shared_data / name)
    for record in read_rows(tmp_path / "p.parquet"):
        original = source[record["provenance"]["row"]]
        better, worse = ("output_1", "output_2") if original["preference"] < 1.5 else ("output_2", "output_1")
        assert record["chosen"][0]["content"] == original[better]
        assert record["rejected"][0]["content"] == original[worse]
        assert json.loads(record["metadata"])["preference"] == original["preference"]


def test_gsm8k_and_math500_become_rlvr_with_final_answers(shared_data: Path, tmp_path: Path) -> None:
    convert([str(shared_data / "gsm8k/test.jsonl")], tmp_path / "g.parquet", kind=Kind.RLVR)
    gsm = read_rows(tmp_path / "g.parquet")
    source = _source_rows(shared_data / "gsm8k/test.jsonl")
    assert len(gsm) == 1319
    for record, original in zip(gsm, source, strict=True):
        assert record["ground_truth"] == re.search(r"####\s*(.+)$", original["answer"]).group(1).strip()
        assert record["messages"] == [{"role": "user", "content": original["question"]}]
    convert([str(shared_data / "math/math500_test.jsonl")], tmp_path / "m.parquet", kind=Kind.RLVR)
    math = read_rows(tmp_path / "m.parquet")
    source = _source_rows(shared_data / "math/math500_test.jsonl")
    assert [r["ground_truth"] for r in math] == [s["answer"] for s in source]
    assert {r["verifier"] for r in math} == {"math"}
    assert [r["id"] for r in math][:1] == ["math500_test/0"]
    assert json.loads(math[0]["metadata"])["unique_id"] == source[0]["unique_id"]
