"""RLVR step time: Thresher's ``train rlvr`` against TRL's GRPOTrainer on the same model, prompts and settings,
each in its own process (clean peak RSS).

Prompts: GSM8K test questions (``../shared/data/gsm8k``) with their answers; reward: Thresher's gsm8k verifier in
both tools. Settings shared by both: ``--prompts`` prompts × ``--group`` completions per step, at most
``--new-tokens`` new tokens, temperature 1, top-p 1, one optimizer step per rollout (``--micro`` completions per
micro-batch), token-level loss (TRL ``loss_type="dapo"``), clip 0.2/0.28, β = 0, std-normalized advantages, no
filtering of zero-variance groups (TRL trains on them too) and no masking of truncated completions.
Model: a random Llama made here (``--hidden``/``--layers``; BPE tokenizer trained on LIMA) — its completions
are random, which keeps the work the same in both tools. The first step is a warm-up: the table reports the
median of the others.

Run: python benchmarks/bench_rlvr.py [--steps 6 --prompts 8 --group 8 --new-tokens 64 --hidden 256 --layers 4]
On a GPU add ``--device cuda`` (both tools generate with transformers unless ``--vllm``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from tests.helpers import SHARED_DATA  # noqa: E402

GSM8K = SHARED_DATA / "gsm8k/test.jsonl"


def _prompts(folder: Path, count: int) -> Path:
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:count]]
    path = folder / "prompts.jsonl"
    path.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": r["question"]}], "ground_truth": r["answer"], "verifier": "gsm8k"}) + "\n"
            for r in rows
        )
    )
    return path


def _peak_mb() -> float:
    """Peak CUDA memory allocated on a GPU, else peak RSS."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _thresher(model: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    from thresher.train.config import TrainConfig
    from thresher.train.rlvr import run_rlvr

    config = TrainConfig.model_validate(
        {
            "model": str(model),
            "data": {"train": str(data)},
            "max_length": 512 + a.new_tokens,
            "packing": False,
            "rows_per_micro_batch": a.micro,
            "device": a.device,
            "precision": "fp32" if a.device == "cpu" else "bf16",
            "optim": {"lr": 1e-6, "warmup_ratio": 0.0, "schedule": "constant"},
            "output_dir": str(out),
            "log_every": 1000,
            "rlvr": {
                "group_size": a.group,
                "prompts_per_rollout": a.prompts,
                "rollouts": a.steps,
                "max_new_tokens": a.new_tokens,
                "filter_zero_variance": False,
                "truncated": "keep",
                "clip_low": 0.2,
                "clip_high": 0.28,
                "generation_batch": a.prompts,
                "engine": "vllm" if a.vllm else "transformers",
            },
        }
    )
    run_rlvr(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["rollout_s"] for r in rows if "rollout_s" in r]
    generation = [r["generation_s"] for r in rows if "generation_s" in r and "rollout" in r]
    scoring = [r["scoring_s"] for r in rows if "scoring_s" in r and "rollout" in r]
    training = [r["training_s"] for r in rows if "training_s" in r and "rollout" in r]
    return {"step_s": steps, "generation_s": generation, "scoring_s": scoring, "training_s": training, "peak_mb": _peak_mb()}


def _trl(model_dir: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from thresher.verifiers import get_verifier

    verifier = get_verifier("gsm8k")

    def reward(completions: list, ground_truth: list, **_: object) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [v.score for v in verifier.verify_batch(texts, list(ground_truth))]

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.marks = [time.perf_counter()]

        def on_step_end(self, *args: object, **kwargs: object) -> None:
            self.marks.append(time.perf_counter())

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["messages"], "ground_truth": r["ground_truth"]} for r in rows])
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    dtype = torch.float32 if a.device == "cpu" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    args = trl.GRPOConfig(
        output_dir=str(out),
        report_to=[],
        use_cpu=a.device == "cpu",
        bf16=a.device != "cpu",
        per_device_train_batch_size=a.micro,
        gradient_accumulation_steps=a.prompts * a.group // a.micro,
        num_generations=a.group,
        max_completion_length=a.new_tokens,
        temperature=1.0,
        top_p=1.0,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        max_steps=a.steps,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        scale_rewards="group",
        mask_truncated_completions=False,
        save_strategy="no",
        logging_steps=1000,
        dataloader_num_workers=0,
        use_vllm=a.vllm,
        vllm_mode="colocate",
        seed=0,
    )
    clock = Clock()
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tok, callbacks=[clock])
    clock.marks = [time.perf_counter()]
    trainer.train()
    return {"step_s": [b - a_ for a_, b in zip(clock.marks, clock.marks[1:], strict=False)], "peak_mb": _peak_mb()}


def child(argv: list[str]) -> None:
    tool, model, data, out, settings = argv
    a = argparse.Namespace(**json.loads(settings))
    result = (_thresher if tool == "thresher" else _trl)(Path(model), Path(data), Path(out), a)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--micro", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vllm", action="store_true")
    parser.add_argument("--model", help="an existing model folder instead of a random Llama")
    parser.add_argument("--thresher-only", action="store_true", help="no TRL run (the GPU kit: TRL's GRPO needs vLLM or is slow)")
    args = parser.parse_args()
    import torch
    from bench_synth_generate import make_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = Path(args.model) if args.model else make_model(folder / "model", args.hidden, args.layers)
        data = _prompts(folder, args.prompts * args.steps)
        print(f"# {platform.machine()} threads={torch.get_num_threads()} torch={torch.__version__} device={args.device}")
        print(
            f"# {args.steps} steps × {args.prompts} GSM8K prompts × {args.group} completions, ≤ {args.new_tokens} new tokens, "
            f"micro-batch {args.micro}; model {args.model or f'random Llama hidden {args.hidden}, {args.layers} layers'}"
        )
        settings = json.dumps({k: v for k, v in vars(args).items() if k != "model"})
        results = {}
        for tool in ("thresher",) if args.thresher_only else ("trl", "thresher"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", tool, str(model), str(data), str(folder / tool), settings],
                capture_output=True,
                text=True,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{tool} failed:\n{done.stderr[-4000:]}")
            results[tool] = json.loads(line[7:])
        print("| trainer | median step s | vs TRL | steps timed | peak RSS MB | vs TRL |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        base = results.get("trl", results["thresher"])
        for tool, r in results.items():
            median = statistics.median(r["step_s"][1:])
            print(
                f"| {tool} | {median:.2f} | {median / statistics.median(base['step_s'][1:]):.2f}× | {len(r['step_s']) - 1} | "
                f"{r['peak_mb']:,.0f} | {r['peak_mb'] / base['peak_mb']:.2f}× |"
            )
        mine = results["thresher"]
        if mine.get("generation_s"):
            step = statistics.median(mine["step_s"][1:])
            split = {k: statistics.median(mine[k][1:]) for k in ("generation_s", "scoring_s", "training_s") if mine.get(k)}
            print("# Thresher's step: " + ", ".join(f"{k[:-2]} {v:.2f} s ({v / step:.0%})" for k, v in split.items()))
            print("RESULT " + json.dumps({"rlvr": {"step_s": step, **split, "peak_mb": mine["peak_mb"]}}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
