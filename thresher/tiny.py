"""Tiny chat models made locally (no hub): a BPE tokenizer trained on the given texts, a chat template, and a
random Llama causal LM (or a one-output reward model). For the demo, tests and benchmarks.

Also a task a tiny model learns in seconds, for showing RLVR at work: multi-digit addition with a
one-character-per-token tokenizer (``make_addition_model``) and disjoint SFT, RLVR and held-out problem sets
(``write_addition_data``; the answer is the reply's last number, checked by the ``gsm8k`` verifier).

Run: python -m thresher.tiny OUT_DIR [--texts LIMA.json]  (writes OUT_DIR/policy, OUT_DIR/reward, and
OUT_DIR/adder with its data in OUT_DIR/addition/{sft,rlvr,held_out}.jsonl)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import orjson

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["[UNK]", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]


def make_tiny_chat_model(
    texts: list[str],
    folder: Path,
    hidden: int = 32,
    layers: int = 2,
    vocab: int = 1000,
    intermediate: int | None = None,
    heads: int = 4,
    kv_heads: int = 2,
    max_positions: int = 512,
    specials: list[str] | None = None,
    sequence_classifier: bool = False,
) -> Path:
    """A random Llama (seed 0) with a chat-templated byte-level BPE tokenizer trained on ``texts``, saved to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials or SPECIALS, show_progress=False))
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|end|>", pad_token="[UNK]")
    hf.chat_template = CHAT_TEMPLATE
    return save_random_llama(
        folder,
        hf,
        seed=0,
        sequence_classifier=sequence_classifier,
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        num_labels=1,
    )


def save_random_llama(folder: Path, tokenizer: Any, seed: int, sequence_classifier: bool = False, **sizes: Any) -> Path:
    """A Llama with random weights (``seed``) of the given ``LlamaConfig`` sizes, its end and padding tokens from
    ``tokenizer``, saved with the tokenizer to ``folder``; a one-output reward model with ``sequence_classifier``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **sizes)
    model = LlamaForSequenceClassification(config) if sequence_classifier else LlamaForCausalLM(config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def lima_texts(path: Path, rows: int | None = None) -> list[str]:
    """Instruction and output of the LIMA rows in ``path`` (the original JSON), as tokenizer training text."""
    return [r["instruction"] + "\n" + r["output"] for r in json.loads(path.read_text())[:rows]]


def make_addition_model(folder: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random Llama with a one-character-per-token tokenizer, saved as a transformers folder."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list("0123456789+= ")
    vocab = {token: i for i, token in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="<|end|>", pad_token="[UNK]", additional_special_tokens=SPECIALS[2:]
    )
    hf.chat_template = CHAT_TEMPLATE
    return save_random_llama(
        folder,
        hf,
        seed=seed,
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )


def _problems(count: int, digits: int, rng: random.Random, seen: set[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while len(out) < count:
        a, b = rng.randrange(10**digits), rng.randrange(10**digits)
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def write_addition_data(folder: Path, sft: int, rlvr: int, held_out: int, digits: int = 3, seed: int = 0) -> dict[str, Path]:
    """Disjoint problem sets: SFT chats, RLVR training prompts and held-out RLVR prompts (JSONL)."""
    rng, seen = random.Random(seed), set[tuple[int, int]]()
    folder.mkdir(parents=True, exist_ok=True)

    def chat(a: int, b: int) -> dict:
        return {"messages": [{"role": "user", "content": f"{a}+{b}"}, {"role": "assistant", "content": str(a + b)}]}

    def prompt(a: int, b: int) -> dict:
        return {"messages": [{"role": "user", "content": f"{a}+{b}"}], "ground_truth": str(a + b), "verifier": "gsm8k"}

    return {
        "sft": _write(folder / "sft.jsonl", [chat(a, b) for a, b in _problems(sft, digits, rng, seen)]),
        "rlvr": _write(folder / "rlvr.jsonl", [prompt(a, b) for a, b in _problems(rlvr, digits, rng, seen)]),
        "held_out": _write(folder / "held_out.jsonl", [prompt(a, b) for a, b in _problems(held_out, digits, rng, seen)]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--texts", type=Path, default=Path("../shared/data/sft/lima.json"), help="LIMA JSON to train the tokenizer on")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    from thresher.progress import silence_third_party

    silence_third_party()  # no "Writing model shards" bars from transformers
    texts = lima_texts(args.texts, 400)
    for name, classifier in (("policy", False), ("reward", True)):
        if not (args.out / name / "config.json").is_file():
            make_tiny_chat_model(texts, args.out / name, hidden=args.hidden, layers=args.layers, sequence_classifier=classifier)
    if not (args.out / "adder" / "config.json").is_file():
        make_addition_model(args.out / "adder", hidden=128, layers=3)
    write_addition_data(args.out / "addition", sft=3000, rlvr=2000, held_out=200, digits=2)
    print(f"tiny models in {args.out}/policy, {args.out}/reward and {args.out}/adder (addition data: {args.out}/addition)")


if __name__ == "__main__":
    main()
