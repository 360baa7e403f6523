"""The ``code`` verifier: run a candidate program against its tests in the sandbox.

The ground truth is JSON: ``{"tests": "...", "entry_point": "f", "prefix": "...", "uses": ["f"]}`` (only
``tests`` is required; ``uses`` names program functions the tests call that shadow a builtin, as MBPP/126's
``sum``: no other program name shadows a builtin for the tests) or a bare string of test code. The program run in the sandbox is ``prefix``
(e.g. HumanEval's prompt, whose body the response completes) then the response's code (the last
fenced block when there is one). The tests, then ``check(entry_point)`` when an entry point is
given, run in a separate judge process against proxies for the program's names (``_codewire``):
the program can neither see the tests nor write the verdict. Finishing them without error scores 1.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import orjson

from thresher.verifiers._codewire import ENDED
from thresher.verifiers.base import Verdict, check_batch
from thresher.verifiers.sandbox import Sandbox, SandboxLimits, SandboxResult, kill_session, python_executable, set_limits

WIRE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_codewire.py")

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
        uses = data.get("uses") or []
        if not isinstance(uses, list) or not all(isinstance(u, str) and u.isidentifier() for u in uses):
            raise ValueError("code ground truth 'uses' must be a list of names")
        return {**{k: str(data.get(k) or "") for k in ("tests", "entry_point", "prefix")}, "uses": ",".join(uses)}
    return {"tests": ground_truth, "entry_point": "", "prefix": "", "uses": ""}


def program_of(response: str, ground_truth: str) -> str:
    """The candidate program that runs in the sandbox: ``prefix`` then the response's code. The tests
    never enter the sandbox; they run in the judge process (``_codewire``)."""
    parts = parse_tests(ground_truth)
    return f"{parts['prefix']}{extract_code(response)}\n"


class CodeVerifier:
    """Scores 1 when the tests, run against the program's names from outside the sandbox, finish
    without an error; else 0 with the reason."""

    name = "code"

    def __init__(self, limits: SandboxLimits | None = None, workers: int = 2) -> None:
        self.limits = limits or SandboxLimits(timeout_s=10, cpu_s=10, memory_mb=1024)
        self.workers = workers

    def _one(self, response: str, ground_truth: str) -> Verdict:
        try:
            parts = parse_tests(ground_truth)
        except ValueError as e:
            return Verdict(0.0, f"bad ground truth: {e}")
        uses = [u for u in parts["uses"].split(",") if u]
        passed, reason = judge_program(
            program_of(response, ground_truth), parts["tests"], parts["entry_point"], self.limits, prefix=parts["prefix"], uses=uses
        )
        return Verdict(1.0 if passed else 0.0, reason)

    def verify_batch(self, responses: list[str], ground_truths: list[str], prompts: list[str] | None = None) -> list[Verdict]:
        check_batch(responses, ground_truths)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self._one, responses, ground_truths))


def judge_program(
    program: str, tests: str, entry_point: str, limits: SandboxLimits, prefix: str = "", uses: list[str] | None = None
) -> tuple[bool, str]:
    """Run ``program`` in the sandbox and ``tests`` in a judge process talking to it over two pipes;
    the verdict comes on the judge's stdout, which the program never holds. ``prefix``: the prompt's code,
    whose own definitions the tests get from the judge (not from the program). ``uses``: program names the tests
    call even where they shadow a builtin (MBPP/126's ``sum``); the entry point always is one."""
    with tempfile.TemporaryDirectory(prefix="thresher-program-") as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w") as f:
            f.write(program)
        with Sandbox(limits, {"program.py": path, "wire.py": WIRE}) as box:
            requests_r, requests_w = os.pipe()
            answers_r, answers_w = os.pipe()
            judge: subprocess.Popen[bytes] | None = None
            try:
                with open(os.path.join(box.host_dir, "stdout"), "wb") as out, open(os.path.join(box.host_dir, "stderr"), "wb") as err:
                    box.spawn(
                        [box.path("wire.py"), "serve", box.path("program.py"), str(requests_r), str(answers_w)],
                        out,
                        err,
                        pass_fds=(requests_r, answers_w),
                    )
                judge = subprocess.Popen(
                    [python_executable(), "-I", "-B", WIRE, "judge", str(answers_r), str(requests_w), str(limits.timeout_s)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    pass_fds=(answers_r, requests_w),
                    start_new_session=True,
                    preexec_fn=lambda: set_limits(limits),
                )  # noqa: PLW1509 - the judge's own limits
            finally:
                for fd in (requests_r, requests_w, answers_r, answers_w):
                    os.close(fd)
            spec = orjson.dumps({"tests": tests, "entry_point": entry_point, "prefix": prefix, "uses": uses or []})
            assert judge is not None  # Popen raised otherwise
            try:
                verdict, _ = judge.communicate(spec, timeout=limits.timeout_s + 5)
            except subprocess.TimeoutExpired:
                verdict = b""
            finally:
                kill_session(judge)
            returncode, _ = box.wait(0.2)
            try:
                result = orjson.loads(verdict)
                passed, reason = bool(result["passed"]) and result["reason"] == "passed", str(result["reason"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return False, "timed out" if not verdict else "the judge failed"
            if not passed and reason == ENDED and returncode is not None and returncode < 0:
                reason = f"{reason}: " + SandboxResult(returncode, "", "", False, box.kind, "").why()
            return passed, reason
