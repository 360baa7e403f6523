"""The GPU proof kit's driver: every GPU claim measured in one run, each step in its own process with its
own time limit, so one failing step never loses the others.

    python3 benchmarks/gpu/kit.py                    # on the lent GPU (run.sh installs the carried wheels first)
    python3 benchmarks/gpu/kit.py --groups kernels   # one group of steps per call: kernels, trainer, data, scale
    python3 benchmarks/gpu/kit.py --dry-run          # the same steps, tiny shapes, on the CPU (a test runs this)

Every group fits one device call (its steps' limits sum to at most ``--budget``); all groups together do not,
so a session with 15 device minutes runs ``--groups kernels`` and then ``--groups trainer data``. The
``sweep_linear`` step tunes the LM-head kernel's tiles and writes ``$OUT/linear_logprobs.json``; every later
step of the run reads its tiles from there (``THRESHER_LINEAR_LOGPROBS_CONFIGS``), and committing that file as
``thresher/kernels/tuned/linear_logprobs.json`` makes it the package's default.

Writes ``$OUT/gpu_results.json`` (one record per step: status, seconds, figures parsed from the step's
tables and RESULT lines, goals met or not, and the environment) and ``$OUT/gpu_log.txt`` (every step's
output). ``$OUT`` defaults to ``out/gpu``. The whole run keeps to ``--budget`` seconds (default 490; with
run.sh's install the call fits 540 s): a step gets the smaller of its own limit and what is left. Each step's
output goes to the log as it is printed, so a step cut short keeps its RESULT lines. On the GPU every step runs
with ``TRITON_INTERPRET=0``, and a step whose output shows Triton's interpreter has failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
GPU = BENCH / "gpu"


@dataclass
class Step:
    name: str
    limit_s: int  # on the GPU; the dry run gets DRY_SLACK times as long
    gpu: list[list[str]]  # commands (argument lists after the interpreter) run in order
    dry: list[list[str]]
    goals: list[tuple[str, str]] = field(default_factory=list)  # (description, expression over the figures)
    group: str = "any"  # kernels, trainer or data; "any" runs with every group


GROUPS = ("kernels", "trainer", "data", "scale")  # scale: 10M-document dedup and a 1M-row embedding audit, only when asked
BUDGET_S = 490  # one group's steps; with the wheels' install (run.sh) the call stays under the 540 s the kit is sized for
DRY_SLACK = 3  # the dry run's limits: a 2-core CPU, and the interpreter, are not the GPU
INTERPRETER_TRACES = re.compile(r"triton[/\\]runtime[/\\]interpreter|InterpreterError|Triton's interpreter is on")


def steps() -> list[Step]:
    """The kit's steps, most important first (a run cut short keeps the front)."""
    py = lambda *a: [str(x) for x in a]  # noqa: E731
    tests = ["tests/test_kernels.py", "tests/test_kernel_dispatch.py", "tests/test_varlen_attention.py"]

    def linear(tokens: int, hidden: int, vocab: int, dtype: str = "bf16", repeats: int = 5) -> list[str]:
        sizes = ("--tokens", tokens, "--hidden", hidden, "--vocab", vocab)
        return py(BENCH / "kernels_linear_logprobs.py", *sizes, "--dtype", dtype, "--repeats", repeats)

    linear_dry = [*linear(128, 32, 500, "fp32", 1), "--methods", "eager", "thresher-chunked", "thresher-triton"]
    throughput = GPU / "train_throughput.py"
    trainer_goals = lambda task: [  # noqa: E731
        (f"{task.upper()} ≥ 1.3× TRL+Liger tokens/s", f"figures['{task}']['speed_vs_trl'] >= 1.3"),
        (f"{task.upper()} ≤ 0.6× TRL+Liger peak memory", f"figures['{task}']['memory_vs_trl'] <= 0.6"),
        (f"{task.upper()} MFU ≥ 40%", f"figures['{task}']['mfu'] >= 0.40"),
    ]
    linear_goals = lambda shape: [  # noqa: E731
        (f"LM head ({shape}): Triton ≤ 0.8× Liger's time", "ratio('thresher-triton', 'liger', 'ms') <= 0.8"),
        (f"LM head ({shape}): Triton peak memory ≤ Liger's", "ratio('thresher-triton', 'liger', 'peak MB (beyond inputs)') <= 1.0"),
        (f"LM head ({shape}): Triton ≤ CCE with its filter off (the aim)", "ratio('thresher-triton', 'cce-nofilter', 'ms') <= 1.0"),
    ]
    elementwise = "figures['elementwise/{op}']"
    return [
        Step("environment", 15, [py(GPU / "probe.py")], [py(GPU / "probe.py", "--dry-run")]),
        Step(
            "cuda_correctness",
            70,
            [py("-m", "pytest", "-q", "-p", "no:cacheprovider", *tests)],
            [py("-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, "-k", "empty or rms_norm or dispatch or packed_attention_equals")],
            group="kernels",
        ),
        Step(
            "sweep_linear",
            160,  # both groups' calls, their installs and the machine's start fit the 15 device minutes a session has
            [py(GPU / "sweep_linear_logprobs.py", "--budget-s", 140)],
            [py(GPU / "sweep_linear_logprobs.py", "--dry-run")],
            goals=[
                ("a checked tile configuration for each LM-head shape", "all(v['correct'] for v in figures.values()) and len(figures) == 3")
            ],
            group="kernels",
        ),
        Step("kernels_linear_h896_8k", 45, [linear(8192, 896, 151936)], [linear_dry], linear_goals("H 896, V 151,936, 8K"), "kernels"),
        Step("kernels_linear_h896_32k", 50, [linear(32768, 896, 151936, repeats=3)], [], linear_goals("H 896, V 151,936, 32K"), "kernels"),
        Step("kernels_linear_h4096_8k", 45, [linear(8192, 4096, 128256, repeats=3)], [], linear_goals("H 4,096, V 128,256, 8K"), "kernels"),
        Step(
            "kernels_elementwise",
            25,
            [py(BENCH / "kernels_elementwise.py", "--tokens", 16384, "--hidden", 4096, "--intermediate", 14336, "--heads", 32)],
            [
                py(
                    BENCH / "kernels_elementwise.py",
                    *("--tokens", 32, "--hidden", 32, "--intermediate", 64, "--heads", 2, "--dtype", "fp32", "--repeats", 1, "--dry-run"),
                )
            ],
            goals=[
                ("RMSNorm ≤ 175 µs (16,384 × 4,096)", elementwise.format(op="rms_norm") + "['us']['thresher'] <= 175"),
                ("RoPE ≤ 145 µs (16,384 × 32 heads × 128)", elementwise.format(op="rope") + "['us']['thresher'] <= 145"),
                ("SwiGLU at ≥ 80% of 4.8 TB/s", elementwise.format(op="swiglu") + "['gbps']['thresher'] >= 0.8 * 4800"),
            ],
            group="kernels",
        ),
        Step(
            "parity",
            60,
            [py(GPU / "train_parity.py")],
            [py(GPU / "train_parity.py", "--dry-run")],
            goals=[("kernels=triton and kernels=torch bf16 losses agree (SFT and DPO)", "figures['parity']['agree']")],
            group="trainer",
        ),
        Step(
            "trainer_sft",
            90,
            [py(throughput, "--task", "sft")],
            [py(throughput, "--task", "sft", "--dry-run")],
            trainer_goals("sft"),
            "trainer",
        ),
        Step(
            "trainer_dpo",
            90,
            [py(throughput, "--task", "dpo")],
            [py(throughput, "--task", "dpo", "--dry-run")],
            trainer_goals("dpo"),
            "trainer",
        ),
        Step(
            "rlvr",
            45,
            [
                py(
                    BENCH / "bench_rlvr.py",
                    *("--device", "cuda", "--hidden", 896, "--layers", 24, "--steps", 2, "--prompts", 8, "--group", 8),
                    *("--new-tokens", 128, "--micro", 16, "--thresher-only"),
                )
            ],
            [
                py(
                    BENCH / "bench_rlvr.py",
                    *("--hidden", 32, "--layers", 1, "--steps", 2, "--prompts", 2, "--group", 2, "--new-tokens", 8, "--micro", 4),
                    "--thresher-only",
                )
            ],
            group="trainer",
        ),
        Step(
            "minhash",
            15,
            [py(GPU / "minhash_gpu.py", "--docs", 300_000)],
            [py(GPU / "minhash_gpu.py", "--docs", 2000)],
            goals=[
                ("CPU and CUDA signatures equal", "figures['minhash']['equal']"),
                ("≥ 500k docs/s on CUDA", "figures['minhash']['docs_per_s'] >= 500_000"),
            ],
            group="data",
        ),
        Step("embedding", 25, [py(GPU / "embed_knn.py", "--texts", 50_000)], [py(GPU / "embed_knn.py", "--texts", 120)], group="data"),
        Step(
            "dedup_e2e",
            75,
            [py(GPU / "dedup_e2e.py", "--docs", 1_000_000)],
            [py(GPU / "dedup_e2e.py", "--docs", 2000, "--dry-run")],
            goals=[
                ("dedup --device cuda: ≥ 250k docs/s end to end at 1M", "figures['dedup_e2e']['cuda']['docs_per_s'] >= 250_000"),
                ("dedup --device cuda: the same output bytes as --device cpu", "figures['dedup_e2e']['identical']"),
            ],
            group="data",
        ),
        Step(
            "dedup_e2e_10m",
            240,
            [py(GPU / "dedup_e2e.py", "--docs", 10_000_000, "--cuda-only")],
            [py(GPU / "dedup_e2e.py", "--docs", 3000, "--base", 1000, "--cuda-only", "--dry-run")],
            goals=[("dedup --device cuda: ≥ 250k docs/s end to end at 10M", "figures['dedup_e2e']['cuda']['docs_per_s'] >= 250_000")],
            group="scale",
        ),
        Step(
            "embedding_1m",
            150,
            # GSM8K + MATH + HumanEval + MMLU test items: 20,525, three vectors each (question, answer, last ask)
            [py(GPU / "embed_knn.py", "--texts", 1_000_000, "--bench", 61_575)],
            [py(GPU / "embed_knn.py", "--texts", 120, "--bench", 30)],
            goals=[("embedding audit of 1M rows ≤ 60 s, cold encoding included", "figures['embedding']['total_s'] <= 60")],
            group="scale",
        ),
    ]


def step_env(dry: bool, base: dict[str, str], data: Path | None = None) -> dict[str, str]:
    """The environment every step runs in: offline, unbuffered, the repo importable; Triton's interpreter
    on for the dry run (CPU tensors) and explicitly off on the GPU, whatever the caller's shell had."""
    env = {
        **base,
        "PYTHONPATH": os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRITON_INTERPRET": "1" if dry else "0",
    }
    if data is not None and data.is_dir() and "THRESHER_SHARED_DATA" not in base:
        env["THRESHER_SHARED_DATA"] = str(data)  # the slice fetch_wheels.sh copied (../shared does not travel)
    return env


def parse_tables(text: str) -> list[dict[str, str]]:
    """Every markdown table row of ``text`` as {header: cell}; a repeated header gets _2, _3."""
    rows, header = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("RESULT "):  # printed between a table's rows as each measurement finishes
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = []
            for c in cells:
                name, k = c, 2
                while name in header:
                    name, k = f"{c}_{k}", k + 1
                header.append(name)
        elif not all(set(c) <= set("-: ") for c in cells):
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


def number(cell: Any) -> float:
    text = str(cell).replace(",", "").replace("×", "").replace("%", "").replace("x", "").strip()
    return float(text)


def evaluate(goal: str, figures: dict[str, Any], tables: list[dict[str, str]]) -> bool | None:
    """A goal's expression over the step's figures and tables; None when its inputs are missing (not measured)."""

    def cell(value: str) -> float | None:
        try:
            return number(value)
        except ValueError:
            return None  # "–": not measured here

    def row(task: str, trainer: str) -> dict[str, float | None]:
        found = next(r for r in tables if r.get("task") == task and r.get("trainer", "").startswith(trainer))
        return {k: cell(v) for k, v in found.items() if k not in ("task", "trainer")}

    def ratio(a: str, b: str, column: str) -> float:
        ratios = []
        for r in tables:
            if r.get("method") == a:
                other = next(x for x in tables if x.get("method") == b and x.get("tokens") == r.get("tokens"))
                ratios.append(number(r[column]) / number(other[column]))
        return max(ratios)

    try:
        return bool(eval(goal, {"row": row, "ratio": ratio, "figures": figures}))  # noqa: S307 - our own expressions
    except (StopIteration, KeyError, ValueError, TypeError, ZeroDivisionError):
        return None


def _run(command: list[str], env: dict[str, str], timeout: float, log: Any) -> tuple[str, int | None]:
    """Run ``command`` with its output going straight to a file (so a time-out keeps every line it printed),
    killing its whole process group at ``timeout``; its output and exit code (None: timed out)."""
    with tempfile.TemporaryFile("w+") as sink:
        process = subprocess.Popen(
            [sys.executable, *command], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
        sink.seek(0)
        text = sink.read()
    log.write(text)
    log.flush()
    return text, code


def run_step(step: Step, dry: bool, left_s: float, env: dict[str, str], log: Any) -> dict[str, Any]:
    limit = max(5.0, min(step.limit_s * (DRY_SLACK if dry else 1), left_s))
    started = time.monotonic()
    record: dict[str, Any] = {"step": step.name, "status": "ok", "figures": {}, "tables": [], "commands": []}
    output = ""
    for command in step.dry if dry else step.gpu:
        remaining = limit - (time.monotonic() - started)
        if remaining <= 1:
            record["status"] = "timeout"
            break
        record["commands"].append(" ".join(["python3", *command]))
        log.write(f"\n=== {step.name}: {' '.join(command)}\n")
        log.flush()
        text, code = _run(command, env, remaining, log)
        output += text + "\n"
        if code is None:
            record["status"] = "timeout"
        elif code != 0:
            record["status"] = "failed"
            record["error"] = (text.strip().splitlines() or ["?"])[-1][:500]
        if not dry and INTERPRETER_TRACES.search(text):  # a GPU figure measured by the interpreter is no figure
            record["status"] = "failed"
            record["error"] = "ran under Triton's interpreter on the GPU"
        if record["status"] != "ok":
            break
    record["seconds"] = round(time.monotonic() - started, 1)
    record["tables"] = parse_tables(output)
    for line in output.splitlines():
        if line.startswith("RESULT "):
            try:
                record["figures"].update(json.loads(line[7:]))
            except json.JSONDecodeError:
                pass
    record["goals"] = [{"goal": text, "met": evaluate(expr, record["figures"], record["tables"])} for text, expr in step.goals]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (Triton under its interpreter)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all steps together")
    parser.add_argument("--only", nargs="*", help="run only these steps")
    parser.add_argument("--groups", nargs="*", choices=GROUPS, help="run only these groups' steps (and the environment)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "out" / "gpu"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**step_env(args.dry_run, dict(os.environ), REPO / ".gpu_data"), "OUT": str(out)}
    deadline = time.monotonic() + args.budget * (DRY_SLACK if args.dry_run else 1)
    records = []
    with open(out / "gpu_log.txt", "w") as log:
        for step in steps():
            if (args.only and step.name not in args.only) or (args.groups and step.group not in (*args.groups, "any")):
                continue
            if step.group == "scale" and "scale" not in (args.groups or []) and not args.only and not args.dry_run:
                continue  # past the device minutes of a normal session: only when asked for (the dry run has them all)
            record = run_step(step, args.dry_run, deadline - time.monotonic(), env, log)
            tuned = out / "linear_logprobs.json"
            if step.name == "sweep_linear" and tuned.exists():  # the rest of the run uses the tiles just tuned
                env["THRESHER_LINEAR_LOGPROBS_CONFIGS"] = str(tuned)
            records.append(record)
            goals = ", ".join(
                f"{g['goal']}: {'met' if g['met'] else 'not measured' if g['met'] is None else 'MISSED'}" for g in record["goals"]
            )
            print(
                f"{step.name}: {record['status']} in {record['seconds']} s"
                + (f" ({record.get('error')})" if "error" in record else "")
                + (f"; {goals}" if goals else ""),
                flush=True,
            )
            (out / "gpu_results.json").write_text(
                json.dumps(  # rewritten after every step: a kill keeps what was done
                    {"dry_run": args.dry_run, "host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "steps": records},
                    indent=2,
                )
            )
    failed = [r["step"] for r in records if r["status"] != "ok"]
    print(f"results: {out / 'gpu_results.json'}; log: {out / 'gpu_log.txt'}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed and args.dry_run else 0)


if __name__ == "__main__":
    main()
