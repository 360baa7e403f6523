"""SFT or DPO training throughput on a GPU: Thresher's trainer against TRL (with Liger's kernels), in one process,
side by side, as a user runs each.

    python benchmarks/gpu/train_throughput.py --task sft      # on the GPU: Qwen2.5-0.5B's shape, packed 4,096, bf16
    python benchmarks/gpu/train_throughput.py --task dpo
    python benchmarks/gpu/train_throughput.py --task sft --dry-run   # tiny shapes on the CPU: the code path only

The model's weights are made once (random, Qwen2.5-0.5B's dimensions, in bf16 on the device) and each tool loads
them once; the rows are tokenized once per tool, outside the timing. Each tool runs ``--warmup`` steps that are
not counted, then ``--steps`` measured ones; every step ends synchronized (Thresher reads its loss; TRL's timing
callback synchronizes CUDA), and tokens/s is the measured steps' real (non-padding) tokens over their time.
Peak memory is CUDA's max allocated during that tool's run. MFU is computed the same way for both:
tokens/s × (6N + 12·layers·hidden·mean context) over the card's datasheet bf16 peak.

Work per step is the same for both: SFT, one packed row of ``--seq`` tokens (TRL: ``packing=True``, batch 1);
DPO, ``--pairs-per-step`` pairs (TRL: padded batch; Thresher: its default layout, unpadded on CUDA), sigmoid
loss, beta 0.1, reference log-probs precomputed (outside the timing in both). No gradient checkpointing in
either unless ``--checkpointing``.

Each tool's figures print as a ``RESULT {...}`` line as soon as it finishes (a time limit keeps what was
measured), then one table with the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from bench_train_cpu import SHAPES, _subsets, llama_config  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def make_weights(folder: Path, shape: str | None, device: str, dtype: torch.dtype) -> tuple[int, int, int]:
    """The tokenizer (BPE trained on LIMA, chat template) and a random model of ``shape`` (tiny without one),
    made on ``device`` in ``dtype`` and saved; its parameter count, layers and hidden size."""
    from bench_synth_generate import make_model
    from transformers import LlamaConfig, LlamaForCausalLM

    make_model(folder, 64, 1)  # the tokenizer and chat template (and a tiny model, replaced below)
    tiny = LlamaConfig.from_pretrained(str(folder))
    hidden, layers, heads, kv, inter, vocab = SHAPES[shape] if shape else (32, 1, 1, 1, 64, tiny.vocab_size)
    config = llama_config((hidden, layers, heads, kv, inter, max(vocab, tiny.vocab_size)), tiny.eos_token_id, tiny.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(str(folder))
    params = sum(p.numel() for p in model.parameters())
    del model
    reset_memory()
    return params, layers, hidden


def mean_context(task: str, model: Path, data: Path, max_length: int) -> float:
    """Mean attention context per trained token over the rows (a token attends to its example's prefix)."""
    from transformers import AutoTokenizer

    from thresher.train.data import encode_all, encode_pairs

    tok = AutoTokenizer.from_pretrained(str(model))
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    if task == "sft":
        lengths = [len(e.input_ids) for e in encode_all(tok, [r["messages"] for r in rows], max_length)]
    else:
        pairs = encode_pairs(tok, [(r["prompt"], r["chosen"], r["rejected"]) for r in rows], max_length)
        lengths = [p.length // 2 for p in pairs if p is not None for _ in (0, 1)]
    return sum(n * (n + 1) / 2 for n in lengths) / max(sum(lengths), 1)


def run_thresher(task: str, model: Path, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from thresher.train.config import TrainConfig

    reset_memory()
    config = TrainConfig(
        model=str(model),
        data={"train": str(data)},
        max_length=args.seq,
        packing=task == "sft",
        pack_length=args.seq,
        rows_per_micro_batch=args.pairs_per_step,
        max_steps=args.warmup + args.steps,
        device=args.device,
        precision=args.precision,
        gradient_checkpointing=args.checkpointing,
        optim={"lr": 1e-5, "warmup_ratio": 0.0, "schedule": "constant"},
        dpo={"loss": "sigmoid", "beta": 0.1, "cache_dir": str(out / "cache")},
        output_dir=str(out),
        log_every=1,
    )
    if task == "sft":
        from thresher.train.sft import run_sft

        run_sft(config)
    else:
        from thresher.train.dpo import run_dpo

        run_dpo(config)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first = records[0]
    steps = [r for r in records if "tokens_per_s" in r][args.warmup :]
    tokens = sum(r["tokens"] for r in steps)
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in steps)
    return {
        "steps": len(steps),
        "tokens": tokens,
        "seconds": seconds,
        "peak_mb": peak_mb(),
        "attention": first.get("attention"),
        "kernels": first.get("kernels"),
    }


def run_trl(task: str, model_dir: Path, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    reset_memory()
    bf16 = args.precision == "bf16"
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16 if bf16 else torch.float32).to(args.device)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    common = {
        "output_dir": str(out),
        "report_to": [],
        "use_cpu": args.device == "cpu",
        "bf16": bf16,
        "use_liger_kernel": args.device.startswith("cuda"),
        "max_length": args.seq,
        "max_steps": args.warmup + args.steps,
        "learning_rate": 1e-5,
        "lr_scheduler_type": "constant",
        "save_strategy": "no",
        "logging_steps": 1000,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": args.checkpointing,
    }
    if task == "sft":
        dataset = Dataset.from_list(
            [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows if r["messages"][-1]["role"] == "assistant"]
        )
        config = trl.SFTConfig(per_device_train_batch_size=1, completion_only_loss=True, packing=True, **common)
        trainer: Any = trl.SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tok)
    else:
        config = trl.DPOConfig(
            per_device_train_batch_size=args.pairs_per_step, loss_type=["sigmoid"], beta=0.1, precompute_ref_log_probs=True, **common
        )
        trainer = trl.DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok)

    counts: list[int] = []  # real tokens of each batch, in the order the collator made them (= step order)
    collate = trainer.data_collator

    def counting(features: Any) -> Any:
        batch = collate(features)
        masks = [v for k, v in batch.items() if k.endswith("attention_mask")]
        ids = [v for k, v in batch.items() if k.endswith("input_ids")]
        counts.append(int(sum(int(m.sum()) for m in masks)) if masks else int(sum(i.numel() for i in ids)))
        return batch

    trainer.data_collator = counting
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            sync()
            self.began = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            sync()
            times.append(time.perf_counter() - self.began)

    trainer.add_callback(Clock())
    trainer.train()
    measured = range(args.warmup, len(times))
    return {
        "steps": len(measured),
        "tokens": sum(counts[i] for i in measured),
        "seconds": sum(times[i] for i in measured),
        "peak_mb": peak_mb(),
        "liger": bool(common["use_liger_kernel"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["sft", "dpo"], required=True)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--seq", type=int, default=4096, help="tokens per packed row (SFT), longest row (DPO)")
    parser.add_argument("--pairs-per-step", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tools", default="thresher,trl")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="tiny model, short rows, fp32 on the CPU")
    args = parser.parse_args()
    if args.dry_run:
        args.shape, args.seq, args.pairs_per_step, args.warmup, args.steps = None, 256, 2, 1, 2
    args.device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    args.precision = "bf16" if args.device == "cuda" else "fp32"
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    from thresher.train.metrics import peak_flops, train_flops_per_token

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = folder / "model"
        params, layers, hidden = make_weights(model, args.shape, args.device, dtype)
        rows_needed = (args.warmup + args.steps + 2) * (args.seq // 200 if args.task == "sft" else args.pairs_per_step)
        sft, pref = _subsets(folder, min(rows_needed, 1030), rows_needed)
        data = sft if args.task == "sft" else pref
        context = mean_context(args.task, model, data, args.seq)
        flops = train_flops_per_token(params, layers, hidden, context)
        peak = peak_flops(args.device)
        name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
        print(
            f"# {args.task}: {args.shape or 'tiny'} ({params / 1e6:.0f}M parameters, hidden {hidden}, {layers} layers), {args.precision}, "
            f"{name}; seq {args.seq}; {args.warmup} warm-up + {args.steps} measured steps; setup {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        results: dict[str, dict[str, Any]] = {}
        for tool in args.tools.split(","):
            began = time.perf_counter()
            run = run_thresher if tool == "thresher" else run_trl
            result = run(args.task, model, data, folder / tool, args)
            result["tokens_per_s"] = result["tokens"] / max(result["seconds"], 1e-9)
            result["mfu"] = result["tokens_per_s"] * flops / peak if peak else None
            result["wall_s"] = round(time.perf_counter() - began, 1)
            results[tool] = result
            print("RESULT " + json.dumps({f"{args.task}_{tool}": result}), flush=True)
    print("| task | trainer | steps | tokens/s | vs TRL | peak MB | vs TRL | MFU | wall s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = results.get("trl")
    for tool, r in results.items():
        speed = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}×" if base else "–"
        memory = f"{r['peak_mb'] / base['peak_mb']:.2f}×" if base and r["peak_mb"] and base["peak_mb"] else "–"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "–"
        label = "trl + liger" if tool == "trl" and r.get("liger") else tool
        print(
            f"| {args.task} | {label} | {r['steps']} | {r['tokens_per_s']:,.0f} | {speed} | "
            f"{r['peak_mb'] or 0:,.0f} | {memory} | {mfu} | {r['wall_s']} |"
        )
    if base and "thresher" in results:
        t = results["thresher"]
        summary = {
            "speed_vs_trl": t["tokens_per_s"] / base["tokens_per_s"],
            "memory_vs_trl": (t["peak_mb"] / base["peak_mb"]) if t["peak_mb"] and base["peak_mb"] else None,
            "mfu": t["mfu"],
        }
        print("RESULT " + json.dumps({args.task: summary}), flush=True)


if __name__ == "__main__":
    main()
