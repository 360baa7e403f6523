"""`thresher audit|decontaminate --executor local|ray`: the scan as datatrove tasks gives the same output bytes
as the in-process audit (matches, clean/removed split, quarantine, report; the summary but for its timing and
the executor it names), on small batches spread over two tasks. The training file is built so that one task's
partial view differs from the whole: a GSM8K question copied into more rows than the training-side cap allows
(only the merged counts drop it), exact and number-changed copies, a bad row, and a calibration sample."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import polars as pl
import pytest

from tests.helpers import thresher
from thresher.decontam.audit import AuditConfig
from thresher.decontam.ngram import NgramConfig
from thresher.decontam.outputs import audit_to_folder
from thresher.executors import Executor

CAP = 4  # --max-train-df: the repeated question is in 6 rows, each task sees 3


@pytest.fixture(scope="module")
def train(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    lima = [r for r in json.loads((shared_data / "sft/lima.json").read_text()) if not r.get("history")][:90]
    gsm = [orjson.loads(line) for line in (shared_data / "gsm8k/test.jsonl").read_bytes().splitlines()[:20]]
    rows = [{"instruction": r["instruction"], "output": r["output"]} for r in lima]
    for i, g in enumerate(gsm[:8]):  # exact copies, spread over the batches
        rows.insert(7 * i + 3, {"instruction": g["question"], "output": g["answer"]})
    for i, g in enumerate(gsm[8:14]):  # numbers changed
        rows.insert(11 * i + 5, {"instruction": re.sub(r"\d+", lambda m: str(int(m.group()) + 3), g["question"]), "output": "."})
    for i in range(6):  # one question in more rows than the cap: boilerplate to the whole audit, not to one task
        rows.insert(17 * i + 2, {"instruction": "Practice: " + gsm[15]["question"], "output": lima[i]["output"]})
    tmp = tmp_path_factory.mktemp("decontam-executors")
    first, second = tmp / "first.jsonl", tmp / "second.jsonl"
    first.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows[:60]))
    second.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows[60:]) + b'{"instruction": 7}\n')
    return str(first), str(second)


def _audit(train: tuple[str, str], shared_data: Path, out: Path, executor: Executor | None) -> dict[str, bytes]:
    config = AuditConfig(methods=("ngram", "minhash"), ngram=NgramConfig(max_train_df=CAP), batch_rows=16, calibrate=12)
    bench = [f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"]
    audit_to_folder(list(train), bench, out, None, config, on_error="quarantine", executor=executor)
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "work files left behind"
    report = orjson.loads(files.pop("summary.json"))
    report.pop("seconds")
    ran_on = report["notes"].pop("executor", None)
    assert (ran_on is None) == (executor is None) and (executor is None or ran_on["kind"] == executor.kind), ran_on
    files["summary"] = orjson.dumps(report, option=orjson.OPT_SORT_KEYS)
    files["report.html"] = re.sub(rb"\d+(\.\d+)? s\b", b"", files["report.html"])  # the audit's duration
    return files


@pytest.fixture(scope="module")
def plain(train: tuple[str, str], shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    files = _audit(train, shared_data, tmp_path_factory.mktemp("plain") / "out", None)
    summary = orjson.loads(files["summary"])
    assert summary["decontamination"]["removed"] >= 8 and summary["decontamination"]["quarantined"] == 1
    assert summary["notes"]["calibration"]["planted"] == 12
    return files


def _same(got: dict[str, bytes], want: dict[str, bytes]) -> None:
    assert set(got) == set(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs"


def test_local_executor_gives_the_same_bytes(train: tuple[str, str], shared_data: Path, plain: dict[str, bytes], tmp_path: Path) -> None:
    _same(_audit(train, shared_data, tmp_path / "out", Executor("local", 2)), plain)


def test_one_task_alone_would_keep_the_repeated_question(shared_data: Path, train: tuple[str, str], tmp_path: Path) -> None:
    """Negative control: audited on their own, the first input's rows include the repeated question under the cap
    (3 copies) — so the equal outputs above really needed the counts merged across tasks."""
    config = AuditConfig(ngram=NgramConfig(max_train_df=CAP), batch_rows=16)
    text = Path(train[0]).read_bytes().splitlines()
    repeated = [i for i, line in enumerate(text) if b"Practice: " in line]
    assert len(repeated) == 4  # rows 2, 19, 36, 53 of the first file
    half = tmp_path / "half.jsonl"
    half.write_bytes(b"\n".join(text[:40]) + b"\n")  # 3 of the 6 copies: under the cap
    report = audit_to_folder([str(half)], [f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"], tmp_path / "o", None, config, split=False)
    assert report["totals"]["rows_contaminated"] > 0
    flagged = pl.read_parquet(tmp_path / "o" / "matches.parquet").filter("flagged")
    assert set(repeated[:3]) <= set(flagged["train_row"].to_list())


@pytest.mark.slow
def test_a_local_ray_cluster_gives_the_same_bytes(
    train: tuple[str, str], shared_data: Path, plain: dict[str, bytes], tmp_path: Path
) -> None:
    pytest.importorskip("ray", reason="ray is the [ray] extra (CI installs it)")
    _same(_audit(train, shared_data, tmp_path / "out", Executor("ray", 2)), plain)


def test_the_cli_takes_executor_options(train: tuple[str, str], shared_data: Path, tmp_path: Path) -> None:
    bench = ["-b", f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"]
    done = thresher("decontaminate", "-t", train[0], *bench, "-o", str(tmp_path / "o"), "--executor", "local", "--tasks", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["notes"]["executor"]["kind"] == "local"
    bad = thresher("audit", "-t", train[0], *bench, "-o", str(tmp_path / "x"), "--executor", "dask")
    assert bad.returncode != 0 and "--executor must be local or ray" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
