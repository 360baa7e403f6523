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

On a GPU (the kit in benchmarks/gpu runs this): ``--device cuda --precision bf16 --liger --shape qwen2.5-0.5b
--max-length 4096 --packed-only``: a random model of Qwen2.5-0.5B's shape (vocab 151,936; no hub), TRL with
``use_liger_kernel``, Thresher packed, peak memory as CUDA's max allocated, and MFU for both from the same
FLOP count (6N + attention) over the card's datasheet bf16 peak.
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

from tests.helpers import SHARED_DATA  # noqa: E402

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
    pref_path.write_bytes(
        b"".join(
            orjson.dumps({"prompt": p, "chosen": c, "rejected": r}) + b"\n"
            for p, c, r in zip(
                pref["prompt"].to_list()[:pairs], pref["chosen"].to_list()[:pairs], pref["rejected"].to_list()[:pairs], strict=True
            )
        )
    )
    return sft_path, pref_path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


SHAPES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "qwen2.5-0.5b": (896, 24, 14, 2, 4864, 151936),
    "qwen2.5-1.5b": (1536, 28, 12, 2, 8960, 151936),
}


def _peak_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mfu(model_dir: Path, tokens_per_s: float, context: float, device: str) -> float | None:
    """Model FLOPs utilization: the same count (6N + attention) for both tools, over the datasheet bf16 peak."""
    from transformers import AutoConfig

    from thresher.train.metrics import peak_flops, train_flops_per_token

    peak = peak_flops(device)
    if peak is None:
        return None
    cfg = AutoConfig.from_pretrained(str(model_dir))
    head = cfg.hidden_size // cfg.num_attention_heads
    params = cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2) + cfg.num_hidden_layers * (
        cfg.hidden_size * head * (cfg.num_attention_heads * 2 + cfg.num_key_value_heads * 2) + 3 * cfg.hidden_size * cfg.intermediate_size
    )
    return tokens_per_s * train_flops_per_token(params, cfg.num_hidden_layers, cfg.hidden_size, context) / peak


def llama_config(dims: tuple[int, int, int, int, int, int], eos_token_id: int | None, pad_token_id: int | None):  # noqa: ANN201
    """A Llama-architecture config of ``dims`` (hidden, layers, heads, kv heads, intermediate, vocab), tied embeddings."""
    from transformers import LlamaConfig

    hidden, layers, heads, kv, inter, vocab = dims
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=None,
    )


def make_shaped_model(folder: Path, shape: str) -> Path:
    """A random Llama-architecture model with a named shape (Qwen2.5's dimensions), the LIMA BPE tokenizer."""
    import torch
    from bench_synth_generate import make_model
    from transformers import LlamaForCausalLM

    make_model(folder, 64, 1)  # the tokenizer and chat template
    torch.manual_seed(0)
    LlamaForCausalLM(llama_config(SHAPES[shape], eos_token_id=1, pad_token_id=0)).save_pretrained(str(folder))
    return folder


def _thresher(kind: str, model: Path, data: Path, out: Path, max_length: int, packing: bool, opts: dict) -> dict:
    from thresher.train.config import TrainConfig

    started = time.perf_counter()
    config = TrainConfig(
        model=str(model),
        data={"train": str(data)},
        max_length=max_length,
        packing=packing,
        # packed-only: one sequence of max_length per micro-batch (a DPO pair holds two)
        pack_length=(opts["pack_length"] * (2 if kind == "dpo" else 1))
        if opts.get("pack_length")
        else 4 * max_length,  # about as many rows per micro-batch as the padded batch of 4
        rows_per_micro_batch=4 if kind == "sft" else 2,
        epochs=1,
        device=opts["device"],
        precision=opts["precision"],
        optim={"lr": 1e-4, "warmup_ratio": 0.0, "schedule": "constant"},
        dpo={"loss": "sigmoid", "beta": 0.1, "cache_dir": str(out / "cache")},
        output_dir=str(out),
        log_every=1000,
    )
    if kind == "sft":
        from thresher.train.sft import run_sft

        result = run_sft(config)
    else:
        from thresher.train.dpo import run_dpo

        result = run_dpo(config)
    whole = time.perf_counter() - started
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    mfu = [m["mfu"] for m in metrics if "mfu" in m]
    return {
        "steps": result.steps,
        "train_s": result.seconds,
        "tokens": result.tokens,
        "whole_s": whole,
        "peak_mb": _peak_mb(),
        "mfu_logged": sum(mfu) / len(mfu) if mfu else None,
    }


