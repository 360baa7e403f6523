"""RLVR parts in process: the rollout engine's log-probs against the trainer's, rewards, filtering and accounting,
several updates per rollout with a KL term, and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from tests.addition_task import make_addition_model, write_addition_data
from thresher.generation.engines import Sample, TransformersEngine
from thresher.generation.sampling import SamplingParams
from thresher.train.chat import IGNORE, Encoded
from thresher.train.config import RLVRConfig, TrainConfig
from thresher.train.loss import target_terms
from thresher.train.packing import collate
from thresher.train.rewards import score
from thresher.train.sft import batch_inputs


@pytest.fixture(scope="module")
def task_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rlvr-parts")
    return {
        "model": make_addition_model(root / "model", hidden=32, layers=2),
        **write_addition_data(root / "data", sft=10, rlvr=64, held_out=16, digits=2),
    }


def tokenizer_and_model(folder: Path) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def test_engine_logprobs_equal_the_trainers(task_files: dict[str, Path]) -> None:
    """The log-probs the engine reports for its samples equal the trainer's recomputation at the same temperature
    (so the importance ratio is 1 up to numerics); at another temperature they do not (negative control)."""
    tokenizer, model = tokenizer_and_model(task_files["model"])
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": f"{a}+{b}"}], tokenize=False, add_generation_prompt=True)
        for a, b in [(3, 45), (12, 7), (99, 1)]
    ]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    engine = TransformersEngine(model, tokenizer, tokenizer.pad_token_id, batch_prompts=2)
    samples = engine.generate(ids, SamplingParams(n=4, max_tokens=8, temperature=0.7, seed=3))
    assert [len(g) for g in samples] == [4, 4, 4]
    flat = [(p, s) for p, group in zip(ids, samples, strict=True) for s in group]
    assert any(s.finished for _, s in flat) or all(len(s.ids) == 8 for _, s in flat)
    examples = [[Encoded(p + s.ids, [IGNORE] * len(p) + s.ids)] for p, s in flat]
    batch = collate(examples, tokenizer.pad_token_id)
    engine_logp = torch.tensor([x for _, s in flat for x in s.logprobs])
    with torch.no_grad():
        for temperature, close in ((0.7, True), (1.0, False)):
            logp, _, entropy = target_terms(model, **batch_inputs(batch, "cpu", torch.float32), temperature=temperature, with_entropy=True)
            error = float((logp - engine_logp).norm() / engine_logp.norm())
            assert (error < 1e-5) == close, (temperature, error)
            assert entropy is not None and entropy.shape == logp.shape and bool((entropy >= 0).all())
    # the same seed gives the same samples; another seed other samples
    again = engine.generate(ids, SamplingParams(n=4, max_tokens=8, temperature=0.7, seed=3))
    other = engine.generate(ids, SamplingParams(n=4, max_tokens=8, temperature=0.7, seed=4))
    assert [s.ids for g in again for s in g] == [s.ids for _, s in flat]
    assert [s.ids for g in other for s in g] != [s.ids for _, s in flat]


def test_rewards_weighted_verifiers_format_length_and_truncation() -> None:
    texts = ["57", "the answer is 57", "56", "57 57 57"]
    truths = ["57"] * 4
    finished = np.array([True, True, True, False])
    lengths = np.array([2.0, 16.0, 2.0, 8.0])
    base = score(texts, truths, ["gsm8k"] * 4, [""] * 4, finished, lengths, RLVRConfig(), {})
    assert base.rewards.tolist() == [1.0, 1.0, 0.0, 1.0] and base.solved.tolist() == [True, True, False, True]
    config = RLVRConfig(
        verifiers={"gsm8k": 1.0, "exact": 0.5},
        format_pattern=r"^\d+$",
        format_weight=0.25,
        length_weight=0.1,
        max_new_tokens=16,
        truncated="penalize",
        truncated_penalty=1.0,
    )
    got = score(texts, truths, [None] * 4, [""] * 4, finished, lengths, config, {})
    expected = [1 + 0.5 + 0.25 - 0.1 * 2 / 16, 1 + 0 + 0 - 0.1, 0 + 0 + 0.25 - 0.1 * 2 / 16, 1 + 0 + 0 - 0.1 * 8 / 16 - 1]
    np.testing.assert_allclose(got.rewards, expected)
    assert got.solved.tolist() == [True, False, False, False]  # every verifier must give full marks
    assert set(got.by_verifier) == {"gsm8k", "exact"}
    held_out = score(texts, truths, [None] * 4, [""] * 4, finished, lengths, config, {}, verifiers_only=True)
    np.testing.assert_allclose(held_out.rewards, [1.5, 1.0, 0.0, 1.0])


def _config(task_files: dict[str, Path], out: Path, **rlvr: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": str(task_files["model"]),
            "data": {"train": str(task_files["rlvr"]), "eval": str(task_files["held_out"])},
            "max_length": 32,
            "pack_length": 128,
            "optim": {"lr": 1e-3, "warmup_ratio": 0.0, "schedule": "constant"},
            "output_dir": str(out),
            "seed": 5,
            "rlvr": {
                "group_size": 4,
                "prompts_per_rollout": 8,
                "rollouts": 3,
                "max_new_tokens": 6,
                "length_weight": 1.0,
                "temperature": 1.0,
                **rlvr,
            },
        }
    )


def _rows(out: Path) -> list[dict]:
    return [orjson.loads(line) for line in (out / "metrics.jsonl").read_bytes().splitlines()]


def test_build_batch_filters_and_accounts(task_files: dict[str, Path], tmp_path: Path) -> None:
    from thresher.train.rlvr import Prompt, RLVRTask, build_batch

    tokenizer, _ = tokenizer_and_model(task_files["model"])
    end = tokenizer.eos_token_id
    digit = {d: tokenizer.convert_tokens_to_ids(d) for d in "0123456789"}

    def sample(text: str, finished: bool = True) -> Sample:
        ids = [digit[c] for c in text] + ([end] if finished else [])
        return Sample(ids, [-0.5] * len(ids), finished, text)

    prompts = [Prompt([2, 6, 7], "1+2", "3", "gsm8k"), Prompt([2, 6, 8], "1+3", "4", "gsm8k")]
    samples = [
        [sample("3"), sample("4"), sample("3", finished=False), sample("3")],  # mixed: informative
        [sample("5"), sample("5"), sample("6"), sample("7")],
    ]  # all wrong: zero variance
    for mode, trained, truncated in (("mask", 3, 1), ("keep", 4, 0), ("penalize", 4, 0)):
        config = _config(task_files, tmp_path, group_size=4, truncated=mode, length_weight=0.0)
        task = RLVRTask(config, None, [], [], None)  # type: ignore[arg-type]
        stats = build_batch(task, prompts, samples, seed=0)
        r = stats.record
        assert (r["completions"], r["completions_trained"], r["removed_zero_variance"], r["removed_truncated"]) == (
            8,
            trained,
            4,
            truncated,
        ), (mode, r)
        assert r["zero_variance_groups"] == 1 and r["solved"] == pytest.approx(3 / 8)
        assert len(task.batch.examples) == trained
        first = task.batch.examples[0]
        assert first.input_ids == [2, 6, 7, digit["3"], end] and first.labels == [IGNORE] * 3 + [digit["3"], end]
        adv = task.batch.advantages.tolist()
        if mode == "penalize":  # the truncated right answer scores 1 − 1 = 0, below the two finished right ones
            assert adv[2] < 0 < adv[0]
        if mode == "keep":  # three right of four: A = (1 − 0.75) / std for the right ones
            assert adv == pytest.approx([1 / np.sqrt(3), -np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)], rel=1e-5)


def test_several_updates_with_kl_log_ratios_and_resume(task_files: dict[str, Path], tmp_path: Path) -> None:
    """Two mini-batches × two passes per rollout: after the first step the policy differs from the one that sampled
    (ratio ≠ 1, KL > 0). Resuming from the rollout-1 checkpoint reproduces the uninterrupted run's weights."""
    from safetensors.torch import load_file

    from thresher.train.rlvr import run_rlvr

    extra = {"steps_per_rollout": 2, "updates_per_rollout": 2, "kl_beta": 0.1, "aggregation": "sequence"}
    whole = run_rlvr(_config(task_files, tmp_path / "whole", **extra).model_copy(update={"save_every": 4}))
    assert whole.steps == 12
    rows = _rows(tmp_path / "whole")
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 12 and rows[0]["rollouts"] == 3 and rows[0]["total_steps"] == 12
    first_of_rollout, later = steps[0], steps[1:4]
    assert first_of_rollout["ratio"] == pytest.approx(1.0, abs=1e-5) and first_of_rollout["kl"] == pytest.approx(0, abs=1e-6)
    assert any(abs(r["ratio"] - 1) > 1e-4 for r in later) and any(r["kl"] > 0 for r in later)
    assert all(0 <= r["clip_fraction"] <= 1 for r in steps) and any(r["clip_fraction"] > 0 for r in steps)
    assert (tmp_path / "whole" / "checkpoint-4").is_dir() and (tmp_path / "whole" / "checkpoint-8").is_dir()
    assert len([r for r in rows if "eval_pass@1" in r]) == 2  # at the start and the end (eval_every unset)

    resumed_config = _config(task_files, tmp_path / "whole", **extra).model_copy(
        update={"resume_from": str(tmp_path / "whole" / "checkpoint-4"), "output_dir": str(tmp_path / "whole")}
    )
    final = load_file(str(tmp_path / "whole" / "final" / "model.safetensors"))
    resumed = run_rlvr(resumed_config)
    assert resumed.steps == 12
    again = load_file(str(tmp_path / "whole" / "final" / "model.safetensors"))
    for key, value in final.items():
        assert torch.equal(value, again[key]), key


