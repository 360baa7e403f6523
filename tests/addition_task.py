"""A small verifiable task for the RLVR tests: multi-digit addition with the answer as the reply's last number.

A character-level tokenizer (digits, ``+``, the chat specials) and a tiny random Llama are created locally; the
data are SFT chats (prompt and correct sum) and RLVR rows (prompt, ground truth, verifier ``gsm8k``).
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

SPECIALS = ["[UNK]", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_addition_model(folder: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random Llama with a one-character-per-token tokenizer, saved as a transformers folder."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = list("0123456789+= ")
    vocab = {token: i for i, token in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="<|end|>", pad_token="[UNK]", additional_special_tokens=SPECIALS[2:]
    )
    hf.chat_template = TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        eos_token_id=hf.eos_token_id,
        pad_token_id=hf.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    hf.save_pretrained(str(folder))
    return folder


def _problems(count: int, digits: int, rng: random.Random, seen: set[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
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
    rng, seen = random.Random(seed), set()
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
