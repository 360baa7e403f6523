"""thresher synth end to end with a tiny local model: backends, scorers, outputs, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.browser import chromium, problems
from tests.helpers import thresher
from thresher.generation.sampling import SamplingParams
from thresher.synth.backends.hf import TransformersBackend
from thresher.synth.backends.http import EndpointError, OpenAIBackend
from thresher.synth.cache import RequestCache
from thresher.synth.generate import generate_cached

CONVS = [[{"role": "user", "content": f"What is {i} plus {i + 1}?"}] for i in range(6)]


def test_transformers_backend_batches_samples_and_seeds(tiny_chat_model: Path) -> None:
    backend = TransformersBackend(str(tiny_chat_model), batch_size=4)
    params = SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=7)
    out = backend.generate(CONVS, params)
    assert [len(o) for o in out] == [3] * 6 and all(c.tokens <= 12 and c.finish_reason in {"stop", "length"} for o in out for c in o)
    assert backend.generate(CONVS, params) == out  # same seed, same batches: same samples
    assert backend.generate(CONVS, params.model_copy(update={"seed": 8})) != out
    assert len({c.text for o in out for c in o}) > 12  # sampling gives different texts
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=12)
    one_by_one = [backend.generate([c], greedy)[0][0].text for c in CONVS]
    assert [o[0].text for o in backend.generate(CONVS, greedy)] == one_by_one  # left padding changes nothing
    text = one_by_one[0]
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    if stop.strip():
        cut = backend.generate(CONVS[:1], greedy.model_copy(update={"stop": (stop,)}))[0][0]
        assert cut.text == text[: text.find(stop)] and cut.finish_reason == "stop"


def test_http_backend_against_thresher_serve_matches_in_process(tiny_chat_model: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "thresher.cli", "serve", str(tiny_chat_model), "--port", "0", "--name", "tiny", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "serving tiny on http://" in line, proc.stderr.read() if proc.stderr else line
        url = line.split(" on ")[1].strip()
        client = OpenAIBackend("tiny", url, concurrency=3)
        greedy = SamplingParams(n=2, temperature=0.0, max_tokens=10)
        served = client.generate(CONVS, greedy)
        local = TransformersBackend(str(tiny_chat_model)).generate(CONVS, greedy)
        assert [[c.text for c in o] for o in served] == [[c.text for c in o] for o in local]
        with pytest.raises(EndpointError, match="HTTP 400"):
            client._post({"model": "tiny"})  # no messages
    finally:
        proc.terminate()
        proc.wait(10)
    with pytest.raises(EndpointError, match="no answer after 2 tries"):
        OpenAIBackend("tiny", url, retries=1).generate(CONVS[:1], SamplingParams())


def test_cache_reuses_and_extends_samples(tiny_chat_model: Path, tmp_path: Path) -> None:
    backend = TransformersBackend(str(tiny_chat_model))
    cache = RequestCache(tmp_path / "c.sqlite")
    params = SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=1)
    first, s1 = generate_cached(backend, CONVS, params, cache, quiet=True)
    again, s2 = generate_cached(backend, CONVS, params, cache, quiet=True)
    assert (s1.generated, s2.generated, s2.reused) == (12, 0, 12) and again == first
    more, s3 = generate_cached(backend, CONVS, params.model_copy(update={"n": 3}), cache, quiet=True)
    assert (s3.reused, s3.generated) == (12, 6) and [m[:2] for m in more] == first  # only sample index 2 is new
    other, s4 = generate_cached(backend, CONVS, params.model_copy(update={"temperature": 0.5}), cache, quiet=True)
    assert s4.generated == 12  # other sampling parameters are other requests
    assert cache.counts() == (30, 30)


def _prompt_files(folder: Path, shared_data: Path) -> None:
    letters = [
        {"messages": [{"role": "user", "content": f"Write a word with the letter {c}."}], "ground_truth": c, "verifier": "regex"}
        for c in "abcdefghijkl"
    ]
    (folder / "letters.jsonl").write_text("".join(json.dumps(r) + "\n" for r in letters))
    (folder / "bad.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "ok"}], "ground_truth": "o", "verifier": "regex"}\n{not json\n'
    )


SPEC = """\
seed: 3
prompts:
  - name: gsm8k
    path: {shared}/gsm8k/test.jsonl
    verifier: gsm8k
    limit: 5
  - name: letters
    path: letters.jsonl
  - name: bad
    path: bad.jsonl
  - name: constraints
    synthesize: {{task: precise_if, count: 6}}
  - name: persona_math
    synthesize: {{task: math, count: 3}}