def test_rows_with_an_unknown_verifier_are_an_error(task_files: dict[str, Path], tmp_path: Path) -> None:
    from thresher.train.rlvr import run_rlvr

    rows = [orjson.loads(line) for line in task_files["rlvr"].read_bytes().splitlines()]
    rows[3]["verifier"] = "gsm8kk"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    config = _config(task_files, tmp_path / "out").model_copy(
        update={"data": TrainConfig.model_validate({"model": "m", "data": {"train": str(bad)}}).data}
    )
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 4: unknown verifier 'gsm8kk'"):
        run_rlvr(config)
    fine = config.model_copy(update={"rlvr": config.rlvr.model_copy(update={"verifiers": {"gsm8k": 1.0}, "rollouts": 1})})
    assert run_rlvr(fine).steps == 1


def test_two_gloo_processes_under_fsdp2_equal_one_process(task_files: dict[str, Path], tmp_path: Path) -> None:
    """Under torchrun the policy is sharded (FSDP2), each process generates every other chunk of prompts on an
    unsharded copy refreshed after each update, and the micro-batches of each step are split between processes:
    the run equals the one-process run (samples, rewards, losses, weights)."""
    import os
    import subprocess
    import sys

    import yaml
    from safetensors.torch import load_file

    config = _config(task_files, tmp_path / "unused", steps_per_rollout=2, generation_batch=4, kl_beta=0.05)
    data = config.model_dump(mode="json", exclude_defaults=True)
    data.update(device="cpu", packing=False, rows_per_micro_batch=3)
    path = tmp_path / "rlvr.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "train", "rlvr", str(path), f"output_dir={tmp_path / 'one'}", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "thresher.cli",
            "train",
            "rlvr",
            str(path),
            f"output_dir={tmp_path / 'two'}",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-5000:]
    a = [r for r in _rows(tmp_path / "one") if "loss" in r]
    b = [r for r in _rows(tmp_path / "two") if "loss" in r]
    assert len(a) == len(b) == 6 and _rows(tmp_path / "two")[0]["processes"] == 2
    for x, y in zip(a, b, strict=True):
        for key in ("completions_trained", "reward_mean", "response_length"):
            assert x.get(key) == y.get(key), (key, x, y)
        for key in ("loss", "kl", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), (key, x, y)
    assert any(r["completions_trained"] for r in a) and any(r["kl"] > 0 for r in a)
    wa, wb = load_file(tmp_path / "one/final/model.safetensors"), load_file(tmp_path / "two/final/model.safetensors")
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-5)
    w0 = load_file(task_files["model"] / "model.safetensors")  # negative control: training moved the weights
    assert max(float((wa[k] - w0[k]).abs().max()) for k in wa) > 1e-3


