"""`thresher train sft` end to end on LIMA with a tiny local model: held-out loss falls, the
checkpoint loads in transformers, metrics are logged; config errors name the line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import thresher


def _config(tmp_path: Path, model: Path, shared_data: Path) -> Path:
    path = tmp_path / "sft.yaml"
    path.write_text(f"""\
model: {model}
data:
  train: {shared_data}/sft/lima.json
  eval_rows: 48
max_length: 192
packing: true
pack_length: 768
gradient_accumulation: 2
optim: {{lr: 0.003, warmup_ratio: 0.0, schedule: constant}}
max_steps: 40
eval_every: 20
seed: 1
output_dir: {tmp_path / "run"}
""")
    return path


@pytest.mark.slow
def test_sft_lowers_held_out_loss_and_saves_a_loadable_checkpoint(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_chat_model, shared_data)
    done = thresher("train", "sft", str(config), "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    steps = [r for r in records if "loss" in r]
    assert len(evals) == 3 and evals[2] < evals[1] < evals[0] - 0.5, evals  # measured: 6.92 → 6.17 → 5.97 nats
    assert len(steps) == 40 and {"lr", "grad_norm", "tokens_per_s", "peak_memory_mb", "target_tokens"} <= set(steps[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "run/final"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "run/final"))
    assert model.config.vocab_size == len(tok) and tok.chat_template


def test_config_errors_and_overrides(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    from thresher.mixing.spec import SpecError
    from thresher.train.config import load_config

    config = _config(tmp_path, tiny_chat_model, shared_data)
    cfg = load_config(config, ["optim.lr=1e-4", "max_steps=3", "packing=false"])
    assert (cfg.optim.lr, cfg.max_steps, cfg.packing) == (1e-4, 3, False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("max_steps: 40", "max_steps: -1").replace("packing: true", "packing: yes please"))
    with pytest.raises(SpecError) as err:
        load_config(bad)
    assert "bad.yaml:6: packing:" in str(err.value) and "bad.yaml:10: max_steps: Input should be greater than 0" in str(err.value)
    examples = Path(__file__).resolve().parents[1] / "examples/train"
    assert load_config(examples / "sft.yaml").packing and load_config(examples / "dpo.yaml").dpo.loss == "dpo_norm"
    assert load_config(examples / "rlvr.yaml").rlvr.group_size == 16
    done = thresher("train", "sft", str(config), "nokey")
    assert done.returncode == 2 and "write KEY=VALUE" in done.stderr
    # with overrides, a file's own mistake keeps its real line, and a bad override is named as written
    with pytest.raises(SpecError) as err:
        load_config(bad, ["optim.lrr=2", "max_steps=5"])
    text = str(err.value)
    assert "bad.yaml:6: packing:" in text and "override optim.lrr=2: optim.lrr: unknown field" in text
    assert "max_steps" not in text  # the override fixed it
    done = thresher("train", "sft", str(config), "optim.lrr=2")
    assert done.returncode == 2 and "override optim.lrr=2" in done.stderr and "Traceback" not in done.stderr
