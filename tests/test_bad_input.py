"""Bad input: each kind of fault is reported at its line and quarantined with a reason; nothing else is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_quarantine, read_rows
from thresher.convert import convert
from thresher.errors import InputError, RowError

# (category, the bad line) injected into a real ShareGPT file; each must be caught at its own line.
INJECTED: list[tuple[str, bytes]] = [
    ("malformed_json", b'{"id": "bad-json", "conversations": [{"from": "human", "value": "hi"}'),
    ("wrong_type", b'{"id": "bad-type", "conversations": "hello there"}'),
    ("unknown_role", b'{"id": "bad-role", "conversations": [{"from": "narrator", "value": "Once"}, {"from": "gpt", "value": "ok"}]}'),
    ("empty_content", b'{"id": "bad-empty", "conversations": [{"from": "human", "value": "   "}, {"from": "gpt", "value": "ok"}]}'),
    ("invalid_utf8", b'{"id": "bad-utf8", "conversations": [{"from": "human", "value": "caf\xe9"}, {"from": "gpt", "value": "ok"}]}'),
    ("missing_field", b'{"id": "bad-missing", "dialogue": []}'),
    ("wrong_type", b"[1, 2, 3]"),
    ("missing_turn", b'{"id": "bad-noreply", "conversations": [{"from": "human", "value": "anyone?"}]}'),
    ("wrong_type", b'{"id": "bad-content-type", "conversations": [{"from": "human", "value": 42}, {"from": "gpt", "value": "ok"}]}'),
]


@pytest.fixture()
def dirty_file(shared_data: Path, tmp_path: Path) -> tuple[Path, list[dict], dict[int, str]]:
    """The 500 real FastChat conversations as JSONL, with the bad lines spread through them."""
    good = json.loads((shared_data / "sft/fastchat_dummy_conversation.json").read_text())
    lines: list[bytes] = []
    bad_lines: dict[int, str] = {}
    every = len(good) // len(INJECTED)
    for i, row in enumerate(good):
        lines.append(json.dumps(row).encode())
        if i % every == every // 2 and len(bad_lines) < len(INJECTED):
            category, bad = INJECTED[len(bad_lines)]
            lines.append(bad)
            bad_lines[len(lines)] = category  # 1-based line number of the bad line
    path = tmp_path / "dirty.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, good, bad_lines


def test_quarantine_reports_each_bad_line_and_keeps_the_rest(dirty_file, tmp_path: Path) -> None:
    path, good, bad_lines = dirty_file
    report = convert([str(path)], tmp_path / "out.parquet", on_error="quarantine")
    assert len(bad_lines) == len(INJECTED)
    assert report.total.rows_in == len(good) + len(INJECTED)
    assert report.total.rows_out == len(good)
    assert report.total.quarantined_total == len(INJECTED)
    assert report.total.balanced
    quarantined = read_quarantine(report.quarantine)
    assert {e["line"]: e["category"] for e in quarantined} == bad_lines
    for entry in quarantined:
        assert entry["file"] == str(path) and entry["reason"] and entry["raw"] is not None
    # the good rows all arrive, in order, with their own ids
    assert [r["id"] for r in read_rows(tmp_path / "out.parquet")] == [g["id"] for g in good]
    # each message is readable by a person and points at the exact place
    by_line = {e["line"]: e["reason"] for e in quarantined}
    role_line = next(n for n, c in bad_lines.items() if c == "unknown_role")
    assert "unknown role 'narrator'" in by_line[role_line] and "conversations[0]" in by_line[role_line]
    assert any(f"{path}:{line}:" in msg for line in bad_lines for msg in report.first_errors)


def test_fail_mode_stops_at_the_first_bad_line_and_writes_nothing(dirty_file, tmp_path: Path) -> None:
    path, _, bad_lines = dirty_file
    out = tmp_path / "out.parquet"
    with pytest.raises(RowError) as err:
        convert([str(path)], out)
    first = min(bad_lines)
    assert err.value.location is not None and err.value.location.line == first
    assert str(err.value).startswith(f"{path}:{first}: malformed JSON")
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))


def test_cli_exit_codes_and_messages(dirty_file, tmp_path: Path) -> None:
    path, good, bad_lines = dirty_file
    cli = [sys.executable, "-m", "thresher.cli", "convert", str(path), "--out", str(tmp_path / "o.jsonl")]
    failed = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert f"{path}:{min(bad_lines)}: malformed JSON" in failed.stderr
    ok = subprocess.run([*cli, "--on-error", "quarantine"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    for line in bad_lines:
        assert f"{path}:{line}:" in ok.stderr.replace("\n", "")
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["total"]["in"] == len(good) + len(bad_lines)
    assert summary["total"]["out"] == len(good)
    assert summary["total"]["quarantined"] == len(bad_lines)
    assert len(read_quarantine(tmp_path / "o.quarantine.jsonl")) == len(bad_lines)


def test_csv_rows_with_wrong_field_count_and_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_bytes(
        b'question,answer\nWhat is 2+2?,4\n"A quoted, multi-line\nquestion?",yes\ntoo,many,fields\ncaf\xe9?,no\nCapital of France?,Paris\n'
    )
    report = convert([str(path)], tmp_path / "o.jsonl", on_error="quarantine")
    assert (report.total.rows_in, report.total.rows_out) == (5, 3)
    bad = read_quarantine(report.quarantine)
    assert [(e["line"], e["category"]) for e in bad] == [(5, "malformed_csv"), (6, "invalid_utf8")]
    rows = read_rows(tmp_path / "o.jsonl")
    assert rows[1]["messages"][0]["content"] == "A quoted, multi-line\nquestion?"
    assert [r["provenance"]["line"] for r in rows] == [2, 3, 7]


def test_malformed_json_array_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "output": }\n]\n')
    with pytest.raises(InputError, match=r"broken.json:3: malformed JSON \(column \d+\)"):
        convert([str(path)], tmp_path / "o.jsonl", on_error="quarantine")


def test_unrecognised_rows_and_kind_mismatch_are_explained(shared_data: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"foo": 1, "bar": 2}\n')
    with pytest.raises(InputError, match=r"cannot tell the format of rows with fields \['bar', 'foo'\]"):
        convert([str(odd)], tmp_path / "o.jsonl")
    with pytest.raises(InputError, match="convert to preference, not sft"):
        convert([str(shared_data / "preference/llamafactory_dpo_en_demo.json")], tmp_path / "o.jsonl", kind="sft")
    with pytest.raises(InputError, match="no such file"):
        convert([str(tmp_path / "missing.jsonl")], tmp_path / "o.jsonl")
