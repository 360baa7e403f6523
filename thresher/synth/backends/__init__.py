"""Generation backends behind one interface: ``make_backend(spec)``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from thresher.errors import InputError
from thresher.synth.backends.base import Backend, Completion, Conversation, render_chat


class BackendSpec(BaseModel):
    """Which engine serves a model: transformers (CPU or GPU), vllm (GPU) or openai (an HTTP endpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # transformers (CPU or GPU), vllm (GPU) or openai (an HTTP endpoint)
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    # a local folder or hub id (openai: the served model's name)
    model: str
    # a tokenizer other than the model's
    tokenizer: str | None = None
    url: str | None = None  # openai: the server's base URL
    batch_size: int = 8  # transformers: prompts per generate call
    concurrency: int = 8  # openai: requests in flight
    tensor_parallel_size: int = 1  # vllm
    # auto (CUDA when present), cpu or cuda
    device: str = "auto"

    @model_validator(mode="after")
    def _url(self) -> BackendSpec:
        if self.backend == "openai" and not self.url:
            raise InputError("the openai backend needs 'url' (e.g. http://localhost:8000/v1)")
        return self


def make_backend(spec: BackendSpec, **paths: Any) -> Backend:
    """The backend for ``spec``; ``paths`` may replace ``model``/``tokenizer`` with resolved local paths."""
    model = paths.get("model", spec.model)
    tokenizer = paths.get("tokenizer", spec.tokenizer)
    if spec.backend == "transformers":
        from thresher.synth.backends.hf import TransformersBackend

        return TransformersBackend(model, tokenizer, batch_size=spec.batch_size, device=spec.device)
    if spec.backend == "vllm":
        from thresher.synth.backends.vllm import VLLMBackend

        return VLLMBackend(model, tokenizer, tensor_parallel_size=spec.tensor_parallel_size)
    from thresher.synth.backends.http import OpenAIBackend

    assert spec.url is not None
    return OpenAIBackend(spec.model, spec.url, concurrency=spec.concurrency)


__all__ = ["Backend", "BackendSpec", "Completion", "Conversation", "make_backend", "render_chat"]
