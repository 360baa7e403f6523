"""Generation throughput of Thresher's transformers backend against a plain ``generate`` loop at the
same batch size, on a small random Llama made here (a BPE tokenizer trained on LIMA, a chat template).

Both sides render the same chat prompts, left-pad, sample n completions per prompt with the same
settings and decode; the plain loop is what a user would write with transformers alone. Thresher
adds seeding per batch, stop-string handling, completion accounting, and (through
``generate_cached``) the request cache: the cold cached run writes every completion to SQLite, the
warm one reads them all back. With a GPU session the vLLM backend is timed on the same prompts.

Run: python benchmarks/bench_synth_generate.py [--prompts 64 --n 4 --batch 8 --max-tokens 64 --hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import SHARED_DATA  # noqa: E402
from thresher.generation.sampling import SamplingParams  # noqa: E402
from thresher.synth.backends.hf import TransformersBackend  # noqa: E402
from thresher.synth.cache import RequestCache  # noqa: E402
from thresher.synth.generate import generate_cached  # noqa: E402
from thresher.tiny import make_tiny_chat_model  # noqa: E402


def make_model(folder: Path, hidden: int, layers: int) -> Path:
    texts = [r["instruction"] + "\n" + r["output"] for r in json.loads((SHARED_DATA / "sft/lima.json").read_text())]
    heads = max(1, hidden // 64)
    return make_tiny_chat_model(
        texts,
        folder,
        hidden=hidden,
        layers=layers,
        vocab=8000,
        intermediate=hidden * 4,
        heads=heads,
        kv_heads=heads,
        max_positions=2048,
        specials=["[UNK]", "<|end|>", "<|user|>", "<|assistant|>"],
    )


def plain_loop(model_dir: Path, conversations: list, params: SamplingParams, batch: int) -> tuple[float, int]:
    """What a user writes with transformers alone: template, tokenize, generate, decode, per batch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    torch.manual_seed(0)
    began = time.perf_counter()
    tokens = 0
    for lo in range(0, len(prompts), batch):
        enc = tok(prompts[lo : lo + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=0,
                max_new_tokens=params.max_tokens,
                num_return_sequences=params.n,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        tok.batch_decode(new, skip_special_tokens=True)
        tokens += int((new != tok.pad_token_id).sum())
    return time.perf_counter() - began, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vllm", action="store_true", help="also time the vLLM backend (GPU)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    questions = [json.loads(line)["question"] for line in (SHARED_DATA / "gsm8k/test.jsonl").read_text().splitlines()[: args.prompts]]
    conversations = [[{"role": "user", "content": q}] for q in questions]
    params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model(Path(tmp) / "model", args.hidden, args.layers)
        backend = TransformersBackend(str(model_dir), batch_size=args.batch, device="cpu")
        backend.generate(conversations[: args.batch], params)  # warm-up, both sides share it
        print(
            f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
            f"{args.prompts} GSM8K prompts × n={args.n}, batch {args.batch}, {args.max_tokens} new tokens, "
            f"Llama hidden {args.hidden} × {args.layers} layers"
        )
        best: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeats):
            for name in ("plain generate loop", "thresher backend", "thresher cached (cold)"):
                if name == "plain generate loop":
                    seconds, tokens = plain_loop(model_dir, conversations, params, args.batch)
                elif name == "thresher backend":
                    began = time.perf_counter()
                    out = backend.generate(conversations, params)
                    seconds, tokens = time.perf_counter() - began, sum(c.tokens for o in out for c in o)
                else:
                    cache = RequestCache(Path(tmp) / f"cache-{time.time_ns()}.sqlite")
                    began = time.perf_counter()
                    _, stats = generate_cached(backend, conversations, params, cache, args.batch, quiet=True)
                    seconds, tokens = time.perf_counter() - began, stats.tokens
                    began = time.perf_counter()
                    _, warm = generate_cached(backend, conversations, params, cache, args.batch, quiet=True)
                    warm_s = time.perf_counter() - began
                    assert warm.generated == 0
                    cache.close()
                    best[name] = min(best.get(name, (1e9, 0)), (seconds, tokens))
                    best["thresher cached (warm: all reused)"] = min(best.get("thresher cached (warm: all reused)", (1e9, 0)), (warm_s, 0))
                    continue
                best[name] = min(best.get(name, (1e9, 0)), (seconds, tokens))
        base = best["plain generate loop"][1] / best["plain generate loop"][0]
        print(f"{'method':38s} {'seconds':>8s} {'tokens':>8s} {'tokens/s':>9s} {'vs plain':>9s}")
        for name, (seconds, tokens) in best.items():
            if not tokens:
                print(f"{name:38s} {seconds:8.3f} {'-':>8s} {'-':>9s} {'-':>9s}")
                continue
            rate = tokens / seconds
            print(f"{name:38s} {seconds:8.2f} {tokens:8d} {rate:9.0f} {rate / base:8.2f}×")
        if args.vllm:
            from thresher.synth.backends.vllm import VLLMBackend

            engine = VLLMBackend(str(model_dir))
            engine.generate(conversations[:8], params)
            began = time.perf_counter()
            out = engine.generate(conversations, params)
            seconds = time.perf_counter() - began
            tokens = sum(c.tokens for o in out for c in o)
            print(f"{'vllm backend':38s} {seconds:8.2f} {tokens:8d} {tokens / seconds:9.0f} {tokens / seconds / base:8.2f}×")


if __name__ == "__main__":
    main()
