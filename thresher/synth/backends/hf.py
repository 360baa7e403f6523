"""The transformers backend: the chat layer (``ChatBackend``) on ``generation.TransformersEngine`` — batched,
left-padded ``generate`` on the CPU (or a GPU), ``n`` samples per prompt through ``num_return_sequences``."""

from __future__ import annotations

from typing import Any

from thresher.generation.engines import TransformersEngine
from thresher.models import local_model
from thresher.synth.backends.base import ChatBackend


class TransformersBackend(ChatBackend):
    def __init__(self, model: str, tokenizer: str | None = None, batch_size: int = 8, device: str = "auto", dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from thresher.device import pick_compute_path

        self.device = pick_compute_path(device, announce=False).device
        model = local_model(model)
        tok: Any = AutoTokenizer.from_pretrained(local_model(tokenizer, "tokenizer") if tokenizer else model)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        torch_dtype = {
            "auto": torch.bfloat16 if self.device == "cuda" else torch.float32,
            "float32": torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
        }[dtype]
        self.lm: Any = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()  # type: ignore[arg-type]
        engine = TransformersEngine(self.lm, tok, tok.pad_token_id, batch_prompts=batch_size, logprobs=False)
        super().__init__(model, engine, tok, batch_size)

    def close(self) -> None:
        super().close()
        self.lm = None
