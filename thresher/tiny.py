"""Tiny chat models made locally (no hub): a BPE tokenizer trained on the given texts, a chat template, and a
random Llama causal LM (or a one-output reward model). For the demo, tests and benchmarks.

Run: python -m thresher.tiny OUT_DIR [--texts LIMA.json]  (writes OUT_DIR/policy and OUT_DIR/reward)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials or SPECIALS, show_progress=False))
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|end|>", pad_token="[UNK]")
    hf.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(  # type: ignore[call-arg]  # num_labels goes to PretrainedConfig's kwargs
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        eos_token_id=hf.eos_token_id,
        pad_token_id=hf.pad_token_id,
        bos_token_id=None,
        num_labels=1,
    )
    model = LlamaForSequenceClassification(config) if sequence_classifier else LlamaForCausalLM(config)
    model.save_pretrained(str(folder))
    hf.save_pretrained(str(folder))
    return folder


def lima_texts(path: Path, rows: int | None = None) -> list[str]:
    """Instruction and output of the LIMA rows in ``path`` (the original JSON), as tokenizer training text."""
    return [r["instruction"] + "\n" + r["output"] for r in json.loads(path.read_text())[:rows]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--texts", type=Path, default=Path("../shared/data/sft/lima.json"), help="LIMA JSON to train the tokenizer on")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    texts = lima_texts(args.texts, 400)
    for name, classifier in (("policy", False), ("reward", True)):
        if not (args.out / name / "config.json").is_file():
            make_tiny_chat_model(texts, args.out / name, hidden=args.hidden, layers=args.layers, sequence_classifier=classifier)
    print(f"tiny models in {args.out}/policy and {args.out}/reward")


if __name__ == "__main__":
    main()
