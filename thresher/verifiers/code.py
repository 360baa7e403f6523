"""The ``code`` verifier: run a candidate program against its tests in the sandbox.

The ground truth is JSON: ``{"tests": "...", "entry_point": "f", "prefix": "..."}`` (only ``tests``
is required) or a bare string of test code. The program run is ``prefix`` (e.g. HumanEval's prompt,
whose body the response completes), the response's code (the last fenced block when there is
one), the tests, then ``check(entry_point)`` when an entry point is given. Exit status 0 scores 1.
"""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import orjson

from thresher.verifiers.base import Verdict, check_batch
from thresher.verifiers.sandbox import SandboxLimits, run_python

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(response: str) -> str:
    """The last fenced code block of a response, or the whole response when it has none."""
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else response


def parse_tests(ground_truth: str) -> dict[str, str]:
    """``tests`` / ``entry_point`` / ``prefix`` from a JSON ground truth, or a bare test string."""
    text = ground_truth.strip()
    if text.startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"code ground truth is not valid JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("tests"), str):
            raise ValueError("code ground truth JSON needs a 'tests' string")
        return {k: str(data.get(k) or "") for k in ("tests", "entry_point", "prefix")}
    return {"tests": ground_truth, "entry_point": "", "prefix": ""}


def program_of(response: str, ground_truth: str, marker: str = "") -> str:
    """The program to run; it prints ``marker`` last, so a response that exits early (``sys.exit(0)``
    before the tests) does not pass."""
    parts = parse_tests(ground_truth)
    code = extract_code(response)
    program = f"{parts['prefix']}{code}\n\n{parts['tests']}\n"
    if parts["entry_point"]:
        program += f"\ncheck({parts['entry_point']})\n"
    if marker:
        program += f"\nprint({marker!r})\n"
    return program


class CodeVerifier:
    """Scores 1 when the program and its tests exit cleanly in the sandbox, else 0 (with the reason)."""

    name = "code"

    def __init__(self, limits: SandboxLimits | None = None, workers: int = 2) -> None:
        self.limits = limits or SandboxLimits(timeout_s=10, cpu_s=10, memory_mb=1024)
        self.workers = workers

    def _one(self, response: str, ground_truth: str) -> Verdict:
        marker = f"thresher-tests-done-{secrets.token_hex(8)}"
        try:
            program = program_of(response, ground_truth, marker)
        except ValueError as e:
            return Verdict(0.0, f"bad ground truth: {e}")
        result = run_python(program, self.limits)
        if not result.ok:
            return Verdict(0.0, result.why())
        if not result.stdout.rstrip().endswith(marker):
            return Verdict(0.0, "exited before the tests finished")
        return Verdict(1.0, "passed")

    def verify_batch(self, responses: list[str], ground_truths: list[str], prompts: list[str] | None = None) -> list[Verdict]:
        check_batch(responses, ground_truths)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self._one, responses, ground_truths))