@pytest.mark.parametrize("aggregation", ["token", "sequence", "dr_grpo"])
def test_micro_batch_sums_over_the_step_normalizer_give_each_aggregation(
    task_files: dict[str, Path], tmp_path: Path, aggregation: str
) -> None:
    """With the policy that sampled (ratio 1, no clipping) the step loss is −(mean advantage) under each aggregation's
    weighting: per token (DAPO), per completion (GRPO), per completion × max_new_tokens (Dr GRPO). Split into
    micro-batches, the sums over the step's normalizer give the same value (float64 formula)."""
    from thresher.train.loss import TargetLogprobs
    from thresher.train.rlvr import RLVRTask, RolloutBatch
    from thresher.train.runtime import Runtime

    tokenizer, model = tokenizer_and_model(task_files["model"])
    config = _config(task_files, tmp_path, aggregation=aggregation, max_new_tokens=6)
    runtime = Runtime("cpu", torch.float32, 0, 1, model, TargetLogprobs(model), tokenizer, tokenizer.pad_token_id)
    task = RLVRTask(config, runtime, [], [], None)
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 3, 6, 2, 5]
    examples = [Encoded([2, 6, 7] + [8 + (k % 5)] * n, [IGNORE] * 3 + [8 + (k % 5)] * n) for k, n in enumerate(lengths)]
    advantages = torch.randn(len(lengths), generator=gen, dtype=torch.float64)
    task.batch = RolloutBatch(examples, advantages.float(), [torch.zeros(n) for n in lengths])
    task.batch.generation_logp = task.logprobs_of(runtime.trainable)  # the sampler's own log-probs: importance weight 1
    items = [[0, 1], [2], [3, 4]]
    normalizer = sum(task.weight(i) for i in items)
    total = sum(float(task.loss_sum(runtime.trainable, i)[0].detach()) for i in items) / normalizer
    a, n = advantages.numpy(), np.array(lengths, dtype=np.float64)
    expected = {"token": -(a * n).sum() / n.sum(), "sequence": -a.mean(), "dr_grpo": -(a * n).sum() / (len(n) * 6)}[aggregation]
    assert total == pytest.approx(expected, rel=1e-5, abs=1e-7)
    others = {
        k: v
        for k, v in {"token": -(a * n).sum() / n.sum(), "sequence": -a.mean(), "dr_grpo": -(a * n).sum() / (len(n) * 6)}.items()
        if k != aggregation
    }
    assert all(abs(total - v) > 1e-3 for v in others.values())  # the three weightings differ on these lengths
