"""The GPU proof kit cannot rot: its dry run (every step, tiny shapes, on the CPU) runs here, through the same
command a lent GPU runs, and must finish every step with figures (its time is recorded in benchmarks/RESULTS.md, not asserted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu.kit import BUDGET_S, GROUPS, INTERPRETER_TRACES, evaluate, parse_tables, step_env, steps

REPO = Path(__file__).resolve().parents[1]


def test_tables_and_goals_parse() -> None:
    text = (
        "# x\n| task | trainer | vs TRL | MFU |\n| --- | --- | ---: | ---: |\n"
        "| sft | trl | 1.00× | – |\nRESULT {}\n| sft | thresher packed | 1.42× | 41.0% |\n"
    )
    tables = parse_tables(text)
    assert tables[1] == {"task": "sft", "trainer": "thresher packed", "vs TRL": "1.42×", "MFU": "41.0%"}
    assert evaluate("row('sft', 'thresher')['vs TRL'] >= 1.3", {}, tables) is True
    assert evaluate("row('sft', 'thresher')['MFU'] >= 42", {}, tables) is False  # negative control
    assert evaluate("row('dpo', 'thresher')['MFU'] >= 40", {}, tables) is None  # not measured is not a pass
    assert [s.name for s in steps()] == [
        "environment",
        "cuda_correctness",
        "sweep_linear",
        "kernels_linear_h896_8k",
        "kernels_linear_h896_32k",
        "kernels_linear_h4096_8k",
        "kernels_elementwise",
        "parity",
        "trainer_sft",
        "trainer_dpo",
        "rlvr",
        "minhash",
        "embedding",
        "dedup_e2e",
        "dedup_e2e_10m",
        "embedding_1m",
    ]
    # the device runs a command for at most 600 s: each group's steps and the wheels' install fit in 540
    assert {s.group for s in steps()} == {"any", *GROUPS}
    for group in GROUPS:
        assert sum(s.limit_s for s in steps() if s.group in (group, "any")) <= BUDGET_S <= 500, group
    figures = {"sft": {"speed_vs_trl": 1.4, "memory_vs_trl": None, "mfu": 0.3}}
    goals = dict(next(s for s in steps() if s.name == "trainer_sft").goals)
    assert [evaluate(expr, figures, []) for expr in goals.values()] == [True, None, False]


def test_gpu_mode_commands_run_without_the_interpreter(tmp_path: Path) -> None:
    """On the GPU every step runs with TRITON_INTERPRET=0 even when the caller's shell (here: the test suite) set 1,
    and importing any script a GPU step runs turns nothing back on (benchmarks once imported tests/conftest.py)."""
    assert os.environ.get("TRITON_INTERPRET") == "1"  # the suite's setting, which must not leak
    env = step_env(False, dict(os.environ), tmp_path)
    assert env["TRITON_INTERPRET"] == "0"
    assert step_env(True, dict(os.environ))["TRITON_INTERPRET"] == "1"
    scripts = sorted({Path(a) for s in steps() for c in s.gpu for a in c if a.endswith(".py")})
    assert len(scripts) >= 8
    probe = "; ".join(
        [
            "import importlib.util, os, sys",
            "paths = sys.argv[1:]",
            "[sys.path.insert(0, os.path.dirname(p)) for p in paths]",
            "[importlib.util.spec_from_file_location('m%d' % i, p).loader.exec_module("
            "importlib.util.module_from_spec(importlib.util.spec_from_file_location('m%d' % i, p))) for i, p in enumerate(paths)]",
            "print('TRITON_INTERPRET=' + os.environ.get('TRITON_INTERPRET', ''), 'conftest' in sys.modules)",
        ]
    )
    done = subprocess.run([sys.executable, "-c", probe, *map(str, scripts)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["TRITON_INTERPRET=0", "False"]
    for s in steps():  # and no GPU command line asks for the interpreter itself
        assert not any("INTERPRET" in a or a == "--dry-run" for c in s.gpu for a in c), s.name


def test_no_benchmark_imports_conftest() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "benchmarks").rglob("*.py"))
        if re.search(r"^\s*(from\s+conftest\s+import|import\s+conftest)|tests\.conftest", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []


def test_interpreter_traces_fail_a_gpu_step() -> None:
    trace = 'File "/usr/lib/python3/site-packages/triton/runtime/interpreter.py", line 1030, in __call__'
    assert INTERPRETER_TRACES.search(trace)
    assert INTERPRETER_TRACES.search("RuntimeError: Triton's interpreter is on (TRITON_INTERPRET=1) for CUDA tensors")
    assert not INTERPRETER_TRACES.search("| sft | thresher | 10 | 91,000 | 1.41× |")


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
    assert by_step["parity"]["figures"]["parity"]["agree"] is True
    assert by_step["trainer_sft"]["figures"]["sft"]["speed_vs_trl"] > 0
    assert by_step["trainer_dpo"]["figures"]["dpo_thresher"]["tokens_per_s"] > 0
    assert by_step["minhash"]["figures"]["minhash"]["equal"] is True
    assert {"generation_s", "scoring_s", "training_s"} <= set(by_step["rlvr"]["figures"]["rlvr"])
    assert by_step["embedding"]["figures"]["embedding"]["search_engine"].startswith(("faiss-cpu", "faiss-gpu", "torch-exact"))
    assert any(t.get("method") == "thresher-triton" for t in by_step["kernels_linear_h896_8k"]["tables"])
    assert any(key.startswith("linear_logprobs/") for key in by_step["kernels_linear_h896_8k"]["figures"])
    assert by_step["sweep_linear"]["figures"]["sweep/64x32x300"]["correct"] is True
    tuned = json.loads((tmp_path / "linear_logprobs.json").read_text())  # what the package reads after the sweep
    assert tuned["cpu"]["bfloat16"][0]["backward"]["block_m"] in (16, 32)
    assert "elementwise/rms_norm" in by_step["kernels_elementwise"]["figures"]
    assert by_step["dedup_e2e"]["figures"]["dedup_e2e"]["identical"] is True
    assert by_step["dedup_e2e_10m"]["figures"]["dedup_e2e"]["docs"] == 3000  # past --base: the input repeated
    assert by_step["embedding_1m"]["figures"]["embedding"]["bench"] == 30
    assert (tmp_path / "gpu_log.txt").stat().st_size > 0
