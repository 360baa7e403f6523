"""Column-wise conversion (``formats/columnar.py``) gives exactly what the row-wise converter gives.

Fresh random rows each run (the seed is in the failure message), full of what real files hold: unknown and
oddly cased roles, blank and whitespace-only text (Python's whitespace, ``\\x1c`` included), nulls that are
and are not missing fields, extra fields of every JSON type in any key order, ``\\u`` escapes, ids of
several kinds, faulty lines. The same file is converted with and without the column-wise converters: rows,
account and quarantine file must be identical, and most rows must have gone the column-wise way.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import thresher.convert as convert_module
from thresher.accounting import Account, QuarantineWriter
from thresher.convert import canonical_batches
from thresher.formats import columnar

ROLES = ["user", "assistant", "User", " gpt ", "human", "system", "Narrator", "tool"]
TEXTS = ["Hi there.", "", "   ", "\x1c\x1d", "\u3000", "line\nbreak", 'quote " and \\ slash', "é ünïcödé 😀", "\x00nul"]


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS) if rng.random() < 0.2 else f"text {rng.random():.6f} " + rng.choice(TEXTS)


EXTRAS = {"text": ["x", "", "é\n", None], "int": [7, -3, None], "bool": [True, False], "float": [1.5, 2.0], "object": [{"a": 1}, None]}


def _extra(rng: random.Random, kind: str) -> Any:
    """A value of the field's type in this file (Arrow's reader wants one type per field) or a null."""
    return rng.choice(EXTRAS[kind])


def _messages(rng: random.Random, sharegpt: bool) -> list[dict[str, Any]]:
    out = []
    for i in range(rng.randint(0, 4)):
        role = "assistant" if i % 2 else "user"
        role = rng.choice(ROLES) if rng.random() < 0.15 else role
        message: dict[str, Any] = {"from": role, "value": _text(rng)} if sharegpt else {"role": role, "content": _text(rng)}
        if rng.random() < 0.03:
            message.pop(rng.choice(list(message)))
        out.append(message)
    return out


def _row(rng: random.Random, shape: str, i: int, types: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if shape == "sharegpt":
        row["conversations"] = _messages(rng, True)
        if rng.random() < 0.4:
            row["system"] = rng.choice(["Be brief.", "", None, "  ", "\x1f"])
    elif shape == "messages":
        row["messages"] = _messages(rng, False)
    else:
        row["instruction"] = _text(rng)
        if rng.random() < 0.8:
            row["input"] = rng.choice(["", "  ", None, "some input", "\u2028"])
        row["output"] = _text(rng)
    if rng.random() < 0.8:
        row["id"] = rng.choice([f"r{i}", "", None]) if types["id"] == "text" else rng.choice([i, None])
    for name in ("source", "score", "note", "zeta"):
        if rng.random() < 0.25:
            row[name] = _extra(rng, types[name])
    items = list(row.items())
    rng.shuffle(items)
    return dict(items)


def _write(path: Path, rng: random.Random, shape: str, rows: int) -> None:
    types = {name: rng.choice(list(EXTRAS)) for name in ("source", "score", "note", "zeta")}
    types["id"] = rng.choice(["text", "int"])
    lines = []
    for i in range(rows):
        line = json.dumps(_row(rng, shape, i, types), ensure_ascii=rng.random() < 0.3)
        if rng.random() < 0.0005:
            line = rng.choice(["{not json", "[1, 2]", "", '"text"', '{"id": 1.5}'])
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def _convert(path: Path, tmp: Path, name: str, batch_rows: int) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    counts = Account(str(path))
    bad = QuarantineWriter(tmp / f"{name}.quarantine.jsonl")
    rows = []
    for _, table in canonical_batches(str(path), counts=counts, quarantine=bad, batch_rows=batch_rows):
        rows += table.to_pylist()
    bad.close()
    quarantine = tmp / f"{name}.quarantine.jsonl"
    return rows, counts.as_dict(), quarantine.read_text() if quarantine.exists() else ""


def _count_column_wise(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter (one number in a list) of the rows the column-wise converter takes from now on."""
    taken = [0]
    original = convert_module._columnar

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        found = original(*args, **kwargs)
        taken[0] += int(found[1].sum()) if found else 0
        return found

    monkeypatch.setattr(convert_module, "_columnar", counting)
    return taken


def _row_wise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "CONVERTERS", {})


