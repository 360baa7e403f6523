"""``thresher run``: all seven stages on tiny sizes, killed in the middle of SFT and resumed, equal to an
uninterrupted run; cached re-runs and the dry run; a failing stage is named and the pipeline continues after the fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import torch

from tests.browser import chromium, problems
from tests.helpers import thresher

PIPELINE = """\
output_dir: {out}
stages:
  - name: curate
    run: dedup
    inputs: [raw_chats.jsonl]
    options: {{method: exact}}
  - name: audit
    run: decontaminate
    train: ["{{{{curate}}}}"]
    bench: ["gsm8k={shared}/gsm8k/test.jsonl"]
    options: {{methods: [ngram], fields: prompt}}
  - name: mix
    run: mix
    spec:
      kind: sft
      seed: 1
      total: 50
      sources:
        - {{name: chats, path: "{{{{audit}}}}", skill: chat, amount: {{weight: 1}}}}
  - name: synth
    run: synth
    spec:
      seed: 3
      prompts:
        - {{name: gsm8k, path: {shared}/gsm8k/train.jsonl, verifier: gsm8k, limit: 6}}
        - {{name: chats, path: "{{{{mix}}}}", kind: sft, limit: 8}}
      generator: {{backend: transformers, model: {model}, batch_size: 6, sampling: {{n: 4, temperature: 1.0, max_tokens: 10, seed: 1}}}}
      scorers: [verifier, {{reward_model: {{model: {rm}, weight: 1.0}}}}]
      select: {{pair_policy: best_vs_worst, pass_rate: [0.0, 1.0]}}
      outputs: [sft, preference, rlvr]
  - name: sft
    run: sft
    spec: sft.yaml
    set: {{data.train: "{{{{mix}}}}"}}
  - name: dpo
    run: dpo
    spec:
      max_length: 384
      max_steps: 3
      optim: {{lr: 1.0e-3, warmup_ratio: 0.0}}
      dpo: {{loss: sigmoid, beta: 0.1}}
    set: {{model: "{{{{sft.model}}}}", data.train: "{{{{synth.preference}}}}", dpo.cache_dir: {cache}}}
  - name: rlvr
    run: rlvr
    spec:
      max_length: 384
      optim: {{lr: 1.0e-3, warmup_ratio: 0.0}}
      rlvr: {{group_size: 4, prompts_per_rollout: 3, rollouts: 2, max_new_tokens: 8, length_weight: 1.0}}
    set: {{model: "{{{{dpo.model}}}}", data.train: "{{{{synth.rlvr}}}}"}}
