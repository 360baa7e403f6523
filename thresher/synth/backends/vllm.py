"""The vLLM offline engine (GPU, tensor parallel). Imported only when asked for: the CPU path never loads vLLM."""

from __future__ import annotations

from typing import Any

from thresher.errors import ExternalError
from thresher.synth.backends.base import Completion, Conversation, render_chat
from thresher.synth.sampling import SamplingParams


class VLLMBackend:
    def __init__(
        self,
        model: str,
        tokenizer: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise ExternalError("the vllm backend needs vLLM: pip install 'thresher[gpu]'") from e
        self.model = model
        options: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
        }
        if tokenizer:
            options["tokenizer"] = tokenizer
        if max_model_len:
            options["max_model_len"] = max_model_len
        self.llm: Any = LLM(model=model, **options)
        self.tokenizer: Any = self.llm.get_tokenizer()

    def generate(self, conversations: list[Conversation], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VSampling

        sampling = VSampling(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
        )
        # Token ids, not text: the rendered template already holds any BOS, which vLLM would add again.
        prompts = [
            {"prompt_token_ids": self.tokenizer(render_chat(self.tokenizer, c), add_special_tokens=False)["input_ids"]}
            for c in conversations
        ]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        return [
            [Completion(o.text, "length" if o.finish_reason == "length" else "stop", len(o.token_ids)) for o in out.outputs]
            for out in outputs
        ]

    def close(self) -> None:
        self.llm = None
