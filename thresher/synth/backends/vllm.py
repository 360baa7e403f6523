"""The vLLM backend (GPU, tensor parallel): the chat layer (``ChatBackend``) on ``generation.VLLMEngine``.
Imported only when asked for: the CPU path never loads vLLM."""

from __future__ import annotations

from thresher.generation.engines import VLLMEngine
from thresher.models import local_model
from thresher.synth.backends.base import ChatBackend


class VLLMBackend(ChatBackend):
    def __init__(
        self,
        model: str,
        tokenizer: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
    ) -> None:
        options = {"tensor_parallel_size": tensor_parallel_size, "gpu_memory_utilization": gpu_memory_utilization, "dtype": dtype}
        model = local_model(model)
        engine = VLLMEngine.offline(
            model,
            local_model(tokenizer, "tokenizer") if tokenizer else None,
            **options,
            **({"max_model_len": max_model_len} if max_model_len else {}),
        )
        # token ids, not text, go to vLLM: the rendered template already holds any BOS, which vLLM would add again
        super().__init__(model, engine, engine.tokenizer)
