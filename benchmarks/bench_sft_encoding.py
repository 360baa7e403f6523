"""SFT encoding (chat template + assistant-only labels) in chats/s: one chat at a time the way Thresher did it
before (render, tokenize, label each token in Python), Thresher's batched encoder without its cache, the first
run through the on-disk cache (encodes and writes), and a second run (reads). Real chats (LIMA, Alpaca,
CodeAlpaca, GSM8K as user/assistant turns); two tokenizers: a 30k WordPiece vocabulary (all-MiniLM-L6-v2's,
given the tiny chat template) and the tests' 2k BPE (many more tokens per chat).

    python benchmarks/bench_sft_encoding.py [--repeat 4]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from thresher.tiny import CHAT_TEMPLATE
from thresher.train.chat import IGNORE, encode_chats, target_spans
from thresher.train.encoded import EncodingCache

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def chats(repeat: int) -> list[list[dict[str, str]]]:
    out = []
    for name in ("lima.json", "alpaca_en_demo.json", "code_alpaca_2k.json"):
        for r in json.loads((DATA / "sft" / name).read_text()):
            prompt = r["instruction"] + (f"\n{r['input']}" if r.get("input") else "")
            out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}])
    for line in (DATA / "gsm8k" / "train.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append([{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}])
    # distinct copies (a marker per repeat), so the cache cannot fold repeats into one entry
    return [[{**m, "content": f"{m['content']} ({k})"} if i == 0 else m for i, m in enumerate(c)] for k in range(repeat) for c in out]


def one_at_a_time(tokenizer: Any, items: list[list[dict[str, str]]], max_length: int) -> int:
    tokens = 0
    for messages in items:
        text, spans = target_spans(tokenizer, messages)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        labels = [
            t if i and any(lo <= s < hi for lo, hi in spans) else IGNORE
            for i, (t, (s, _)) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True))
        ]
        tokens += len(labels[:max_length])
    return tokens


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from thresher.models import resolve_embedding_model
    from thresher.tiny import make_tiny_chat_model

    items = chats(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        wordpiece = AutoTokenizer.from_pretrained(resolve_embedding_model())
        wordpiece.chat_template = CHAT_TEMPLATE
        make_tiny_chat_model([m["content"] for c in items[:2000] for m in c], Path(tmp) / "tiny", vocab=2000)
        tokenizers = {"WordPiece 30k": wordpiece, "BPE 2k (tests')": AutoTokenizer.from_pretrained(Path(tmp) / "tiny")}
        print(f"{len(items)} chats; TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}; {os.cpu_count()} cores")
        print("| tokenizer | tokens/chat | one at a time (chats/s) | batched, no cache | cold, cache written | warm |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, tok in tokenizers.items():
            plain_s, tokens = timed(lambda tok=tok: one_at_a_time(tok, items, args.max_length))
            batched_s, _ = timed(lambda tok=tok: encode_chats(tok, items, args.max_length))
            folder = Path(tmp) / f"cache-{len(name)}"
            cold = EncodingCache(tok, folder)
            cold_s, _ = timed(lambda cold=cold: cold.encode(items, args.max_length))
            warm = EncodingCache(tok, folder)
            warm_s, _ = timed(lambda warm=warm: warm.encode(items, args.max_length))
            assert warm.encoded == 0
            rate = [f"{len(items) / s:,.0f}" for s in (plain_s, batched_s, cold_s, warm_s)]
            print(f"| {name} | {tokens / len(items):.0f} | {' | '.join(rate)} |")


if __name__ == "__main__":
    main()
