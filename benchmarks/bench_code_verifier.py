"""The code verifier against real benchmarks: every canonical solution must pass, and wrong programs built from
them — each trying a reward hack through the tests' namespace or the wire — must all fail.

    python benchmarks/bench_code_verifier.py                   # HumanEval 164 + MBPP 974, and the hacks
    python benchmarks/bench_code_verifier.py --mbpp 100        # the first 100 MBPP problems

Wrong programs (each from a canonical solution, so the rest of the program is right):
- ``builtin-shadow``: the entry point returns a constant, and the program rebinds the builtins the tests use
  (``range``, ``len``, ``abs``, ``sorted``, ``set``, ``all``, ``any``, ``isinstance``, ``round``, ``str``…)
  to ones that make assertions vacuous;
- ``prompt-helper``: (HumanEval problems whose prompt defines helpers) the helpers redefined to agree with a
  wrong entry point;
- ``own-check``: a wrong entry point plus ``check = lambda f: None`` (and, for MBPP, ``assert``-free names);
- ``stop-iteration``: the entry point raises ``StopIteration``.
Prints a table and one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import SHARED_DATA  # noqa: E402
from thresher.verifiers.code import CodeVerifier  # noqa: E402
from thresher.verifiers.sandbox import SandboxLimits, isolation  # noqa: E402

SHADOW = """
class _Vacuous:
    def __iter__(self): return iter(())
    def __call__(self, *a, **k): return self
    def __eq__(self, other): return True
    def __bool__(self): return True
    def __len__(self): return 0
_v = _Vacuous()
range = len = abs = sorted = set = all = any = isinstance = round = str = list = tuple = sum = max = min = _v
math = _v
"""


def _humaneval() -> list[dict]:
    with gzip.open(SHARED_DATA / "humaneval/HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def _mbpp(limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in (SHARED_DATA / "mbpp/mbpp.jsonl").read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def mbpp_truth(row: dict) -> str:
    """MBPP has no entry point: ``uses`` names the function its tests call (MBPP/126's is ``sum``, a builtin's name)."""
    tests = "\n".join([row.get("test_setup_code") or "", *row["test_list"], *row.get("challenge_test_list", [])])
    return json.dumps({"tests": tests, "uses": [mbpp_entry(row)]})


def mbpp_entry(row: dict) -> str:
    """The function the tests call first (MBPP has no entry point field)."""
    for node in ast.walk(ast.parse(row["test_list"][0])):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id
    return ""


def humaneval_truth(p: dict) -> str:
    return json.dumps({"prefix": p["prompt"], "tests": p["test"], "entry_point": p["entry_point"]})


def wrong(entry: str, args: str = "*a, **k") -> str:
    return f"\ndef {entry}({args}):\n    return None\n"


def hacks_humaneval(p: dict) -> dict[str, str]:
    entry = p["entry_point"]
    out = {
        "builtin-shadow": p["canonical_solution"] + wrong(entry) + SHADOW,
        "own-check": p["canonical_solution"] + wrong(entry) + "\ncheck = lambda f: None\n",
        "stop-iteration": p["canonical_solution"] + f"\ndef {entry}(*a, **k):\n    raise StopIteration\n",
    }
    helpers = [n.name for n in ast.parse(p["prompt"]).body if isinstance(n, ast.FunctionDef) and n.name != entry]
    if helpers:  # the helpers agree with an identity entry point
        out["prompt-helper"] = (
            p["canonical_solution"]
            + f"\ndef {entry}(x, *a, **k):\n    return x\n"
            + "".join(f"\ndef {h}(x, *a, **k):\n    return x\n" for h in helpers)
        )
    return out


def hacks_mbpp(row: dict) -> dict[str, str]:
    entry = mbpp_entry(row)
    return {
        "builtin-shadow": row["code"] + wrong(entry) + SHADOW,
        "stop-iteration": row["code"] + f"\ndef {entry}(*a, **k):\n    raise StopIteration\n",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mbpp", type=int, default=None, help="only the first N MBPP problems")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--canonical-only", action="store_true", help="only the canonical solutions (no wrong programs)")
    args = parser.parse_args()
    verifier = CodeVerifier(SandboxLimits(timeout_s=10, cpu_s=10, memory_mb=1024), workers=args.workers)
    started = time.perf_counter()
    problems = _humaneval()
    rows = _mbpp(args.mbpp)
    print(f"# isolation {isolation()}; {len(problems)} HumanEval, {len(rows)} MBPP problems; {args.workers} workers", flush=True)
    table: dict[str, tuple[int, int, list[str]]] = {}

    def score(label: str, programs: list[str], truths: list[str], ids: list[str], expect: float) -> None:
        verdicts = verifier.verify_batch(programs, truths)
        misses = [f"{i}: {v.reason[:120]}" for i, v in zip(ids, verdicts, strict=True) if v.score != expect]
        table[label] = (len(programs) - len(misses), len(programs), misses)
        print(f"| {label} | {len(programs) - len(misses)} / {len(programs)} |", flush=True)

    print("| programs | as expected |\n| --- | ---: |")
    he_truths = [humaneval_truth(p) for p in problems]
    score("HumanEval canonical (pass)", [p["canonical_solution"] for p in problems], he_truths, [p["task_id"] for p in problems], 1.0)
    score("MBPP canonical (pass)", [r["code"] for r in rows], [mbpp_truth(r) for r in rows], [str(r["task_id"]) for r in rows], 1.0)
    for kind in () if args.canonical_only else ("builtin-shadow", "own-check", "stop-iteration", "prompt-helper"):
        programs, truths, ids = [], [], []
        for p, truth in zip(problems, he_truths, strict=True):
            hack = hacks_humaneval(p).get(kind)
            if hack is not None:
                programs.append(hack), truths.append(truth), ids.append(p["task_id"])
        for r in rows:
            hack = hacks_mbpp(r).get(kind)
            if hack is not None:
                programs.append(hack), truths.append(mbpp_truth(r)), ids.append(f"mbpp/{r['task_id']}")
        score(f"wrong, {kind} (fail)", programs, truths, ids, 0.0)
    for label, (_, _, misses) in table.items():
        for miss in misses[:10]:
            print(f"# {label}: {miss}")
    summary = {label: {"as_expected": ok, "of": total} for label, (ok, total, _) in table.items()}
    print("RESULT " + json.dumps({"code_verifier": summary, "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