@pytest.mark.parametrize("shape", ["sharegpt", "messages", "alpaca"])
def test_column_wise_equals_row_wise_on_random_hostile_rows(shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    path = tmp_path / f"{shape}.jsonl"
    _write(path, random.Random(seed), shape, 3000)
    taken = _count_column_wise(monkeypatch)
    fast = _convert(path, tmp_path, "fast", batch_rows=700)
    _row_wise(monkeypatch)
    slow = _convert(path, tmp_path, "slow", batch_rows=700)
    assert fast[1] == slow[1], f"seed {seed}"
    assert fast[2] == slow[2], f"seed {seed}: quarantine files differ"
    for got, want in zip(fast[0], slow[0], strict=True):
        assert got == want, f"seed {seed}"
    assert taken[0] > 0, f"seed {seed}: no row went column-wise"


def test_real_rows_go_column_wise_and_a_few_bad_ones_row_by_row(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FastChat's conversations with ids, an optional field and one bad row in 50: nearly every good row is
    converted column-wise, and the bad ones get the row-wise converter's messages."""
    base = json.loads((shared_data / "sft/fastchat_dummy_conversation.json").read_text())
    path = tmp_path / "chats.jsonl"
    with open(path, "w") as f:
        for i in range(4000):
            row = {"id": f"c{i}", **{k: v for k, v in base[i % len(base)].items() if k != "id"}}
            if i % 3 == 0:
                row["model"] = "vicuna"
            if i % 50 == 7:
                row["conversations"] = [{"from": "narrator", "value": "Once."}]
            f.write(json.dumps(row) + "\n")
    taken = _count_column_wise(monkeypatch)
    fast = _convert(path, tmp_path, "fast", batch_rows=1000)
    _row_wise(monkeypatch)
    slow = _convert(path, tmp_path, "slow", batch_rows=1000)
    assert fast == slow
    assert fast[1]["quarantined_by_reason"] == {"unknown_role": 80} and taken[0] == fast[1]["out"] == 3920


def test_the_negative_control_fails_a_whitespace_rule_that_is_not_pythons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Unicode White_Space alone (no U+001C..U+001F), a message of only ``\\x1c`` would pass column-wise
    while the row-wise converter rejects it: the comparison above would see it."""
    path = tmp_path / "rows.jsonl"
    rows = [{"messages": [{"role": "user", "content": "\x1c"}, {"role": "assistant", "content": "ok"}]}] * 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(columnar, "WHITESPACE_ONLY", r"^\s*$")
    wrong = _convert(path, tmp_path, "wrong", batch_rows=10)
    monkeypatch.setattr(columnar, "WHITESPACE_ONLY", r"^[\s\x1c-\x1f]*$")
    right = _convert(path, tmp_path, "right", batch_rows=10)
    assert wrong[1]["out"] == 3 and right[1]["out"] == 0 and right[1]["quarantined"] == 3


def test_the_whitespace_rule_is_pythons_on_every_code_point() -> None:
    import polars as pl

    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    blank = pl.Series(chars).str.contains(columnar.WHITESPACE_ONLY).to_list()
    assert [c for c, b in zip(chars, blank, strict=True) if b != c.isspace()] == []


def test_metadata_keys_are_sorted_whatever_order_a_row_has(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    base = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text(json.dumps({"b": 1, **base, "a": "x"}) + "\n" + json.dumps({"a": "x", **base, "b": 1}) + "\n")
    rows, _, _ = _convert(path, tmp_path, "out", batch_rows=10)
    assert [r["metadata"] for r in rows] == ['{"a":"x","b":1}'] * 2


def test_parquet_inputs_go_column_wise_too(tmp_path: Path) -> None:
    import pyarrow as pa

    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    table = pa.table({"messages": [messages, messages, [{"role": "user", "content": "only"}]], "tag": ["a", None, "c"], "id": [1, None, 3]})
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    rows, counts, quarantine = _convert(path, tmp_path, "out", batch_rows=10)
    assert counts["out"] == 2 and counts["quarantined_by_reason"] == {"missing_turn": 1}
    assert [(r["id"], r["metadata"]) for r in rows] == [("1", '{"tag":"a"}'), ("in/1", '{"tag":null}')]
    assert "missing_turn" in quarantine


@pytest.mark.parametrize("where", ["first", "middle", "last", "spaces", "crlf"])
def test_blank_lines_keep_rows_and_lines_exact(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block with a blank or whitespace-only line anywhere goes row by row (rows skip it, line numbers do not)."""
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    lines = [good] * 6
    blank = {"spaces": " \t ", "crlf": "\r"}.get(where, "")
    lines.insert({"first": 0, "last": 6}.get(where, 3), blank)
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + ("" if where == "last" else "\n"))
    fast = _convert(path, tmp_path, "fast", batch_rows=4)
    _row_wise(monkeypatch)
    slow = _convert(path, tmp_path, "slow", batch_rows=4)
    assert fast == slow and fast[1]["out"] == 6
    assert [r["provenance"]["line"] for r in fast[0]] == [i + 1 for i, line in enumerate(lines) if line.strip()]


def test_one_or_two_workers_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks are prepared on worker threads but finished in input order: outputs, quarantine and account are
    byte for byte the same with 1 and 2 workers (fresh random hostile rows, small blocks, so many in flight)."""
    from thresher.convert import convert

    seed = int.from_bytes(os.urandom(4), "little")
    path = tmp_path / "rows.jsonl"
    _write(path, random.Random(seed), "sharegpt", 3000)
    monkeypatch.setattr(convert_module, "BATCH_ROWS", 150)  # 20 blocks
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}.parquet"
        report = convert([str(path)], out, on_error="quarantine", quarantine=tmp_path / f"q{workers}.jsonl", workers=workers)
        outputs.append((out.read_bytes(), (tmp_path / f"q{workers}.jsonl").read_bytes(), report.total.as_dict()))
    assert outputs[0] == outputs[1], f"seed {seed}"


def test_ordered_map_keeps_input_order_and_raises_in_place() -> None:
    import time

    from thresher.parallel import ordered_map

    def slow(i: int) -> int:
        time.sleep(random.random() * 0.01)
        if i == 7:
            raise ValueError("seven")
        return i * i

    got = []
    with pytest.raises(ValueError, match="seven"):
        for value in ordered_map(slow, range(20), workers=4):
            got.append(value)
    assert got == [i * i for i in range(7)]
    assert list(ordered_map(lambda i: -i, range(50), workers=3)) == [-i for i in range(50)]


def test_a_column_wise_failure_leaves_the_block_to_the_row_wise_converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Polars or Arrow error the column-wise checks did not foresee is no traceback: the block is converted
    row by row, exactly as without the column-wise path."""
    import polars as pl

    path = tmp_path / "rows.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise pl.exceptions.ComputeError("a type nobody foresaw")

    monkeypatch.setattr(columnar, "CONVERTERS", {"messages": broken})
    failing = _convert(path, tmp_path, "failing", batch_rows=10)
    _row_wise(monkeypatch)
    assert failing == _convert(path, tmp_path, "slow", batch_rows=10) and failing[1]["out"] == 5