"""

SFT = """\
model: {model}
data: {{train: unused}}
max_length: 128
pack_length: 256
optim: {{lr: 2.0e-3, warmup_ratio: 0.0, schedule: constant}}
max_steps: 24
save_every: 2
seed: 3
"""


def _write_inputs(folder: Path, shared: Path, model: Path, rm: Path, out: Path) -> Path:
    lima = json.loads((shared / "sft/lima.json").read_text())[:60]
    chats = [
        {"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"][:400]}]} for r in lima
    ]
    gsm8k = [json.loads(line) for line in (shared / "gsm8k/test.jsonl").read_text().splitlines()[:6]]
    leaked = [{"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]} for r in gsm8k]
    rows = chats + chats[:8] + leaked  # 8 exact duplicates and 6 benchmark questions
    (folder / "raw_chats.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (folder / "sft.yaml").write_text(SFT.format(model=model))
    path = folder / "pipeline.yaml"
    path.write_text(PIPELINE.format(out=out, shared=shared, model=model, rm=rm, cache=folder / "ref-cache"))
    return path


def _stage(out: Path, name: str) -> Path:
    found = sorted((out / "stages").glob(f"{name}-*"))
    assert len(found) == 1, found
    return found[0]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "final" / "model.safetensors"))


def _run_and_kill_in_sft(pipeline: Path) -> None:
    """Start the pipeline and SIGKILL it as soon as the SFT stage has written its checkpoint-4."""
    out = Path(pipeline.read_text().split("\n")[0].split(": ", 1)[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "thresher.cli", "run", str(pipeline), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            found = list((out / "stages").glob("sft-*/checkpoint-4/trainer_state.pt")) if (out / "stages").is_dir() else []
            if found:
                process.send_signal(signal.SIGKILL)
                process.wait()
                break
            if process.poll() is not None:
                pytest.fail("the pipeline ended before it could be killed in SFT:\n" + process.stderr.read().decode()[-3000:])
            time.sleep(0.02)
        else:
            pytest.fail("no SFT checkpoint appeared in time")
    finally:
        if process.poll() is None:
            process.kill()
    sft = _stage(out, "sft")
    assert not (sft / "stage.json").exists() and not (sft / "final").exists(), "killed before SFT finished"


def test_pipeline_killed_in_sft_resumes_to_the_uninterrupted_result(
    tiny_chat_model: Path, tiny_reward_model: Path, shared_data: Path, tmp_path: Path
) -> None:
    whole = _write_inputs(tmp_path, shared_data, tiny_chat_model, tiny_reward_model, tmp_path / "whole")
    done = thresher("run", str(whole), "-q")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "report:" in done.stdout
    report = (tmp_path / "whole" / "report.html").read_text()
    for heading in ("curate (dedup)", "audit (decontaminate)", "mix (mix)", "synth (synth)", "sft (sft)", "dpo (dpo)", "rlvr (rlvr)"):
        assert heading in report, heading
    assert report.count("<svg") + report.count("class='nodata'") >= 6  # mixture shares and training curves (or why not drawn)
    if chromium() is not None:  # opened in a real browser (test_reports_browser says when it is skipped)
        assert problems(tmp_path / "whole" / "report.html", ["curate (dedup)", "sft (sft)", "rlvr (rlvr)"]) == []
    # every stage that moves rows shows one account table, each cell filled (the mix steps' cells were once empty)
    mix_section = report.split("mix (mix)")[1].split("<h2>")[0]
    assert "<td class=''></td>" not in mix_section and mix_section.count("<tr>") >= 2  # the header and the load step
    assert report.count("<th class=''>balanced</th>") >= 4 and ">NO<" not in report  # dedup, decontaminate, mix, synth

    # the stages' accounting: 8 duplicates removed, the 6 GSM8K questions removed as leaked
    curate = orjson.loads((_stage(tmp_path / "whole", "curate") / "stage.json").read_bytes())["summary"]
    assert (curate["in"], curate["kept"], curate["removed"]) == (74, 66, 8)
    audit = orjson.loads((_stage(tmp_path / "whole", "audit") / "stage.json").read_bytes())["summary"]["decontamination"]
    assert (audit["in"], audit["clean"], audit["removed"]) == (66, 60, 6)

    # a second run is all cached; the dry run says so
    again = thresher("run", str(whole), "--dry-run")
    assert again.returncode == 0 and again.stdout.count("cached") == 7, again.stdout

    # the same pipeline in another folder, killed in the middle of SFT, then run again
    killed = tmp_path / "killed.yaml"
    killed.write_text(whole.read_text().replace(f"output_dir: {tmp_path / 'whole'}", f"output_dir: {tmp_path / 'killed'}"))
    _run_and_kill_in_sft(killed)
    plan = thresher("run", str(killed), "--dry-run")
    states = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in plan.stdout.splitlines() if line.count("│") > 4}
    assert states["curate"] == states["synth"] == "cached" and states["sft"] == "partial" and states["rlvr"] == "to run", states
    resumed = thresher("run", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "synth (synth): cached" in resumed.stderr and "sft (sft): continuing" in resumed.stderr
    sft_record = orjson.loads((_stage(tmp_path / "killed", "sft") / "stage.json").read_bytes())["summary"]
    assert sft_record["resumed_from"] and sft_record["resumed_from"].split("checkpoint-")[1] in {"4", "6", "8", "10"}

    # every artifact equals the uninterrupted run's
    for name in ("sft", "dpo", "rlvr"):
        a, b = _weights(_stage(tmp_path / "whole", name)), _weights(_stage(tmp_path / "killed", name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    for name, files in (("mix", ["mixture/manifest.json"]), ("synth", ["synth/sft.parquet", "synth/preference.parquet"])):
        for file in files:
            left, right = _stage(tmp_path / "whole", name) / file, _stage(tmp_path / "killed", name) / file
            if file.endswith(".json"):
                assert orjson.loads(left.read_bytes())["files"] == orjson.loads(right.read_bytes())["files"]
            else:
                import polars as pl

                assert (
                    pl.read_parquet(left).drop("provenance", strict=False).equals(pl.read_parquet(right).drop("provenance", strict=False))
                ), file
    # negative control: training moved the weights away from the starting model
    from safetensors.torch import load_file

    start = load_file(str(tiny_chat_model / "model.safetensors"))
    rlvr = _weights(_stage(tmp_path / "whole", "rlvr"))
    assert max(float((rlvr[k] - start[k]).abs().max()) for k in start) > 1e-3


def test_a_failing_stage_is_named_and_the_rest_is_kept(
    tiny_chat_model: Path, tiny_reward_model: Path, shared_data: Path, tmp_path: Path
) -> None:
    pipeline = _write_inputs(tmp_path, shared_data, tiny_chat_model, tiny_reward_model, tmp_path / "out")
    text = pipeline.read_text()
    stages = text.split("  - name: synth")[0]  # curate, audit, mix
    invalid = stages + '  - name: sft\n    run: sft\n    spec: sft.yaml\n    set: {data.train: "{{mix}}", optim.lr: -1}\n'
    pipeline.write_text(invalid)
    refused = thresher("run", str(pipeline), "-q")  # a bad setting is caught when the pipeline is planned: nothing runs
    assert refused.returncode == 2 and "set optim.lr: Input should be greater than 0" in " ".join(refused.stderr.split())
    assert not (tmp_path / "out").exists()
    broken = (
        stages
        + f'  - name: sft\n    run: sft\n    spec: sft.yaml\n    set: {{data.train: "{{{{mix}}}}", model: {tmp_path / "no-model"}}}\n'
    )
    pipeline.write_text(broken)
    failed = thresher("run", str(pipeline), "-q")  # a failure only running can show: the earlier stages are kept
    assert failed.returncode == 1
    assert "stage sft (sft) failed" in failed.stderr and "no-model" in failed.stderr
    pipeline.write_text(broken.replace(f", model: {tmp_path / 'no-model'}", ", max_steps: 2"))
    fixed = thresher("run", str(pipeline))
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    for name in ("curate", "audit", "mix"):
        assert f"{name} ({'dedup' if name == 'curate' else 'decontaminate' if name == 'audit' else 'mix'}): cached" in fixed.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: x\nstages:\n  - name: a\n    run: mix\n  - name: b\n    run: sft\n    spec: {model: '{{c}}'}\n")
    refused = thresher("run", str(bad))
    assert refused.returncode == 2
    assert "bad.yaml:3: stages[0]: a mix stage needs spec" in refused.stderr
    bad.write_text("output_dir: x\nstages:\n  - name: b\n    run: sft\n    spec: {model: '{{c.model}}'}\n")
    refused = thresher("run", str(bad))
    assert refused.returncode == 2 and "stage 'b' refers to {{c}}, which is not an earlier stage" in refused.stderr, refused.stderr


def test_references_overrides_and_keys(tmp_path: Path) -> None:
    """{{NAME.OUTPUT}} resolves to the earlier stage's output; set: reaches into lists; the key follows input content."""
    from thresher.pipeline.run import plan
    from thresher.pipeline.spec import load_pipeline

    (tmp_path / "a.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    (tmp_path / "mix.yaml").write_text("kind: sft\nsources:\n  - {name: s, path: nowhere.jsonl, amount: {weight: 1}}\n")
    (tmp_path / "p.yaml").write_text(
        "output_dir: out\nstages:\n  - {name: c, run: dedup, inputs: [a.jsonl]}\n"
        "  - {name: m, run: mix, spec: mix.yaml, set: {sources.0.path: '{{c.removed}}', total: 5}}\n"
    )
    stages = plan(load_pipeline(tmp_path / "p.yaml"), tmp_path)
    assert stages[0].resolved["inputs"] == [str(tmp_path / "a.jsonl")]
    source = stages[1].resolved["spec"]["sources"][0]
    assert source["path"] == str(stages[0].folder / "removed.parquet") and stages[1].resolved["spec"]["total"] == 5
    assert stages[0].folder.name.startswith("c-") and stages[1].base == tmp_path.resolve()
    before = [s.key for s in stages]
    (tmp_path / "a.jsonl").write_text('{"messages": [{"role": "user", "content": "hi!"}, {"role": "assistant", "content": "yo"}]}\n')
    after = [s.key for s in plan(load_pipeline(tmp_path / "p.yaml"), tmp_path)]
    assert after[0] != before[0] and after[1] != before[1]  # new input content: this stage and the next re-run


def test_option_typos_fail_the_dry_run_with_file_line_and_a_suggestion(tmp_path: Path) -> None:
    from tests.helpers import thresher

    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"""output_dir: {tmp_path / "out"}
stages:
  - name: dd
    run: dedup
    inputs: [train.jsonl]
    options: {{methodz: exact}}
  - name: audit
    run: decontaminate
    train: ["{{{{dd}}}}"]
    bench: [gsm8k=test.jsonl]
    options:
      methods: [ngram]
      ngram: {{thresold: 0.4}}
""")
    done = thresher("run", str(pipeline), "--dry-run")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    err = " ".join(done.stderr.split())
    assert f"{pipeline}:6: stages[0].options.methodz:" in err and "did you mean 'method'?" in err
    assert f"{pipeline}:13: stages[1].options.ngram.thresold:" in err and "did you mean 'threshold'?" in err
    assert not (tmp_path / "out").exists()  # nothing ran
    # negative control: the same pipeline spelled right plans
    pipeline.write_text(pipeline.read_text().replace("methodz", "method").replace("thresold", "threshold"))
    (tmp_path / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    (tmp_path / "test.jsonl").write_text('{"question": "What is 2 + 2?", "answer": "#### 4"}\n')
    assert thresher("run", str(pipeline), "--dry-run").returncode == 0


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import time

    from tests.helpers import thresher

    levels = "\n".join(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        f"output_dir: out\nanchors:\n  l0: &l0 [lol]\n{levels}\nstages:\n  - {{name: a, run: dedup, inputs: [x], options: {{seed: *l9}}}}\n"
    )
    started = time.perf_counter()
    done = thresher("run", str(bomb), "--dry-run")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "YAML aliases here expand to more than 1,000,000 values" in " ".join(done.stderr.split())
    assert time.perf_counter() - started < 30
    # negative control: a few honest aliases are fine (the spec fails later, for its own reasons)
    bomb.write_text(
        "output_dir: out\nstages:\n  - {name: a, run: dedup, inputs: &files [x.jsonl], options: {}}\n"
        "  - {name: b, run: dedup, inputs: *files}\n"
    )
    assert "aliases" not in thresher("run", str(bomb), "--dry-run").stderr


def test_spec_typos_in_any_stage_fail_the_dry_run_before_anything_runs(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in an inline training config, in a referenced mix spec and in a referenced synth spec, all reported
    at once with the file and line each comes from; nothing runs."""
    from tests.helpers import thresher

    monkeypatch.setenv("THRESHER_SHARED_DATA", str(shared_data))
    demo = Path(__file__).parent.parent / "examples/pipeline/demo.yaml"
    text = demo.read_text()
    assert "optim: {lr: 2.0e-3" in text
    synth_spec = tmp_path / "synth.yaml"
    synth_spec.write_text(
        "seed: 0\nprompts:\n  - {name: g, path: train.jsonl, verifier: gsm8k}\ngenerator:\n  backend: transformers\n"
        "  model: policy\n  samplingg: {n: 2}\nscorers: [verifier]\n"
    )
    mix_spec = tmp_path / "mix.yaml"
    mix_spec.write_text("kind: sft\nsede: 1\nsources:\n  - {name: a, path: a.json}\n")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "- name: mix" in line)
    end = next(i for i, line in enumerate(lines) if "- name: sft" in line)
    pipeline_text = "\n".join(
        lines[:start]
        + [f"  - name: mix\n    run: mix\n    spec: {mix_spec}\n", f"  - name: synth\n    run: synth\n    spec: {synth_spec}\n"]
        + lines[end:]
    )
    pipeline_text = pipeline_text.replace("optim: {lr: 2.0e-3", "optim: {lrr: 2.0e-3").replace(
        "output_dir: ../../out/demo/pipeline", f"output_dir: {tmp_path / 'out'}"
    )
    pipeline = demo.parent / f"_typo_{tmp_path.name}.yaml"  # beside the demo, so its relative paths hold
    pipeline.write_text(pipeline_text)
    try:
        done = thresher("run", str(pipeline), "--dry-run")
    finally:
        pipeline.unlink()
    err = " ".join(done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lrr_line = next(i for i, line in enumerate(pipeline_text.splitlines(), 1) if "lrr" in line)
    assert f"{pipeline}:{lrr_line}: stages[4] (sft) spec.optim.lrr: unknown field" in err
    assert f"{mix_spec}:2: sede (the mix spec of stage mix): unknown field" in err
    assert f"{synth_spec}:7: generator.samplingg (the synth spec of stage synth): unknown field" in err
    assert not (tmp_path / "out").exists()
