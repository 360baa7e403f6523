"""The ``math`` verifier: extract the final answer, check equivalence with math-verify.

The answer is taken from the last ``\\boxed{...}``, else from a "Final Answer" line, else from the
last ``$...$``, else the whole response. math-verify's own timeouts use SIGALRM, which only works in
a process's main thread, so every check runs in the main thread of a worker process (a child Python
reading requests on stdin, so nothing depends on how the caller's main module is written); a check
that still hangs is cut off by our own timeout, its worker killed and replaced.
"""

from __future__ import annotations

import re
import selectors
import subprocess
import sys
import time

import orjson

from thresher.formats.shapes import last_boxed
from thresher.verifiers.base import Verdict, check_batch

_FINAL = re.compile(r"final answer\s*(?:is)?\s*[:：]?\s*(.+)", re.IGNORECASE)
_DOLLARS = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.DOTALL)


def extract_answer(text: str) -> str:
    """The final answer in a response or reference solution, as LaTeX."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    final = _FINAL.findall(text)
    if final:
        answer = final[-1].strip()
        answer = re.sub(r"\.?\s*I hope it is correct\.?$", "", answer).strip()
        inner = _DOLLARS.findall(answer)
        return (inner[-1][0] or inner[-1][1]) if inner else answer.rstrip(".")
    dollars = _DOLLARS.findall(text)
    if dollars:
        return dollars[-1][0] or dollars[-1][1]
    return text.strip()


def _check(response: str, ground_truth: str, timeout_s: int) -> tuple[float, str]:
    """Runs in a worker process's main thread, where math-verify's alarms work."""
    from math_verify import parse, verify

    gold_text = extract_answer(ground_truth)
    answer_text = extract_answer(response)
    gold = parse(f"${gold_text}$", parsing_timeout=timeout_s)
    if not gold:
        return 0.0, f"cannot parse the reference answer {gold_text[:60]!r}"
    answer = parse(f"${answer_text}$", parsing_timeout=timeout_s)
    if not answer:
        return 0.0, f"no parsable answer in the response (got {answer_text[:60]!r})"
    if verify(gold, answer, timeout_seconds=timeout_s):
        return 1.0, f"{answer_text[:60]!r} is equivalent to {gold_text[:60]!r}"
    return 0.0, f"{answer_text[:60]!r} is not {gold_text[:60]!r}"


class _Worker:
    """A child Python that checks one (response, ground truth) per line of JSON on its stdin."""

    def __init__(self, timeout_s: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "thresher.verifiers.math", str(timeout_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.index: int | None = None
        self.deadline = 0.0

    def send(self, index: int, response: str, ground_truth: str, wait_s: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps([response, ground_truth]) + b"\n")
        self.proc.stdin.flush()
        self.index, self.deadline = index, time.monotonic() + wait_s

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class MathVerifier:
    """Equivalence of final answers through math-verify, in worker processes with a hard timeout."""

    name = "math"

    def __init__(self, workers: int = 2, timeout_s: int = 5, hard_timeout_s: float | None = None) -> None:
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        # Our own limit per check: parse both, verify, plus a new worker's start-up.
        self.wait_s = hard_timeout_s if hard_timeout_s is not None else timeout_s * 3 + 15.0
        self._idle: list[_Worker] = []

    def close(self) -> None:
        for worker in self._idle:
            worker.kill()
        self._idle = []

    def __del__(self) -> None:
        self.close()

    def verify_batch(self, responses: list[str], ground_truths: list[str], prompts: list[str] | None = None) -> list[Verdict]:
        check_batch(responses, ground_truths)
        verdicts: list[Verdict] = [Verdict(0.0, "not checked")] * len(responses)
        todo = list(range(len(responses)))[::-1]
        busy: dict[int, _Worker] = {}  # stdout fd -> worker
        with selectors.DefaultSelector() as selector:
            while todo or busy:
                while todo and len(busy) < self.workers:
                    worker = self._idle.pop() if self._idle else _Worker(self.timeout_s)
                    i = todo.pop()
                    worker.send(i, responses[i], ground_truths[i], self.wait_s)
                    assert worker.proc.stdout is not None
                    busy[worker.proc.stdout.fileno()] = worker
                    selector.register(worker.proc.stdout, selectors.EVENT_READ)
                wait = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
                for key, _ in selector.select(timeout=wait):
                    worker = busy.pop(key.fd)
                    selector.unregister(key.fileobj)
                    line = worker.proc.stdout.readline() if worker.proc.stdout else b""
                    assert worker.index is not None
                    if line:
                        score, reason = orjson.loads(line)
                        verdicts[worker.index] = Verdict(float(score), reason)
                        self._idle.append(worker)
                    else:
                        verdicts[worker.index] = Verdict(0.0, "the checking process died")
                        worker.kill()
                now = time.monotonic()
                for fd, worker in list(busy.items()):
                    if worker.deadline <= now:
                        assert worker.index is not None and worker.proc.stdout is not None
                        verdicts[worker.index] = Verdict(0.0, f"timed out after {self.wait_s:g} s")
                        selector.unregister(worker.proc.stdout)
                        del busy[fd]
                        worker.kill()
        return verdicts


def _serve(timeout_s: int) -> None:
    """The worker loop: one JSON request per line in, one [score, reason] per line out."""
    for line in sys.stdin.buffer:
        response, ground_truth = orjson.loads(line)
        try:
            score, reason = _check(response, ground_truth, timeout_s)
        except Exception as e:  # a checker bug must not take the worker down with it
            score, reason = 0.0, f"checker error: {type(e).__name__}: {str(e)[:120]}"
        sys.stdout.buffer.write(orjson.dumps([score, reason]) + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
