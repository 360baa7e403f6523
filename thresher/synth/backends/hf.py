"""The transformers backend: batched ``generate`` on the CPU (or a GPU), left-padded, ``n`` samples
per prompt through ``num_return_sequences``."""

from __future__ import annotations

import hashlib
from typing import Any

from thresher.hub import require_hub
from thresher.synth.backends.base import Completion, Conversation, render_chat
from thresher.synth.sampling import SamplingParams, cut_at_stop


class TransformersBackend:
    def __init__(self, model: str, tokenizer: str | None = None, batch_size: int = 8, device: str = "auto", dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from thresher.device import pick_compute_path

        self.model = model
        self.batch_size = batch_size
        self.device = pick_compute_path(device, announce=False).device
        require_hub(model, "model")
        self.tokenizer: Any = AutoTokenizer.from_pretrained(tokenizer or model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        torch_dtype = {
            "auto": torch.bfloat16 if self.device == "cuda" else torch.float32,
            "float32": torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
        }[dtype]
        self.lm: Any = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()  # type: ignore[arg-type]
        self.eos_ids = {i for i in [self.tokenizer.eos_token_id] if i is not None}

    def prompts(self, conversations: list[Conversation]) -> list[str]:
        return [render_chat(self.tokenizer, c) for c in conversations]

    def generate(self, conversations: list[Conversation], params: SamplingParams) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        texts = self.prompts(conversations)
        for lo in range(0, len(texts), self.batch_size):
            out += self._batch(texts[lo : lo + self.batch_size], params)
        return out

    def generation_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        sample = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": sample,
            "num_return_sequences": params.n,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if self.tokenizer.eos_token_id is not None:
            kwargs["eos_token_id"] = self.tokenizer.eos_token_id
        return kwargs

    def _batch(self, texts: list[str], params: SamplingParams) -> list[list[Completion]]:
        import torch

        if params.temperature == 0 and params.n > 1:  # greedy: n identical samples, as vLLM gives
            return [row * params.n for row in self._batch(texts, params.model_copy(update={"n": 1}))]

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        # Reproducible for a given seed and batch, and different for different prompts.
        digest = hashlib.blake2b("\x00".join(texts).encode(), digest_size=8, key=str(params.seed).encode()[:64]).digest()
        torch.manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        with torch.no_grad():
            stops = {"stop_strings": list(params.stop), "tokenizer": self.tokenizer} if params.stop else {}
            generated = self.lm.generate(**enc, **self.generation_kwargs(params), **stops)
        new = generated[:, enc["input_ids"].shape[1] :].cpu()
        results: list[list[Completion]] = [[] for _ in texts]
        for row, ids in enumerate(new.tolist()):
            stopped = False
            for cut, token in enumerate(ids):
                if token in self.eos_ids:
                    ids, stopped = ids[:cut], True
                    break
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            text, hit = cut_at_stop(text, params.stop)
            finish = "stop" if stopped or hit else "length"
            results[row // params.n].append(Completion(text, finish, len(ids)))
        return results

    def close(self) -> None:
        self.lm = None
