"""Verifiers on real benchmark answers, and the code sandbox against hostile programs."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from pathlib import Path

import pytest

from thresher.verifiers import get_verifier, verify_rows
from thresher.verifiers.code import program_of
from thresher.verifiers.math import extract_answer
from thresher.verifiers.sandbox import SandboxLimits, run_python
from thresher.verifiers.simple import last_number


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_gsm8k_reference_answers_score_one_and_wrong_ones_zero(shared_data: Path) -> None:
    rows = _jsonl(shared_data / "gsm8k/test.jsonl")
    v = get_verifier("gsm8k")
    truths = [r["answer"] for r in rows]
    assert all(x.score == 1.0 for x in v.verify_batch(truths, truths))
    # Each solution checked against the next question's answer: right only where the two numbers agree.
    shifted = v.verify_batch(truths, truths[1:] + truths[:1])
    agree = [
        last_number(truths[i].split("####")[-1]) == last_number(truths[(i + 1) % len(truths)].split("####")[-1]) for i in range(len(truths))
    ]
    assert [x.score == 1.0 for x in shifted] == agree and sum(agree) < 40


def test_gsm8k_agrees_with_openais_labels_on_model_solutions(shared_data: Path) -> None:
    rows = _jsonl(shared_data / "gsm8k/example_model_solutions.jsonl.gz")
    v = get_verifier("gsm8k")
    models = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    responses = [r[m]["solution"] for r in rows for m in models]
    labels = [r[m]["is_correct"] for r in rows for m in models]
    verdicts = v.verify_batch(responses, [r["ground_truth"] for r in rows for _ in models])
    assert len(verdicts) == 4 * 1319 and 0.2 < sum(labels) / len(labels) < 0.8
    assert [x.score == 1.0 for x in verdicts] == labels


def test_gsm8k_number_forms() -> None:
    v = get_verifier("gsm8k")
    assert v.verify("so she pays $1,234.", "#### 1234").score == 1.0
    assert v.verify("The answer is 18.00", "#### 18").score == 1.0
    assert v.verify("The answer is -3", "#### 3").score == 0.0
    assert v.verify("no idea", "#### 3").reason == "no number in the response"


def test_math_solutions_match_their_answers_and_not_others(shared_data: Path) -> None:
    rows = _jsonl(shared_data / "math/math500_test.jsonl")
    v = get_verifier("math")
    try:
        own = v.verify_batch([r["solution"] for r in rows], [r["answer"] for r in rows])
        other = v.verify_batch([r["solution"] for r in rows], [rows[(i + 7) % len(rows)]["answer"] for i in range(len(rows))])
    finally:
        v.close()
    assert sum(x.score for x in own) == len(rows), [x.reason for x in own if x.score < 1][:5]
    # A different problem's answer is only right when the two answers are the same value (rare).
    same_value = sum(1 for i, r in enumerate(rows) if r["answer"].strip() == rows[(i + 7) % len(rows)]["answer"].strip())
    assert sum(x.score for x in other) <= same_value + 5


def test_math_answer_extraction_and_equivalence() -> None:
    assert extract_answer(r"so $x = \boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert extract_answer("Final Answer: The final answer is $42$. I hope it is correct.") == "42"
    assert extract_answer(r"we get $3$ and then $\sqrt{2}$") == r"\sqrt{2}"
    v = get_verifier("math")
    try:
        got = v.verify_batch([r"$\boxed{0.5}$", r"the answer is $\frac{2}{4}$", r"\boxed{\frac{1}{3}}", "nothing"], [r"\frac12"] * 4)
    finally:
        v.close()
    assert [x.score for x in got] == [1.0, 1.0, 0.0, 0.0]


def test_math_verifier_works_from_a_thread() -> None:
    """math-verify's SIGALRM timeouts fail off the main thread; ours run in worker processes."""
    from concurrent.futures import ThreadPoolExecutor

    v = get_verifier("math")
    try:
        with ThreadPoolExecutor(1) as pool:
            got = pool.submit(v.verify_batch, [r"\boxed{2}"], ["2"]).result()
    finally:
        v.close()
    assert got[0].score == 1.0


def test_math_checks_that_overrun_are_cut_off_and_their_workers_replaced() -> None:
    from thresher.verifiers.math import MathVerifier

    v = MathVerifier(workers=2, hard_timeout_s=0.001)  # no check can finish in a millisecond
    try:
        got = v.verify_batch([r"\boxed{2}"] * 3, ["2"] * 3)
        assert [x.reason for x in got] == ["timed out after 0.001 s"] * 3 and v._idle == []  # killed, not kept
        v.wait_s = 60.0
        assert [x.score for x in v.verify_batch([r"\boxed{2}", "3"], ["2", "2"])] == [1.0, 0.0]  # fresh workers
    finally:
        v.close()


IFEVAL_CASES = [
    ({"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}, "all lower case here.", "ALL CAPS HERE."),
    (
        {"instruction_id_list": ["detectable_format:number_bullet_lists"], "kwargs": [{"num_bullets": 2}]},
        "* one\n* two",
        "* one\n* two\n* three",
    ),
    (
        {"instruction_id_list": ["length_constraints:number_sentences"], "kwargs": [{"relation": "less than", "num_sentences": 3}]},
        "Dr. Smith met Mr. Jones. They talked.",
        "One. Two. Three. Four.",
    ),
    ({"instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": ["tea", "cup"]}]}, "A cup of tea.", "A mug of coffee."),
    (
        {"instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Is there anything else?"}]},
        "Done. Is there anything else?",
        "Done.",
    ),
    ({"instruction_id_list": ["detectable_format:json_format"], "kwargs": [{}]}, '{"a": 1}', "a: 1"),
    ({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}, "No commas here.", "Commas, here."),
]


