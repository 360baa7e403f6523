"""The training config: YAML validated with pydantic (errors name the line and field), with
``key=value`` overrides from the command line (``optim.lr=1e-5``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from thresher.config import Strict as BaseStrict
from thresher.config import load_yaml, parse_spec, read_spec_text, validation_messages
from thresher.errors import SpecError


class Strict(BaseStrict):
    # inf and nan are refused everywhere in training configs: `optim.lr=.inf` once trained to NaN weights and exited 0
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(Strict):
    train: str  # a canonical Parquet/JSONL file, any input Thresher reads, or a mixture directory
    eval: str | None = None
    eval_rows: int = Field(default=0, ge=0)  # without ``eval``: hold out this many rows of train (seeded)
    cache_encoded: bool = True  # keep encoded chats in the Thresher cache ($THRESHER_CACHE_DIR/encoded): a rerun encodes nothing


class OptimConfig(Strict):
    lr: float = Field(default=5e-6, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(default=0.03, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    # a step whose loss or gradient norm is not finite stops training with an error naming the step; with
    # N > 0, up to N such steps are skipped instead (no update) before it stops
    skip_nonfinite_steps: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _betas(self) -> OptimConfig:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must each lie in [0, 1), got {list(self.betas)}")
        return self


class DPOConfig(Strict):
    loss: Literal["sigmoid", "dpo_norm", "ipo", "simpo"] = "dpo_norm"
    beta: float = Field(default=5.0, gt=0)  # Tülu 3: dpo_norm with beta 5 (and lr 5e-7)
    simpo_gamma: float = 0.5
    reference_model: str | None = None  # default: the policy's starting weights
    cache_dir: str | None = None  # reference log-probs; default ~/.cache/thresher/reference_logprobs


class RLVRConfig(Strict):
    """Reinforcement learning with verifiable rewards (GRPO family). Each rollout samples ``group_size`` completions
    for ``prompts_per_rollout`` prompts, scores them, and takes ``steps_per_rollout × updates_per_rollout``
    optimizer steps on them."""

    group_size: int = Field(default=8, ge=2)
    prompts_per_rollout: int = Field(default=16, gt=0)
    rollouts: int | None = Field(default=None, gt=0)  # default: ``epochs`` passes over the prompts (or from max_steps)
    max_new_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    steps_per_rollout: int = Field(default=1, gt=0)  # mini-batches (optimizer steps) per pass over a rollout
    updates_per_rollout: int = Field(default=1, gt=0)  # passes over each rollout (PPO epochs)
    # token: mean over the step's tokens (DAPO); sequence: mean per completion, then over completions (GRPO);
    # dr_grpo: the step's token sum over completions × max_new_tokens (no length bias, Dr GRPO)
    aggregation: Literal["token", "sequence", "dr_grpo"] = "token"
    normalize_std: bool = True  # false: Dr GRPO (advantages not divided by the group's std)
    clip_low: float = Field(default=0.2, ge=0, lt=1)
    clip_high: float = Field(default=0.28, ge=0)  # DAPO's clip-higher
    kl_beta: float = Field(default=0.0, ge=0)  # 0: no reference model is loaded
    kl_estimator: Literal["k1", "k3"] = "k3"
    reference_model: str | None = None  # default: the policy's starting weights
    importance_cap: float = Field(default=2.0, gt=0)  # truncated importance sampling (generator vs trainer log-probs)
    filter_zero_variance: bool = True  # groups whose completions all score the same are not trained on
    truncated: Literal["keep", "mask", "penalize"] = "mask"  # completions cut at max_new_tokens
    truncated_penalty: float = Field(default=1.0, ge=0)  # subtracted from a truncated completion's reward (penalize)
    verifiers: dict[str, float] | None = None  # verifier → weight, each scoring every row; default: each row's own, weight 1
    format_pattern: str | None = None  # a regex; a completion that contains a match earns format_weight
    format_weight: float = 0.0
    length_weight: float = 0.0  # subtracted × (completion tokens / max_new_tokens)
    engine: Literal["auto", "transformers", "vllm"] = "auto"  # auto: vLLM on CUDA when installed
    vllm_memory: float = Field(default=0.35, gt=0, lt=1)  # GPU memory share for the colocated engine
    vllm_sleep: bool = True  # free the engine's memory while training (sleep/wake)
    eval_samples: int = Field(default=1, gt=0)  # held-out pass@1: mean over this many samples per prompt
    eval_temperature: float | None = Field(default=0.0, ge=0)  # 0: greedy; None: the rollout temperature
    generation_batch: int = Field(default=64, gt=0)  # prompts per generate call (transformers engine)
    shuffle_rewards: bool = False  # a negative control: rewards permuted across each rollout's completions (must not learn)


class TrainConfig(Strict):
    model: str
    tokenizer: str | None = None
    chat_template: str | None = None  # a Jinja template replacing the tokenizer's
    data: DataConfig
    max_length: int = Field(default=2048, gt=0)
    packing: bool = True
    pack_length: int | None = None  # tokens per packed row (default: max_length)
    rows_per_micro_batch: int = Field(default=4, gt=0)  # without packing
    gradient_accumulation: int = Field(default=1, gt=0)
    optim: OptimConfig = OptimConfig()
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    gradient_checkpointing: bool = False
    # auto: flash-attention 2 on CUDA when installed, else varlen on CUDA (packed rows without a T×T mask), sdpa on the CPU
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2", "varlen"] = "auto"
    # Triton kernels (fused linear log-probs; RMSNorm, RoPE, SwiGLU patched into Llama/Qwen/Mistral): auto = on CUDA;
    # triton = always (on the CPU only under TRITON_INTERPRET=1); torch = off (chunked PyTorch, for comparison)
    kernels: Literal["auto", "triton", "torch"] = "auto"
    seed: int = 0
    output_dir: str = "out/train"
    log_every: int = Field(default=1, gt=0)
    eval_every: int | None = Field(default=None, gt=0)
    save_every: int | None = Field(default=None, gt=0)  # resumable checkpoints OUTPUT_DIR/checkpoint-STEP
    save_total_limit: int | None = Field(default=None, gt=0)  # keep only the newest N checkpoints
    overwrite: bool = False  # a fresh run may replace an earlier run's output_dir with other settings
    resume_from: str | None = None  # a checkpoint-STEP folder, or "latest" (the newest in output_dir)
    device: str = "auto"
    loss_chunk: int = Field(default=1024, gt=0)  # tokens per LM-head chunk: the full logits are never held
    dpo: DPOConfig = DPOConfig()
    rlvr: RLVRConfig = RLVRConfig()

    @model_validator(mode="after")
    def _pack(self) -> TrainConfig:
        if self.pack_length is not None and self.pack_length < self.max_length:
            raise ValueError(f"pack_length {self.pack_length} is shorter than max_length {self.max_length}")
        return self


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data[a][b]… = value`` for ``a.b…``, creating sections; a number indexes a list (``sources.0.path``)."""
    keys = dotted.split(".")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise SpecError(f"override {dotted}: {key} is not an index of a list of {len(node)}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif last:
            node[key] = value
        else:
            node = node.setdefault(key, {})
            if not isinstance(node, dict | list):
                raise SpecError(f"override {dotted}: {key} is not a section")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config at ``path`` with ``key=value`` overrides applied (values parsed as YAML)."""
    path = Path(path)
    text = read_spec_text(path, "config")
    if not overrides:
        return parse_spec(text, str(path), TrainConfig)
    node, data = load_yaml(text, str(path))
    applied: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"override {item!r}: write KEY=VALUE, e.g. optim.lr=1e-5")
        key, value = item.split("=", 1)
        try:
            set_dotted(data, key.strip(), yaml.safe_load(value))
        except yaml.YAMLError as e:
            raise SpecError(f"override {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)})") from None
        applied[key.strip()] = item
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise SpecError("\n".join(validation_messages(e, str(path), node, applied))) from None
