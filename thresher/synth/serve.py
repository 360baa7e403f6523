"""``thresher serve MODEL``: a small OpenAI-compatible server (``/v1/chat/completions``,
``/v1/models``) over the transformers backend, for CPU machines or for testing the HTTP path
end to end. On a GPU use ``vllm serve`` instead; the client is the same."""

from __future__ import annotations

import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from pydantic import ValidationError

from thresher.generation.sampling import SamplingParams
from thresher.synth.backends.hf import TransformersBackend


def make_server(backend: TransformersBackend, host: str = "127.0.0.1", port: int = 8000, name: str | None = None) -> ThreadingHTTPServer:
    served = name or backend.model
    lock = threading.Lock()  # one generate at a time on one model

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = orjson.dumps(body)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": served, "object": "model"}]})
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                stop = body.get("stop") or ()
                params = SamplingParams(
                    n=body.get("n", 1),
                    temperature=body.get("temperature", 1.0),
                    top_p=body.get("top_p", 1.0),
                    max_tokens=body.get("max_tokens", 256),
                    stop=(stop,) if isinstance(stop, str) else tuple(stop),
                    seed=body.get("seed") or 0,
                )
                messages = body["messages"]
            except (orjson.JSONDecodeError, KeyError, ValidationError, TypeError) as e:
                self._reply(400, {"error": {"message": f"bad request: {e}"}})
                return
            try:
                with lock:
                    completions = backend.generate([messages], params)[0]
            except Exception as e:  # the client sees the cause instead of a dropped connection
                self._reply(500, {"error": {"message": f"{type(e).__name__}: {e}"}})
                return
            choices = [
                {"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
                for i, c in enumerate(completions)
            ]
            self._reply(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": served,
                    "choices": choices,
                    "usage": {"completion_tokens": sum(c.tokens for c in completions)},
                },
            )

    return ThreadingHTTPServer((host, port), Handler)
