"""The command line, run as a real subprocess, with a tokenizer trained here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_rows, thresher


def test_convert_then_inspect_with_tokens(shared_data: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    out = tmp_path / "sft.parquet"
    inputs = [str(shared_data / "sft/lima.json"), str(shared_data / "sft/fastchat_dummy_conversation.json")]
    done = thresher("convert", *inputs, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "1529" in done.stdout  # total rows in, shown in the account
    stats_path = tmp_path / "stats.json"
    shown = thresher("inspect", str(out), "--tokenizer", str(tokenizer_dir / "tokenizer.json"), "--json", str(stats_path), "--samples", "1")
    assert shown.returncode == 0, shown.stderr
    assert "tokens per row" in shown.stdout and "chars per row" in shown.stdout
    stats = json.loads(stats_path.read_text())[str(out)]
    by_source = {row["source"]: row for row in stats["tokens"]}
    assert by_source["lima"]["rows"] == 1029 and by_source["fastchat_dummy_conversation"]["rows"] == 500
    # token counts agree with encoding the rows directly
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    rows = [r for r in read_rows(out) if r["source"] == "lima"]
    direct = [len(tok.encode("\n".join(m["content"] for m in r["messages"]), add_special_tokens=False).ids) for r in rows]
    assert by_source["lima"]["max"] == max(direct)
    assert by_source["lima"]["mean"] == pytest.approx(sum(direct) / len(direct), abs=0.05)
    chars = {row["source"]: row for row in stats["chars"]}
    assert chars["lima"]["max"] == max(sum(len(m["content"]) for m in r["messages"]) for r in rows)


def test_inspect_raw_input_with_a_transformers_tokenizer_folder(shared_data: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.json"
    path = str(shared_data / "preference/hh-rlhf_harmless-base_test.jsonl.gz")
    shown = thresher("inspect", path, "--tokenizer", str(tokenizer_dir / "hf"), "--json", str(stats_path))
    assert shown.returncode == 0, shown.stderr
    entry = json.loads(stats_path.read_text())[path]
    assert entry["kind"] == "preference"
    assert entry["counts"]["in"] == 2312 and entry["counts"]["out"] == 2303 and entry["counts"]["quarantined"] == 9
    assert "rows that would not convert" in shown.stdout


def test_formats_and_version() -> None:
    listed = thresher("formats")
    assert listed.returncode == 0
    for name in ("sharegpt", "alpaca", "pair", "question_answer", "pairwise_annotation"):
        assert name in listed.stdout
    assert thresher("version").stdout.strip() == "0.1.0"


def test_bad_option_values_are_rejected(tmp_path: Path) -> None:
    bad = thresher("convert", "nothing.jsonl", "--out", str(tmp_path / "o.parquet"))
    assert bad.returncode == 2 and "nothing.jsonl: no such file" in bad.stderr
    src = tmp_path / "a.jsonl"
    src.write_text('{"prompt": "p", "completion": "c"}\n')
    wrong_out = thresher("convert", str(src), "--out", str(tmp_path / "o.txt"))
    assert wrong_out.returncode == 2 and "must end in .parquet" in wrong_out.stderr


def test_short_help_version_and_unwrapped_errors_outside_a_terminal(tmp_path: Path) -> None:
    assert "Usage:" in thresher("-h").stdout and "Usage:" in thresher("dedup", "-h").stdout
    import thresher as package

    assert thresher("--version").stdout.strip() == f"thresher {package.__version__}"
    long = tmp_path / ("x" * 150 + ".jsonl")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "convert", str(long), "--out", str(tmp_path / "o.parquet")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and str(long) in done.stderr  # one line, path whole
