"""The GPU proof kit cannot rot: its dry run (every step, tiny shapes, on the CPU) runs here, through the same
command a lent GPU runs, and must finish every step with figures (its time is recorded in benchmarks/RESULTS.md, not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu.kit import evaluate, parse_tables, steps

REPO = Path(__file__).resolve().parents[1]


def test_tables_and_goals_parse() -> None:
    text = (
        "# x\n| task | trainer | vs TRL | MFU |\n| --- | --- | ---: | ---: |\n"
        "| sft | trl | 1.00× | – |\n| sft | thresher packed | 1.42× | 41.0% |\n"
    )
    tables = parse_tables(text)
    assert tables[1] == {"task": "sft", "trainer": "thresher packed", "vs TRL": "1.42×", "MFU": "41.0%"}
    assert evaluate("row('sft', 'thresher')['vs TRL'] >= 1.3", {}, tables) is True
    assert evaluate("row('sft', 'thresher')['MFU'] >= 42", {}, tables) is False  # negative control
    assert evaluate("row('dpo', 'thresher')['MFU'] >= 40", {}, tables) is None  # not measured is not a pass
    assert [s.name for s in steps()] == [
        "environment",
        "cuda_correctness",
        "kernels_linear",
        "kernels_elementwise",
        "trainer",
        "rlvr",
        "minhash",
        "embedding",
    ]
    assert sum(s.limit_s for s in steps()) <= 480 + 300  # the driver's budget (450 s) cuts what the limits allow


@pytest.mark.slow
def test_the_kit_dry_run_passes_every_step(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", "benchmarks/gpu/run.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_results.json").read_text())
    assert results["dry_run"] is True
    by_step = {r["step"]: r for r in results["steps"]}
    assert list(by_step) == [s.name for s in steps()]
    assert all(r["status"] == "ok" for r in by_step.values()), {k: r.get("error") for k, r in by_step.items()}
    assert by_step["environment"]["figures"]["environment"]["torch"]
    assert by_step["cuda_correctness"]["figures"]["parity"]["agree"] is True
    assert by_step["minhash"]["figures"]["minhash"]["equal"] is True
    assert {"generation_s", "scoring_s", "training_s"} <= set(by_step["rlvr"]["figures"]["rlvr"])
    assert by_step["embedding"]["figures"]["embedding"]["search_engine"] in {"faiss-cpu", "faiss-gpu", "torch-exact"}
    assert any(t.get("method") == "thresher-chunked" for t in by_step["kernels_linear"]["tables"])
    assert any(t.get("trainer", "").startswith("thresher") for t in by_step["trainer"]["tables"])
    assert (tmp_path / "gpu_log.txt").stat().st_size > 0