@pytest.mark.parametrize(("truth", "good", "bad"), IFEVAL_CASES)
def test_ifeval_constraints_on_crafted_responses(truth: dict, good: str, bad: str) -> None:
    v = get_verifier("ifeval")
    assert v.verify(good, json.dumps(truth)).score == 1.0
    verdict = v.verify(bad, json.dumps(truth))
    assert verdict.score == 0.0 and truth["instruction_id_list"][0] in verdict.reason


def test_ifeval_partial_credit_and_the_release_format(shared_data: Path) -> None:
    v = get_verifier("ifeval")
    two = {"instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]}
    got = v.verify("lower, but with a comma", json.dumps(two))
    assert got.score == 0.5 and "punctuation:no_comma" in got.reason
    # IFEval's own rows (nulls for unused arguments) parse and run on every instruction they name.
    rows = _jsonl(shared_data / "ifeval/input_data.jsonl")
    truths = [json.dumps({"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]}) for r in rows]
    verdicts = v.verify_batch(["A short reply."] * len(rows), truths, [r["prompt"] for r in rows])
    assert len(verdicts) == 541 and not [x.reason for x in verdicts if "bad ground truth" in x.reason or "unknown" in x.reason]


def _humaneval(shared_data: Path) -> list[dict]:
    return _jsonl(shared_data / "humaneval/HumanEval.jsonl.gz")


def _truth(problem: dict) -> str:
    return json.dumps({"prefix": problem["prompt"], "tests": problem["test"], "entry_point": problem["entry_point"]})


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(shared_data: Path) -> None:
    problems = _humaneval(shared_data)
    v = get_verifier("code", workers=2)
    truths = [_truth(p) for p in problems]
    passed = v.verify_batch([p["canonical_solution"] for p in problems], truths)
    assert [x.reason for x in passed if x.score != 1.0] == [] and len(passed) == 164
    broken = v.verify_batch(["    return None\n"] * len(problems), truths)
    assert sum(x.score for x in broken) == 0, [p["task_id"] for p, x in zip(problems, broken, strict=True) if x.score]
    # A fenced answer that repeats the signature works too.
    p = problems[0]
    fenced = f"Here you go:\n```python\n{p['prompt']}{p['canonical_solution']}```\nDone."
    assert v.verify_batch([fenced], [json.dumps({"tests": p["test"], "entry_point": p["entry_point"]})])[0].score == 1.0


def _process_count() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def test_sandbox_refuses_network_even_below_the_prelude() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        for code in (
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)",
            f"import _socket; s = _socket.socket(); s.settimeout(2); s.connect(('127.0.0.1', {port}))",
        ):
            result = run_python(code, SandboxLimits(timeout_s=10))
            assert result.returncode != 0 and not result.timed_out, result
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever reached the listening socket
        # Control: the same connection from outside the sandbox gets through.
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        server.accept()[0].close()
    finally:
        server.close()


def test_sandbox_survives_infinite_loop_fork_bomb_and_memory_bomb() -> None:
    before = _process_count()
    t0 = time.monotonic()
    loop = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=3, cpu_s=2))
    assert not loop.ok and time.monotonic() - t0 < 10, loop
    # A fork bomb below Python's os.fork (which the prelude removes), straight through libc.
    bomb = run_python("import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n", SandboxLimits(timeout_s=3))
    assert not bomb.ok and bomb.timed_out
    memory = run_python(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))\n", SandboxLimits(timeout_s=20, memory_mb=512)
    )
    assert not memory.ok and "MemoryError" in memory.stderr, memory
    time.sleep(0.5)
    assert _process_count() <= before + 2  # nothing left behind
    assert run_python("print(sum(range(10)))").stdout == "45\n"  # and the sandbox still works


def test_code_verifier_reasons() -> None:
    v = get_verifier("code")
    tests = json.dumps({"tests": "def check(f):\n    assert f(2) == 4\n", "entry_point": "double"})
    got = v.verify_batch(
        [
            "def double(x):\n    return 2 * x\n",
            "def double(x):\n    return x\n",
            "def double(x):\n    while True: pass\n",
            "import sys\nsys.exit(0)\n",
        ],
        [tests] * 4,
    )
    assert [x.score for x in got] == [1.0, 0.0, 0.0, 0.0]
    assert got[3].reason == "the program failed before the tests: SystemExit: 0"
    assert "AssertionError" in got[1].reason and got[2].reason.startswith(
        ("timed out", "the program ended before the tests finished: killed by SIG")
    )
    assert "check" not in program_of("x", tests)  # the tests never enter the sandbox


def test_exact_regex_and_rows_with_mixed_verifiers() -> None:
    got = verify_rows(
        ["Paris ", "b", "The year 1969.", "12"], ["paris", "a", r"\b19\d\d\b", "#### 12"], ["exact", "exact", "regex", "gsm8k"]
    )
    assert [x.score for x in got] == [1.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown verifier"):
        get_verifier("nope")
