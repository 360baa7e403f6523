"""Readers and shapes: the same rows in every container give the same canonical content."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import read_rows
from thresher.convert import convert, iter_canonical
from thresher.formats.shapes import last_boxed
from thresher.io.sources import read_raw, resolve_input
from thresher.records import Kind, content_hash, schema_for


@pytest.fixture(scope="module")
def alpaca_rows(shared_data: Path) -> list[dict]:
    return json.loads((shared_data / "sft/alpaca_en_demo.json").read_text())[:60]


def _write_all_containers(rows: list[dict], folder: Path) -> dict[str, Path]:
    paths = {
        name: folder / f"rows{suffix}"
        for name, suffix in [("jsonl", ".jsonl"), ("jsonl_gz", ".jsonl.gz"), ("json", ".json"), ("parquet", ".parquet"), ("csv", ".csv")]
    }
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    paths["jsonl"].write_text(lines)
    paths["jsonl_gz"].write_bytes(gzip.compress(lines.encode()))
    paths["json"].write_text(json.dumps(rows, indent=2))
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"])
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return paths


def test_every_container_gives_the_same_content(alpaca_rows: list[dict], tmp_path: Path) -> None:
    import datasets

    paths = _write_all_containers(alpaca_rows, tmp_path)
    datasets.Dataset.from_list(alpaca_rows).save_to_disk(str(tmp_path / "saved"))
    paths["hf_disk"] = tmp_path / "saved"
    expected = None
    for name, path in paths.items():
        assert resolve_input(str(path)).format == ("jsonl" if name.startswith("jsonl") else name), name
        out = tmp_path / f"{name}.parquet"
        report = convert([str(path)], out, source="alpaca")
        assert report.total.rows_out == len(alpaca_rows), name
        content = [(r["id"], r["messages"], r["provenance"]["content_hash"]) for r in read_rows(out)]
        expected = expected or content
        assert content == expected, name
    # the content itself is the Alpaca text
    first = expected[0][1]
    assert first[-1] == {"role": "assistant", "content": alpaca_rows[0]["output"]}
    assert first[0]["content"].startswith(alpaca_rows[0]["instruction"])


def test_json_sniffing_and_wrapped_arrays(tmp_path: Path) -> None:
    jsonl_named_json = tmp_path / "a.json"
    jsonl_named_json.write_text('{"prompt": "p1", "completion": "c1"}\n{"prompt": "p2", "completion": "c2"}\n')
    assert resolve_input(str(jsonl_named_json)).format == "jsonl"
    wrapped = tmp_path / "b.json"
    wrapped.write_text(json.dumps({"examples": [{"input": "q", "target": "t"}], "canary": "x"}))
    rows = list(read_raw(resolve_input(str(wrapped))))
    assert rows[0].data == {"input": "q", "target": "t"}


def test_streaming_reads_lazily(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}) + "\n" for i in range(10)) + "{broken\n")
    stream = iter_canonical(str(path))
    first = next(stream)  # available before the broken last line is read
    assert first.record is not None and first.record["messages"][0]["content"] == "p0"


def test_shapes_convert_to_the_expected_messages(tmp_path: Path) -> None:
    cases = {
        "openai.jsonl": (
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": [{"type": "text", "text": "u"}]},
                    {"role": "assistant", "content": "a"},
                ]
            },
            [("system", "s"), ("user", "u"), ("assistant", "a")],
        ),
        "pc.jsonl": ({"prompt": "Say hi", "completion": "hi"}, [("user", "Say hi"), ("assistant", "hi")]),
        "qa.jsonl": ({"question": "2+2?", "answer": 4}, [("user", "2+2?"), ("assistant", "4")]),
        "sharegpt.jsonl": (
            {"system": "be brief", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
            [("system", "be brief"), ("user", "q"), ("assistant", "a")],
        ),
    }
    for name, (row, expected) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(row) + "\n")
        (outcome,) = list(iter_canonical(str(path)))
        assert outcome.error is None, (name, outcome.error)
        assert [(m["role"], m["content"]) for m in outcome.record["messages"]] == expected, name


def test_pairs_that_repeat_the_prompt_lose_it(tmp_path: Path) -> None:
    row = {
        "prompt": "Tell a joke",
        "chosen": [{"role": "user", "content": "Tell a joke"}, {"role": "assistant", "content": "A good one"}],
        "rejected": [{"role": "user", "content": "Tell a joke"}, {"role": "assistant", "content": "No."}],
        "score_chosen": 8.0,
    }
    path = tmp_path / "uf.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (outcome,) = list(iter_canonical(str(path)))
    record = outcome.record
    assert record["prompt"] == [{"role": "user", "content": "Tell a joke"}]
    assert record["chosen"] == [{"role": "assistant", "content": "A good one"}]
    assert record["rejected"] == [{"role": "assistant", "content": "No."}]
    assert json.loads(record["metadata"]) == {"score_chosen": 8.0}


def test_rlvr_rows_from_messages_and_boxed_solutions(tmp_path: Path) -> None:
    path = tmp_path / "rlvr.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "What is 6*7?"}], "ground_truth": "42", "dataset": "gsm8k"},
        {"messages": [{"role": "user", "content": "Write 3 words"}], "ground_truth": {"num_words": 3}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o.parquet"
    report = convert([str(path)], out)
    assert report.kind is Kind.RLVR
    got = read_rows(out)
    assert [(r["ground_truth"], r["verifier"]) for r in got] == [("42", "gsm8k"), ('{"num_words":3}', "math")]
    assert last_boxed(r"so $x = \boxed{\frac{1}{2}}$ and \boxed{7}") == "7"
    assert last_boxed(r"\boxed{\frac{\sqrt{3}}{2}}") == r"\frac{\sqrt{3}}{2}"
    solution_only = tmp_path / "sol.jsonl"
    solution_only.write_text(json.dumps({"problem": "p", "solution": r"Thus \boxed{x^{2}}."}) + "\n")
    (outcome,) = list(iter_canonical(str(solution_only), kind="rlvr"))
    assert outcome.record["ground_truth"] == "x^{2}"


def test_canonical_schema_and_content_hash(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo.parquet"
    convert([str(shared_data / "preference/llamafactory_dpo_en_demo.json")], out)
    table = pq.read_table(out)
    assert table.schema.equals(schema_for(Kind.PREFERENCE), check_metadata=False)
    for record in table.to_pylist()[:20]:
        assert record["provenance"]["content_hash"] == content_hash(Kind.PREFERENCE, record)
        assert record["provenance"]["file"].endswith("llamafactory_dpo_en_demo.json")
    # a change of content changes the hash; a change of id does not
    record = table.to_pylist()[0]
    h = content_hash(Kind.PREFERENCE, record)
    assert content_hash(Kind.PREFERENCE, {**record, "id": "other"}) == h
    edited = {**record, "chosen": [{"role": "assistant", "content": record["chosen"][0]["content"] + "!"}]}
    assert content_hash(Kind.PREFERENCE, edited) != h
