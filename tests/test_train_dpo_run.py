"""`thresher train dpo` end to end on HH-RLHF pairs with a tiny local model: held-out reward
accuracy rises above 0.5; reference log-probs are cached and reused; packed and padded pairs give
the same log-probs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import thresher


def _config(tmp_path: Path, model: Path, shared_data: Path) -> Path:
    path = tmp_path / "dpo.yaml"
    path.write_text(f"""\
model: {model}
data:
  train: {shared_data}/preference/hh-rlhf_harmless-base_test.jsonl.gz
  eval_rows: 300
max_length: 256
pack_length: 2048
gradient_accumulation: 4
optim: {{lr: 0.0003, warmup_ratio: 0.0, schedule: constant}}
dpo: {{loss: sigmoid, beta: 0.1, cache_dir: {tmp_path / "cache"}}}
max_steps: 24
eval_every: 12
seed: 1
output_dir: {tmp_path / "run"}
""")
    return path


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_dpo_raises_held_out_reward_accuracy_and_caches_reference_logprobs(
    tiny_chat_model: Path, shared_data: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, tiny_chat_model, shared_data)
    done = thresher("train", "dpo", str(config), "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    records = _records(tmp_path / "run")
    intro = records[0]
    assert intro["pairs"] == 2003 and intro["pairs_trained"] + intro["pairs_without_targets"] == 2003
    assert intro["reference_train"] == intro["reference_held_out"] == "computed"
    accuracy = [r["eval_reward_accuracy"] for r in records if "eval_reward_accuracy" in r]
    margins = [r["eval_reward_margin"] for r in records if "eval_reward_margin" in r]
    # measured: 0.0 (policy = reference, no margin) → 0.613 at step 20 → 0.613 at step 40, on 300 held-out pairs
    assert len(accuracy) == 3 and accuracy[-1] >= 0.56 and margins[-1] > 0, accuracy
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 24 and {
        "reward_accuracy",
        "reward_margin",
        "chosen_logps",
        "rejected_logps",
        "pairs",
        "tokens_per_s",
        "peak_memory_mb",
        "grad_norm",
    } <= set(steps[0])
    cache = list((tmp_path / "cache").glob("*.npy"))
    assert len(cache) == 2 and sum(f.stat().st_size for f in cache) == 8 * (2003 + 300) + 2 * 128  # 8 bytes a pair + .npy headers

    again = thresher("train", "dpo", str(config), "max_steps=1", f"output_dir={tmp_path / 'again'}", "-q")
    assert again.returncode == 0, again.stderr[-3000:]
    intro = _records(tmp_path / "again")[0]
    assert intro["reference_train"] == intro["reference_held_out"] == "cached"


def test_packed_pairs_give_the_same_logprobs_as_padded_rows(tiny_chat_model: Path, shared_data: Path) -> None:
    from thresher.train.config import TrainConfig
    from thresher.train.data import encode_pairs, load_pairs
    from thresher.train.dpo import DPOTask
    from thresher.train.runtime import load_causal_lm, load_tokenizer

    base = {"model": str(tiny_chat_model), "data": {"train": "unused"}, "max_length": 128, "rows_per_micro_batch": 3}
    tokenizer, pad_id = load_tokenizer(TrainConfig(**base))
    pairs = [
        p
        for p in encode_pairs(tokenizer, load_pairs(str(shared_data / "preference/hh-rlhf_harmless-base_test.jsonl.gz"))[:6], 128)
        if p is not None
    ]
    model = load_causal_lm(str(tiny_chat_model), "cpu", torch.float32)

    from thresher.train.loss import TargetLogprobs
    from thresher.train.runtime import Runtime

    runtime = Runtime("cpu", torch.float32, 0, 1, model, TargetLogprobs(model), tokenizer, pad_id)
    item = [[0, 1, 2]]
    packed = DPOTask(TrainConfig(**base, packing=True), runtime, pairs, []).reference_logprobs_of(pairs)(model, item)
    padded = DPOTask(TrainConfig(**base, packing=False), runtime, pairs, []).reference_logprobs_of(pairs)(model, [[0], [1], [2]])
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    assert packed.shape == (6,) and bool((packed < 0).all())
    # the reference cache key follows the template (through the encoding), the model and the precision
    from thresher.train.reference import cache_key

    tokenizer.chat_template = tokenizer.chat_template.replace("<|end|>", "<|end|>\n")
    retemplated = [
        p
        for p in encode_pairs(tokenizer, load_pairs(str(shared_data / "preference/hh-rlhf_harmless-base_test.jsonl.gz"))[:6], 128)
        if p is not None
    ]
    key = cache_key(str(tiny_chat_model), torch.float32, pairs)
    assert key == cache_key(str(tiny_chat_model), torch.float32, list(pairs))
    assert key != cache_key(str(tiny_chat_model), torch.float32, retemplated)
    assert key != cache_key(str(tiny_chat_model), torch.bfloat16, pairs) != cache_key("other/model", torch.float32, pairs)
    # negative control: without the block-diagonal mask the second pair's tokens see the first pair's
    from thresher.train.packing import collate

    batch = collate([[s for i in (0, 1, 2) for s in (pairs[i].chosen, pairs[i].rejected)]], pad_id)
    leaky = batch.attention_mask.clone()
    leaky[0, 0] = torch.where(torch.ones_like(leaky[0, 0]).tril().bool(), 0.0, leaky[0, 0])
    from thresher.train.loss import example_logprobs

    wrong, _ = example_logprobs(model, batch.input_ids, batch.labels, batch.position_ids, leaky, batch.seq_lens)
    assert not torch.allclose(wrong[2:], padded[2:], rtol=1e-5, atol=1e-5)