def _trl(kind: str, model_dir: Path, data: Path, out: Path, max_length: int, packing: bool, opts: dict) -> dict:
    started = time.perf_counter()
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bf16 = opts["precision"] == "bf16"
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16 if bf16 else torch.float32)
    rows = _read_jsonl(data)
    common = {
        "output_dir": str(out),
        "report_to": [],
        "use_cpu": opts["device"] == "cpu",
        "bf16": bf16,
        "use_liger_kernel": bool(opts.get("liger")),
        "max_length": max_length,
        "num_train_epochs": 1,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "save_strategy": "no",
        "logging_steps": 1000,
        "dataloader_num_workers": 0,
    }
    if kind == "sft":
        dataset = Dataset.from_list(
            [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows if r["messages"][-1]["role"] == "assistant"]
        )
        args = trl.SFTConfig(per_device_train_batch_size=1 if packing else 4, completion_only_loss=True, packing=packing, **common)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    else:
        args = trl.DPOConfig(per_device_train_batch_size=2, loss_type=["sigmoid"], beta=0.1, precompute_ref_log_probs=True, **common)
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


def _mean_context(kind: str, model_dir: Path, data: Path, max_length: int) -> float:
    """Mean attention context per trained token, about half the sequence length (a causal row attends to its prefix)."""
    tokens = _count_tokens(kind, model_dir, data, max_length)
    rows = len(_read_jsonl(data))
    return tokens / max(rows, 1) / 2


def child(argv: list[str]) -> None:
    tool, kind, model, data, out, max_length, packing, opts = argv
    settings = json.loads(opts)
    if tool == "thresher":
        result = _thresher(kind, Path(model), Path(data), Path(out), int(max_length), packing == "1", settings)
    else:
        result = _trl(kind, Path(model), Path(data), Path(out), int(max_length), packing == "1", settings)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=192)
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--liger", action="store_true", help="TRL with use_liger_kernel=True")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="a named model shape instead of --hidden/--layers")
    parser.add_argument("--packed-only", action="store_true", help="SFT packed in both tools (TRL packing=True), DPO padded")
    parser.add_argument("--json", help="also write the table's rows here")
    args = parser.parse_args()
    import torch
    from bench_synth_generate import make_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_shaped_model(folder / "model", args.shape) if args.shape else make_model(folder / "model", args.hidden, args.layers)
        sft, pref = _subsets(folder, args.rows, args.pairs)
        print(f"# {platform.machine()} {platform.processor() or ''} threads={torch.get_num_threads()} torch={torch.__version__}")
        print(
            f"# model hidden {args.hidden}, {args.layers} layers; SFT {args.rows} LIMA rows, DPO {args.pairs} HH-RLHF pairs, "
            f"max_length {args.max_length}"
        )
        runs = [
            ("sft", "trl", sft, "0"),
            ("sft", "thresher", sft, "0"),
            ("sft", "thresher", sft, "1"),
            ("dpo", "trl", pref, "0"),
            ("dpo", "thresher", pref, "0"),
            ("dpo", "thresher", pref, "1"),
        ]
        if args.packed_only:
            runs = [("sft", "trl", sft, "1"), ("sft", "thresher", sft, "1"), ("dpo", "trl", pref, "0"), ("dpo", "thresher", pref, "1")]
        opts = json.dumps(
            {
                "device": args.device,
                "precision": args.precision,
                "liger": args.liger,
                "pack_length": args.max_length if args.packed_only else None,
            }
        )
        table = []
        for kind, tool, data, packing in runs:
            out = folder / f"{kind}-{tool}-{packing}"
            done = subprocess.run(
                [sys.executable, __file__, "--child", tool, kind, str(model), str(data), str(out), str(args.max_length), packing, opts],
                capture_output=True,
                text=True,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{tool} {kind} failed:\n{done.stderr[-4000:]}")
            result = json.loads(line[7:])
            tokens = _count_tokens(kind, model, data, args.max_length)
            if "tokens" in result and result["tokens"] != tokens:
                raise SystemExit(f"{tool} {kind}: trained on {result['tokens']} tokens, expected {tokens}")
            mfu = _mfu(model, tokens / result["train_s"], _mean_context(kind, model, data, args.max_length), args.device)
            name = tool + (" + liger" if tool == "trl" and args.liger else "") + (" packed" if packing == "1" else " padded")
            table.append(
                (kind, name, result["steps"], result["train_s"], tokens / result["train_s"], result["peak_mb"], result["whole_s"], mfu)
            )
        memory = "peak CUDA MB" if args.device.startswith("cuda") else "peak RSS MB"
        print(f"| task | trainer | steps | train s | tokens/s | vs TRL | {memory} | vs TRL | whole run s | MFU |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        rows = []
        for kind, name, steps, seconds, rate, peak, whole, mfu in table:
            base = next(t for t in table if t[0] == kind and t[1].startswith("trl"))
            shown = f"{100 * mfu:.1f}%" if mfu is not None else "–"
            print(
                f"| {kind} | {name} | {steps} | {seconds:.1f} | {rate:,.0f} | {rate / base[4]:.2f}× | {peak:,.0f} | "
                f"{peak / base[5]:.2f}× | {whole:.1f} | {shown} |"
            )
            rows.append(
                {
                    "task": kind,
                    "trainer": name,
                    "tokens_per_s": rate,
                    "vs_trl_speed": rate / base[4],
                    "peak_mb": peak,
                    "vs_trl_memory": peak / base[5],
                    "mfu": mfu,
                }
            )
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
