"""The GPU proof kit's driver: every GPU claim measured in one run, each step in its own process with its
own time limit, so one failing step never loses the others.

    python3 benchmarks/gpu/kit.py            # on the lent GPU (run.sh installs the carried wheels first)
    python3 benchmarks/gpu/kit.py --dry-run  # the same steps, tiny shapes, on the CPU (a test runs this)

Writes ``$OUT/gpu_results.json`` (one record per step: status, seconds, figures parsed from the step's
tables and RESULT lines, goals met or not, and the environment) and ``$OUT/gpu_log.txt`` (every step's
output). ``$OUT`` defaults to ``out/gpu``. The whole run keeps to ``--budget`` seconds (default 450):
a step gets the smaller of its own limit and what is left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
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
    limit_s: int  # on the GPU; the dry run gets the same limits
    gpu: list[list[str]]  # commands (argument lists after the interpreter) run in order
    dry: list[list[str]]
    goals: list[tuple[str, str]] = field(default_factory=list)  # (description, expression over the figures)


def steps() -> list[Step]:
    py = lambda *a: [str(x) for x in a]  # noqa: E731
    return [
        Step("environment", 40, [py(GPU / "probe.py")], [py(GPU / "probe.py", "--dry-run")]),
        Step(
            "cuda_correctness",
            120,
            [
                py(
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "tests/test_kernels.py",
                    "tests/test_device.py",
                    "tests/test_minhash_lsh.py",
                    "-k",
                    "kernel or linear or rms or rope or swiglu or gpu or device or signature",
                ),
                py(GPU / "train_parity.py"),
            ],
            [
                py("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kernels.py", "-k", "empty or rms_norm"),
                py(GPU / "train_parity.py", "--dry-run"),
            ],
            goals=[("kernels=triton and kernels=torch bf16 losses agree", "figures['parity']['agree']")],
        ),
        Step(
            "kernels_linear",
            150,
            [
                py(
                    BENCH / "kernels_linear_logprobs.py",
                    "--tokens",
                    8192,
                    32768,
                    "--hidden",
                    896,
                    "--vocab",
                    151936,
                    "--dtype",
                    "bf16",
                    "--repeats",
                    5,
                ),
                py(
                    BENCH / "kernels_linear_logprobs.py",
                    "--tokens",
                    8192,
                    "--hidden",
                    4096,
                    "--vocab",
                    128256,
                    "--dtype",
                    "bf16",
                    "--repeats",
                    5,
                ),
            ],
            [py(BENCH / "kernels_linear_logprobs.py", "--tokens", 128, "--hidden", 32, "--vocab", 500, "--dtype", "fp32", "--repeats", 1)],
            goals=[
                ("fused linear log-probs: time ≤ 0.8× Liger", "ratio('thresher-triton', 'liger', 'ms') <= 0.8"),
                ("fused linear log-probs: memory ≤ Liger's", "ratio('thresher-triton', 'liger', 'peak MB (beyond inputs)') <= 1.0"),
            ],
        ),
        Step(
            "kernels_elementwise",
            60,
            [py(BENCH / "kernels_elementwise.py", "--tokens", 16384, "--hidden", 4096, "--intermediate", 14336, "--heads", 32)],
            [
                py(
                    BENCH / "kernels_elementwise.py",
                    "--tokens",
                    32,
                    "--hidden",
                    32,
                    "--intermediate",
                    64,
                    "--heads",
                    2,
                    "--dtype",
                    "fp32",
                    "--repeats",
                    1,
                    "--dry-run",
                )
            ],
        ),
        Step(
            "trainer",
            170,
            [
                py(
                    BENCH / "bench_train_cpu.py",
                    "--device",
                    "cuda",
                    "--precision",
                    "bf16",
                    "--liger",
                    "--shape",
                    "qwen2.5-0.5b",
                    "--max-length",
                    4096,
                    "--rows",
                    400,
                    "--pairs",
                    64,
                    "--packed-only",
                )
            ],
            [
                py(
                    BENCH / "bench_train_cpu.py",
                    "--rows",
                    8,
                    "--pairs",
                    4,
                    "--hidden",
                    32,
                    "--layers",
                    1,
                    "--max-length",
                    96,
                    "--packed-only",
                )
            ],
            goals=[
                ("SFT ≥ 1.3× TRL+Liger tokens/s", "row('sft', 'thresher')['vs TRL'] >= 1.3"),
                ("SFT ≤ 0.6× TRL+Liger memory", "row('sft', 'thresher')['vs TRL_2'] <= 0.6"),
                ("SFT MFU ≥ 40%", "row('sft', 'thresher')['MFU'] >= 40"),
                ("DPO ≥ 1.3× TRL+Liger tokens/s", "row('dpo', 'thresher')['vs TRL'] >= 1.3"),
                ("DPO ≤ 0.6× TRL+Liger memory", "row('dpo', 'thresher')['vs TRL_2'] <= 0.6"),
                ("DPO MFU ≥ 40%", "row('dpo', 'thresher')['MFU'] >= 40"),
            ],
        ),
        Step(
            "rlvr",
            90,
            [
                py(
                    BENCH / "bench_rlvr.py",
                    "--device",
                    "cuda",
                    "--hidden",
                    896,
                    "--layers",
                    24,
                    "--steps",
                    3,
                    "--prompts",
                    8,
                    "--group",
                    8,
                    "--new-tokens",
                    128,
                    "--micro",
                    16,
                    "--thresher-only",
                )
            ],
            [
                py(
                    BENCH / "bench_rlvr.py",
                    "--hidden",
                    32,
                    "--layers",
                    1,
                    "--steps",
                    2,
                    "--prompts",
                    2,
                    "--group",
                    2,
                    "--new-tokens",
                    8,
                    "--micro",
                    4,
                    "--thresher-only",
                )
            ],
        ),
        Step(
            "minhash",
            90,
            [py(GPU / "minhash_gpu.py", "--docs", 1_000_000)],
            [py(GPU / "minhash_gpu.py", "--docs", 2000)],
            goals=[
                ("CPU and CUDA signatures equal", "figures['minhash']['equal']"),
                ("≥ 500k docs/s on CUDA", "figures['minhash']['docs_per_s'] >= 500_000"),
            ],
        ),
        Step("embedding", 60, [py(GPU / "embed_knn.py", "--texts", 200_000)], [py(GPU / "embed_knn.py", "--texts", 120)]),
    ]


def parse_tables(text: str) -> list[dict[str, str]]:
    """Every markdown table row of ``text`` as {header: cell}; a repeated header gets _2, _3."""
    rows, header = [], None
    for line in text.splitlines():
        line = line.strip()
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


def run_step(step: Step, dry: bool, left_s: float, env: dict[str, str], log: Any) -> dict[str, Any]:
    limit = max(5.0, min(step.limit_s, left_s))
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
        try:
            done = subprocess.run(
                [sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=remaining
            )
            text = done.stdout + ("\n" + done.stderr if done.returncode else "")
            if done.returncode != 0:
                record["status"] = "failed"
                record["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:500]
        except subprocess.TimeoutExpired as e:
            text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            record["status"] = "timeout"
        log.write(text)
        output += text + "\n"
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
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all steps together")
    parser.add_argument("--only", nargs="*", help="run only these steps")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "out" / "gpu"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = REPO / ".gpu_data"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if data.is_dir() and "THRESHER_SHARED_DATA" not in os.environ:
        env["THRESHER_SHARED_DATA"] = str(data)  # the slice fetch_wheels.sh copied (../shared does not travel)
    if args.dry_run:
        env["TRITON_INTERPRET"] = "1"
    deadline = time.monotonic() + args.budget
    records = []
    with open(out / "gpu_log.txt", "w") as log:
        for step in steps():
            if args.only and step.name not in args.only:
                continue
            record = run_step(step, args.dry_run, deadline - time.monotonic(), env, log)
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