generator:
  backend: transformers
  model: {model}
  batch_size: 4
  sampling: {{n: {n}, temperature: 1.0, max_tokens: {max_tokens}, seed: 1}}
scorers:
  - verifier
  - reward_model: {{model: {rm}, weight: 0.5}}
  - judge: {{backend: transformers, model: {model}, max_tokens: 6, weight: 0.5}}
select:
  pair_policy: best_vs_worst
  pass_rate: [0.2, 0.8]
outputs: [sft, preference, rlvr]
batch_size: {batch}
"""


def _spec(folder: Path, shared_data: Path, model: Path, rm: Path, n: int = 4, max_tokens: int = 12, batch: int = 4) -> Path:
    _prompt_files(folder, shared_data)
    path = folder / "synth.yaml"
    path.write_text(SPEC.format(shared=shared_data, model=model, rm=rm, n=n, max_tokens=max_tokens, batch=batch))
    return path


@pytest.mark.slow
def test_synth_end_to_end_outputs_and_accounting(tiny_chat_model: Path, tiny_reward_model: Path, shared_data: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, shared_data, tiny_chat_model, tiny_reward_model)
    result = thresher("synth", str(spec), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    prompts = 5 + 12 + 1 + 6 + 3
    assert manifest["prompts"] == prompts
    bad = next(s for s in manifest["sources"] if s["name"] == "bad")
    assert (bad["in"], bad["out"], bad["quarantined"]) == (2, 1, 1)
    quarantined = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantined) == 1 and "bad.jsonl" in json.dumps(quarantined[0]) and "2" in json.dumps(quarantined[0])
    for name, o in manifest["outputs"].items():
        assert o["in"] == prompts and o["in"] == o["out"] + o["removed"] and o["balanced"], name
    samples = pl.read_parquet(out / "samples.parquet")
    assert samples.height == prompts * 4
    # SFT: prompt + the completion with the highest combined score.
    sft = pl.read_parquet(out / "sft.parquet")
    best = (
        samples.sort(["id", "score", "sample"], descending=[False, True, False], nulls_last=True)
        .group_by("id", maintain_order=True)
        .first()
    )
    by_id = dict(zip(best["id"].to_list(), best["text"].to_list(), strict=True))
    for row in sft.iter_rows(named=True):
        assert row["messages"][-1] == {"role": "assistant", "content": by_id[row["id"]]}
    # Preference: chosen scores above rejected; constraint prompts may take a dropped-constraint answer as rejected.
    pairs = pl.read_parquet(out / "preference.parquet")
    scores = {(r["id"], r["text"]): r["score"] for r in samples.iter_rows(named=True)}
    for row in pairs.iter_rows(named=True):
        meta = json.loads(row["metadata"])["synth"] if "synth" in json.loads(row["metadata"]) else None
        chosen = scores[(row["id"], row["chosen"][0]["content"])]
        rejected = scores.get((row["id"], row["rejected"][0]["content"]), json.loads(row["metadata"]).get("rejected_score"))
        assert chosen > rejected, (row["id"], meta)
    # RLVR: only prompts whose verifier pass rate lies in the window, with their ground truth.
    rlvr = pl.read_parquet(out / "rlvr.parquet")
    rates = [json.loads(m)["synth"]["pass_rate"] for m in rlvr["metadata"]]
    assert all(0.2 <= r <= 0.8 for r in rates) and set(rlvr["verifier"]) <= {"regex", "gsm8k", "ifeval"}
    removed = [json.loads(line) for line in (out / "removed.jsonl").read_text().splitlines()]
    assert sum(1 for r in removed if r["output"] == "rlvr") == manifest["outputs"]["rlvr"]["removed"]
    assert "thresher synth" in (out / "report.html").read_text()
    if chromium() is not None:  # opened in a real browser (test_reports_browser says when it is skipped)
        assert problems(out / "report.html", ["Generation", "Outputs", "Pass rate per prompt"]) == []
    # Every completion was generated once; a second run reuses all of them.
    assert manifest["cache"]["stored"] == manifest["cache"]["generations_logged"]
    again = thresher("synth", str(spec), "--out", str(tmp_path / "out2"), "--cache-dir", str(out / "cache"), "-q")
    assert again.returncode == 0 and "generated 0" in again.stdout, again.stdout
    for name in ("sft", "preference", "rlvr"):
        assert pl.read_parquet(out / f"{name}.parquet").equals(pl.read_parquet(tmp_path / "out2" / f"{name}.parquet"))


def test_the_cpu_path_never_imports_vllm(tiny_chat_model: Path) -> None:
    code = (
        "import sys\nfrom thresher.synth.pipeline import run_synth\nfrom thresher.synth.backends import make_backend, BackendSpec\n"
        f"make_backend(BackendSpec(model={str(tiny_chat_model)!r}))\nassert 'vllm' not in sys.modules\nprint('ok')"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert got.stdout.strip() == "ok", got.stderr[-2000:]


def test_spec_errors_name_the_line_and_field(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "prompts:\n  - name: a\n    path: x.jsonl\n    verifier: nope\ngenerator:\n  model: m\n  sampling: {n: 0}\nscorers: [verifier]\n"
    )
    got = thresher("synth", str(spec), "--out", str(tmp_path / "o"))
    assert got.returncode == 2
    assert "s.yaml:2: prompts[0]: unknown verifier 'nope'" in got.stderr
    assert "s.yaml:7: generator.sampling.n: Input should be greater than or equal to 1" in got.stderr


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(str(db), timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_killed_run_resumes_without_regenerating(tiny_chat_model: Path, tiny_reward_model: Path, shared_data: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, shared_data, tiny_chat_model, tiny_reward_model, n=4, max_tokens=48, batch=1)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "thresher.cli", "synth", str(spec), "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 240
    db = out / "cache" / "requests.sqlite"
    while not db.exists() and time.monotonic() < deadline and proc.poll() is None:
        staged = list(tmp_path.glob(".out.partial-*/cache/requests.sqlite"))  # the run writes into a staging folder
        db = staged[0] if staged else db
        time.sleep(0.05)
    while _stored(db) < 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _stored(db)
    most = 3 + 27 * 4 + 6 * 4 + 27 * 4  # persona prompts, completions, dropped-constraint answers, judge answers
    assert 40 <= before < most - 20, f"kill landed at {before} of {most}"
    assert not out.exists()  # a killed run leaves no output folder, only its staging folder with the cache
    resumed = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "synth", str(spec), "--out", str(out)], capture_output=True, text=True, env=env, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    reused = sum(g["reused"] for g in manifest["generation"].values())
    generated = sum(g["generated"] for g in manifest["generation"].values())
    total = manifest["cache"]["stored"]
    # Everything the killed run stored is reused; only the rest is generated (a request asked twice
    # within a run, e.g. a judge ask, counts as reused the second time).
    assert generated == total - before and reused >= before and total > most - 10, manifest["generation"]
    assert f"reused {reused} completions from the cache, generated {generated}" in " ".join(resumed.stdout.split())
    # Nothing was generated twice: one generation logged per stored completion.
    assert manifest["cache"]["generations_logged"] == total


def test_reward_model_scores_are_the_sigmoid_of_its_logits(tiny_reward_model: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from thresher.synth.scorers import RewardModelScorer

    scorer = RewardModelScorer(str(tiny_reward_model), batch_size=2, device="cpu")
    convs = CONVS[:3]
    answers = [["yes", "no, it is seven"], ["eleven", "maybe"], ["x", "a much longer answer here"]]
    table = scorer.score(convs, answers, [{} for _ in convs])
    tok = AutoTokenizer.from_pretrained(str(tiny_reward_model))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_reward_model)).eval()
    for p, conv in enumerate(convs):
        for i, text in enumerate(answers[p]):
            ids = tok(
                tok.apply_chat_template(conv + [{"role": "assistant", "content": text}], tokenize=False),
                return_tensors="pt",
                add_special_tokens=False,
            )
            with torch.no_grad():
                logit = model(**ids).logits[0, 0].item()
            assert table.scores[p][i] == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-5)
    assert len({round(s, 6) for row in table.scores for s in row}) == 6  # every answer gets its own reward


def test_the_example_spec_is_valid() -> None:
    from thresher.synth.spec import load_synth_spec

    spec = load_synth_spec(Path(__file__).resolve().parents[1] / "examples/synth/best_of_n.yaml")
    assert spec.generator.sampling.n == 8 and [s.body.weight for s in spec.scorers] == [1.0, 0.25]


def test_precise_if_prompts_compose_checkable_constraints(tmp_path: Path) -> None:
    import random

    from thresher.synth.prompts import constraint_library, persona_requests, precise_if_rows
    from thresher.synth.spec import SynthesizePrompts
    from thresher.verifiers import get_verifier

    rows = precise_if_rows(SynthesizePrompts(task="precise_if", count=60, seed=4), tmp_path)
    assert rows == precise_if_rows(SynthesizePrompts(task="precise_if", count=60, seed=4), tmp_path)  # seeded
    groups = {c.instruction_id: c.group for c in constraint_library(random.Random(0))}
    counts = set()
    verifier = get_verifier("ifeval")
    for row in rows:
        truth = json.loads(row["ground_truth"])
        ids = truth["instruction_id_list"]
        counts.add(len(ids))
        assert len({groups[i] for i in ids}) == len(ids)  # never two clashing constraints (e.g. lower and upper case)
        meta = json.loads(row["metadata"])
        prompt = row["messages"][0]["content"]
        assert meta["dropped_constraint"] in ids and len(meta["drop_prompt"]) < len(prompt)
        verdict = verifier.verify("a short answer.", row["ground_truth"], prompt)
        assert "unknown" not in verdict.reason and "bad ground truth" not in verdict.reason
    assert counts == {1, 2, 3}
    # A response written to meet the constraints of a lowercase + no-comma prompt passes; dropping one fails it.
    both = json.dumps({"instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]})
    assert verifier.verify("tea is calm and warm.", both).score == 1.0
    assert verifier.verify("Tea is calm, and warm.", both).score == 0.0
    asks = persona_requests(SynthesizePrompts(task="math", count=5, personas=["a baker", "a pilot"]), tmp_path)
    assert len(asks) == 5 and all("math word problem" in a[0]["content"] for a in asks)
    assert sorted(a[0]["content"].count("a baker") for a in asks).count(1) == 3


def test_several_generators_pool_their_samples(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(tiny_chat_model, other)
    _prompt_files(tmp_path, shared_data)
    spec = tmp_path / "two.yaml"
    spec.write_text(f"""\
prompts:
  - {{name: letters, path: letters.jsonl}}
generators:
  - {{model: {tiny_chat_model}, sampling: {{n: 2, max_tokens: 8, seed: 1}}}}
  - {{model: {other}, sampling: {{n: 3, max_tokens: 8, seed: 2}}}}
scorers: [verifier]
select: {{drop_all_fail: false, drop_identical: false}}
outputs: [sft, rlvr]
""")
    got = thresher("synth", str(spec), "--out", str(tmp_path / "out"), "-q")
    assert got.returncode == 0, got.stderr
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["samples_per_prompt"] == 5 and set(manifest["generation"]) == {f"completions:{tiny_chat_model}", f"completions:{other}"}
    samples = pl.read_parquet(tmp_path / "out/samples.parquet")
    assert dict(samples.group_by("model").len().iter_rows()) == {str(tiny_chat_model): 12 * 2, str(other): 12 * 3}
    # The RLVR pass rate is the first (policy) model's: a multiple of 1/2.
    rates = [json.loads(m)["synth"]["pass_rate"] for m in pl.read_parquet(tmp_path / "out/rlvr.parquet")["metadata"]]
    assert rates and all(r in (0.0, 0.5, 1.0) for r in rates)
