"""An OpenAI-compatible HTTP endpoint (``vllm serve``, ``thresher serve``, or any such server):
``/v1/chat/completions`` requests sent concurrently, retried on connection errors and 5xx/429."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from thresher.errors import ExternalError
from thresher.generation.sampling import SamplingParams
from thresher.synth.backends.base import Completion, Conversation


class EndpointError(ExternalError):
    """The server refused a request or could not be reached after the retries."""


class OpenAIBackend:
    def __init__(
        self, model: str, url: str, api_key: str | None = None, concurrency: int = 8, retries: int = 4, timeout_s: float = 300.0
    ) -> None:
        self.model = model
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY", "")
        self.concurrency = concurrency
        self.retries = retries
        self.timeout_s = timeout_s

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(f"{self.url}/chat/completions", data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return orjson.loads(response.read())
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode(errors="replace")
                if e.code < 500 and e.code != 429:
                    raise EndpointError(f"{self.url}: HTTP {e.code}: {detail}") from None
                last = f"HTTP {e.code}: {detail}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                last = str(getattr(e, "reason", e))
            time.sleep(min(8.0, 0.5 * 2**attempt))
        raise EndpointError(f"{self.url}: no answer after {self.retries + 1} tries ({last})")

    def _one(self, conversation: Conversation, params: SamplingParams) -> list[Completion]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": conversation,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        reply = self._post(body)
        choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != params.n:
            raise EndpointError(f"{self.url}: asked for {params.n} choices, got {len(choices)}")
        usage = reply.get("usage") or {}
        per_choice = int(usage.get("completion_tokens", 0)) // max(1, params.n)
        return [Completion(c["message"]["content"] or "", c.get("finish_reason") or "stop", per_choice) for c in choices]

    def generate(self, conversations: list[Conversation], params: SamplingParams) -> list[list[Completion]]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, params), conversations))

    def close(self) -> None:
        pass
