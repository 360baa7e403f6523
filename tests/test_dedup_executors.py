"""`thresher dedup --executor local|ray`: the stages on datatrove's local executor and on a real local Ray cluster
give the same output bytes as the in-process command (kept, removed, quarantine; the summary but for its timing),
with a raw JSONL input (spooled, one bad row quarantined) and a canonical Parquet input, and source priority."""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

from tests.helpers import thresher
from thresher.convert import convert


@pytest.fixture(scope="module")
def inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    rng = random.Random(5)
    tmp = tmp_path_factory.mktemp("executors")
    lima = [r for r in json.loads((shared_data / "sft/lima.json").read_text()) if not r.get("history")][:120]
    first = [{"id": f"a{i}", "instruction": r["instruction"], "output": r["output"]} for i, r in enumerate(lima[:80])]
    second = []
    for i, r in enumerate(first[:60]):
        words = r["output"].split()
        if i % 3 == 0:
            words[rng.randrange(len(words))] = "changed"  # near copy
        elif i % 3 == 1:
            words = [w.upper() for w in words]  # exact copy after normalization
        else:
            words = lima[80 + i % 40]["output"].split()  # unrelated
        second.append({"id": f"b{i}", "instruction": r["instruction"], "output": " ".join(words)})
    raw = tmp / "second.jsonl"
    raw.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in second) + b'{"id": "bad", "instruction": 7}\n')
    (tmp / "first.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in first))
    convert([str(tmp / "first.jsonl")], tmp / "first.parquet", kind="sft")
    return [str(tmp / "first.parquet"), str(raw)]


def _run(inputs: list[str], out: Path, *extra: str) -> dict[str, bytes]:
    done = thresher(
        "dedup", *inputs, "--out", str(out), "--keep", "source-priority", "--threshold", "0.7", "--on-error", "quarantine", *extra
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")}
    summary = json.loads(files.pop("summary.json"))
    summary.pop("seconds", None)
    ran_on = summary.pop("executor", None)
    if "--executor" in extra:  # the stages really ran there
        assert ran_on is not None and ran_on["kind"] == extra[extra.index("--executor") + 1] and ran_on["tasks"] == 2, ran_on
    files["summary"] = orjson.dumps(summary, option=orjson.OPT_SORT_KEYS)
    assert not [p for p in out.iterdir() if p.name.startswith((".work-", ".spool-"))], "work files left behind"
    return files


@pytest.fixture(scope="module")
def plain(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    files = _run(inputs, tmp_path_factory.mktemp("plain") / "out")
    assert b"bad" in files["quarantine.jsonl"]
    return files


def _same(got: dict[str, bytes], want: dict[str, bytes]) -> None:
    assert set(got) == set(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs"


def test_local_executor_gives_the_same_bytes(inputs: list[str], plain: dict[str, bytes], tmp_path: Path) -> None:
    _same(_run(inputs, tmp_path / "out", "--executor", "local", "--tasks", "2"), plain)
    # negative control: another keep policy is not the same output
    other = thresher("dedup", *inputs, "--out", str(tmp_path / "o2"), "--keep", "longest", "--threshold", "0.7", "--on-error", "quarantine")
    assert (tmp_path / "o2" / "removed.parquet").read_bytes() != plain["removed.parquet"], other.stderr


@pytest.mark.slow
def test_a_local_ray_cluster_gives_the_same_bytes(inputs: list[str], plain: dict[str, bytes], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray is the [ray] extra (CI installs it)")
    _same(_run(inputs, tmp_path / "out", "--executor", "ray", "--tasks", "2"), plain)


def test_executor_refusals_are_one_line(inputs: list[str], tmp_path: Path) -> None:
    for extra, message in (
        (["--executor", "dask"], "--executor must be local or ray"),
        (["--executor", "local", "--method", "embedding"], "--executor runs exact and minhash dedup"),
        (["--executor", "local", "--tasks", "0"], "--tasks must be at least 1"),
    ):
        done = thresher("dedup", *inputs, "--out", str(tmp_path / "x"), *extra)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
