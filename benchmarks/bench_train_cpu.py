"""SFT and DPO throughput and peak memory: Thresher's trainer against TRL's SFTTrainer and DPOTrainer
on the CPU, same model, same rows, same settings, each run in its own process (clean peak RSS).

Model: a random Llama made here (BPE tokenizer trained on LIMA, a chat template). SFT: LIMA rows as
user/assistant chats (TRL: prompt/completion rows, completion-only loss: the same targets, as
tests/test_train_trl.py checks). DPO: HH-RLHF harmless pairs, ``sigmoid`` loss, beta 0.1. Both
tools: batch 4 rows padded (Thresher also packed), AdamW, constant lr, fp32, one epoch.
Throughput is the rows' real (non-padding) tokens over the training time (TRL's ``train_runtime``;
Thresher's loop: both leave out setup and the DPO reference pass, which the "whole run" column,
from the first import to the end, includes).

Run: python benchmarks/bench_train_cpu.py [--rows 192 --pairs 96 --hidden 256 --layers 4 --max-length 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from conftest import SHARED_DATA  # noqa: E402

LIMA = SHARED_DATA / "sft/lima.json"
HH = SHARED_DATA / "preference/hh-rlhf_harmless-base_test.jsonl.gz"


def _subsets(folder: Path, rows: int, pairs: int) -> tuple[Path, Path]:
    """The first ``rows`` LIMA chats and ``pairs`` HH-RLHF pairs as canonical JSONL (both tools read the same rows)."""
    import orjson

    from thresher.records import Kind
    from thresher.stats import load_canonical

    sft, _, _ = load_canonical(str(LIMA), Kind.SFT)
    pref, _, _ = load_canonical(str(HH), Kind.PREFERENCE)
    sft_path, pref_path = folder / "sft.jsonl", folder / "pref.jsonl"
    sft_path.write_bytes(b"".join(orjson.dumps({"messages": m}) + b"\n" for m in sft["messages"].to_list()[:rows]))
    pref_path.write_bytes(b"".join(orjson.dumps({"prompt": p, "chosen": c, "rejected": r}) + b"\n" for p, c, r in
                                   zip(pref["prompt"].to_list()[:pairs], pref["chosen"].to_list()[:pairs],
                                       pref["rejected"].to_list()[:pairs], strict=True)))
    return sft_path, pref_path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _thresher(kind: str, model: Path, data: Path, out: Path, max_length: int, packing: bool) -> dict:
    from thresher.train.config import TrainConfig

    started = time.perf_counter()
    config = TrainConfig(model=str(model), data={"train": str(data)}, max_length=max_length, packing=packing,
                         pack_length=4 * max_length,  # about as many rows per micro-batch as the padded batch of 4
                         rows_per_micro_batch=4 if kind == "sft" else 2, epochs=1, device="cpu", precision="fp32",
                         optim={"lr": 1e-4, "warmup_ratio": 0.0, "schedule": "constant"},
                         dpo={"loss": "sigmoid", "beta": 0.1, "cache_dir": str(out / "cache")}, output_dir=str(out),
                         log_every=1000)
    if kind == "sft":
        from thresher.train.sft import run_sft

        result = run_sft(config)
    else:
        from thresher.train.dpo import run_dpo

        result = run_dpo(config)
    whole = time.perf_counter() - started
    return {"steps": result.steps, "train_s": result.seconds, "tokens": result.tokens, "whole_s": whole, "peak_mb": _peak_mb()}


def _trl(kind: str, model_dir: Path, data: Path, out: Path, max_length: int) -> dict:
    started = time.perf_counter()
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    rows = _read_jsonl(data)
    common = {"output_dir": str(out), "report_to": [], "use_cpu": True, "bf16": False, "max_length": max_length,
              "num_train_epochs": 1, "learning_rate": 1e-4, "lr_scheduler_type": "constant", "save_strategy": "no",
              "logging_steps": 1000, "dataloader_num_workers": 0}
    if kind == "sft":
        dataset = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows
                                     if r["messages"][-1]["role"] == "assistant"])
        args = trl.SFTConfig(per_device_train_batch_size=4, completion_only_loss=True, **common)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    else:
        args = trl.DPOConfig(per_device_train_batch_size=2, loss_type=["sigmoid"], beta=0.1, precompute_ref_log_probs=True,
                             **common)
        trainer = trl.DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    output = trainer.train()
    whole = time.perf_counter() - started
    return {"steps": output.global_step, "train_s": output.metrics["train_runtime"], "whole_s": whole, "peak_mb": _peak_mb()}


def _count_tokens(kind: str, model_dir: Path, data: Path, max_length: int) -> int:
    """Real tokens in an epoch: the rows as both tools encode them (same targets; TRL keeps the same ids)."""
    from transformers import AutoTokenizer

    from thresher.train.data import encode_all, encode_pairs

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    rows = _read_jsonl(data)
    if kind == "sft":
        return sum(len(e.input_ids) for e in encode_all(tok, [r["messages"] for r in rows], max_length))
    pairs = encode_pairs(tok, [(r["prompt"], r["chosen"], r["rejected"]) for r in rows], max_length)
    return sum(p.length for p in pairs if p is not None)


def child(argv: list[str]) -> None:
    tool, kind, model, data, out, max_length, packing = argv
    if tool == "thresher":
        result = _thresher(kind, Path(model), Path(data), Path(out), int(max_length), packing == "1")
    else:
        result = _trl(kind, Path(model), Path(data), Path(out), int(max_length))
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=192)
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    from bench_synth_generate import make_model

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_model(folder / "model", args.hidden, args.layers)
        sft, pref = _subsets(folder, args.rows, args.pairs)
        print(f"# {platform.machine()} {platform.processor() or ''} threads={torch.get_num_threads()} torch={torch.__version__}")
        print(f"# model hidden {args.hidden}, {args.layers} layers; SFT {args.rows} LIMA rows, DPO {args.pairs} HH-RLHF pairs, "
              f"max_length {args.max_length}")
        runs = [("sft", "trl", sft, "0"), ("sft", "thresher", sft, "0"), ("sft", "thresher", sft, "1"),
                ("dpo", "trl", pref, "0"), ("dpo", "thresher", pref, "0"), ("dpo", "thresher", pref, "1")]
        table = []
        for kind, tool, data, packing in runs:
            out = folder / f"{kind}-{tool}-{packing}"
            done = subprocess.run([sys.executable, __file__, "--child", tool, kind, str(model), str(data), str(out),
                                   str(args.max_length), packing], capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{tool} {kind} failed:\n{done.stderr[-4000:]}")
            result = json.loads(line[7:])
            tokens = _count_tokens(kind, model, data, args.max_length)
            if "tokens" in result and result["tokens"] != tokens:
                raise SystemExit(f"{tool} {kind}: trained on {result['tokens']} tokens, expected {tokens}")
            table.append((kind, tool + (" packed" if packing == "1" else " padded"), result["steps"], result["train_s"],
                          tokens / result["train_s"], result["peak_mb"], result["whole_s"]))
        print("| task | trainer | steps | train s | tokens/s | vs TRL | peak RSS MB | vs TRL | whole run s |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind, name, steps, seconds, rate, peak, whole in table:
            base = next(t for t in table if t[0] == kind and t[1].startswith("trl"))
            print(f"| {kind} | {name} | {steps} | {seconds:.1f} | {rate:,.0f} | {rate / base[4]:.2f}× | {peak:,.0f} | "
                  f"{peak / base[5]:.2f}× | {whole:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
