"""The training config: YAML validated with pydantic (errors name the line and field), with
``key=value`` overrides from the command line (``optim.lr=1e-5``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from thresher.config import Strict as BaseStrict
from thresher.config import parse_spec, read_spec_text, rebase_paths


class Strict(BaseStrict):
    # inf and nan are refused everywhere in training configs: `optim.lr=.inf` once trained to NaN weights and exited 0
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(Strict):
    train: str  # a canonical Parquet/JSONL file, any input Thresher reads, or a mixture directory
    # a held-out file (default: eval_rows rows of train, or none)
    eval: str | None = None
    eval_rows: int = Field(default=0, ge=0)  # without ``eval``: hold out this many rows of train (seeded)
    cache_encoded: bool = True  # keep encoded chats in the Thresher cache ($THRESHER_CACHE_DIR/encoded): a rerun encodes nothing


class OptimConfig(Strict):
    # peak learning rate (AdamW)
    lr: float = Field(default=5e-6, gt=0)
    # AdamW weight decay
    weight_decay: float = Field(default=0.0, ge=0)
    # AdamW betas
    betas: tuple[float, float] = (0.9, 0.999)
    # learning-rate schedule after warmup
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    # share of the steps spent warming up from 0
    warmup_ratio: float = Field(default=0.03, ge=0, le=1)
    # gradients are clipped to this norm
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
    # sigmoid (DPO), dpo_norm (length-normalized, Tülu 3), ipo or simpo (no reference model)
    loss: Literal["sigmoid", "dpo_norm", "ipo", "simpo"] = "dpo_norm"
    beta: float = Field(default=5.0, gt=0)  # Tülu 3: dpo_norm with beta 5 (and lr 5e-7)
    # simpo: the target reward margin
    simpo_gamma: float = 0.5
    reference_model: str | None = None  # default: the policy's starting weights
    cache_dir: str | None = None  # reference log-probs; default ~/.cache/thresher/reference_logprobs


class RLVRConfig(Strict):
    """Reinforcement learning with verifiable rewards (GRPO family). Each rollout samples ``group_size`` completions
    for ``prompts_per_rollout`` prompts, scores them, and takes ``steps_per_rollout × updates_per_rollout``
    optimizer steps on them."""

    # completions sampled per prompt (advantages are relative within the group)
    group_size: int = Field(default=8, ge=2)
    # prompts per rollout
    prompts_per_rollout: int = Field(default=16, gt=0)
    rollouts: int | None = Field(default=None, gt=0)  # default: ``epochs`` passes over the prompts (or from max_steps)
    # tokens a completion may have
    max_new_tokens: int = Field(default=256, gt=0)
    # rollout sampling temperature
    temperature: float = Field(default=1.0, gt=0)
    # rollout nucleus sampling
    top_p: float = Field(default=1.0, gt=0, le=1)
    steps_per_rollout: int = Field(default=1, gt=0)  # mini-batches (optimizer steps) per pass over a rollout
    updates_per_rollout: int = Field(default=1, gt=0)  # passes over each rollout (PPO epochs)
    # token: mean over the step's tokens (DAPO); sequence: mean per completion, then over completions (GRPO);
    # dr_grpo: the step's token sum over completions × max_new_tokens (no length bias, Dr GRPO)
    aggregation: Literal["token", "sequence", "dr_grpo"] = "token"
    normalize_std: bool = True  # false: Dr GRPO (advantages not divided by the group's std)
    # PPO clip below (ratio >= 1 - clip_low)
    clip_low: float = Field(default=0.2, ge=0, lt=1)
    clip_high: float = Field(default=0.28, ge=0)  # DAPO's clip-higher
    kl_beta: float = Field(default=0.0, ge=0)  # 0: no reference model is loaded
    # k1 or k3 estimate of the KL to the reference
    kl_estimator: Literal["k1", "k3"] = "k3"
    reference_model: str | None = None  # default: the policy's starting weights
    importance_cap: float = Field(default=2.0, gt=0)  # truncated importance sampling (generator vs trainer log-probs)
    filter_zero_variance: bool = True  # groups whose completions all score the same are not trained on
    truncated: Literal["keep", "mask", "penalize"] = "mask"  # completions cut at max_new_tokens
    truncated_penalty: float = Field(default=1.0, ge=0)  # subtracted from a truncated completion's reward (penalize)
    verifiers: dict[str, float] | None = None  # verifier → weight, each scoring every row; default: each row's own, weight 1
    format_pattern: str | None = None  # a regex; a completion that contains a match earns format_weight
    # reward added when format_pattern matches
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
    # the model to train: a local folder or a hub id (relative to this file when it exists there)
    model: str
    # a tokenizer other than the model's
    tokenizer: str | None = None
    chat_template: str | None = None  # a Jinja template replacing the tokenizer's
    # what to train (and evaluate) on
    data: DataConfig
    # tokens per row at most (longer rows are cut, counted in the log)
    max_length: int = Field(default=2048, gt=0)
    # pack rows into block-diagonal sequences of pack_length tokens (no cross-row attention)
    packing: bool = True
    pack_length: int | None = None  # tokens per packed row (default: max_length)
    rows_per_micro_batch: int = Field(default=4, gt=0)  # without packing
    # micro-batches per optimizer step
    gradient_accumulation: int = Field(default=1, gt=0)
    # the optimizer and schedule
    optim: OptimConfig = OptimConfig()
    # passes over the training rows (max_steps wins when set)
    epochs: float = Field(default=2.0, gt=0)
    # optimizer steps at most
    max_steps: int | None = Field(default=None, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # recompute activations in the backward pass (less memory, ~30% slower)
    gradient_checkpointing: bool = False
    # auto: flash-attention 2 on CUDA when installed, else varlen on CUDA (packed rows without a T×T mask), sdpa on the CPU
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2", "varlen"] = "auto"
    # Triton kernels (fused linear log-probs; RMSNorm, RoPE, SwiGLU patched into Llama/Qwen/Mistral): auto = on CUDA;
    # triton = always (on the CPU only under TRITON_INTERPRET=1); torch = off (chunked PyTorch, for comparison)
    kernels: Literal["auto", "triton", "torch"] = "auto"
    # seeds data order, held-out split, sampling and initialization
    seed: int = 0
    # where metrics.jsonl, checkpoints and final/ go (relative to this file)
    output_dir: str = "out/train"
    # a metrics line every N steps
    log_every: int = Field(default=1, gt=0)
    # held-out evaluation every N steps (and at the end)
    eval_every: int | None = Field(default=None, gt=0)
    save_every: int | None = Field(default=None, gt=0)  # resumable checkpoints OUTPUT_DIR/checkpoint-STEP
    save_total_limit: int | None = Field(default=None, gt=0)  # keep only the newest N checkpoints
    overwrite: bool = False  # a fresh run may replace an earlier run's output_dir with other settings
    resume_from: str | None = None  # a checkpoint-STEP folder, or "latest" (the newest in output_dir)
    # auto (CUDA when present), cpu, cuda or cuda:N
    device: str = "auto"
    loss_chunk: int = Field(default=1024, gt=0)  # tokens per LM-head chunk: the full logits are never held
    # DPO settings (train dpo)
    dpo: DPOConfig = DPOConfig()
    # RLVR settings (train rlvr)
    rlvr: RLVRConfig = RLVRConfig()

    @model_validator(mode="after")
    def _pack(self) -> TrainConfig:
        if self.pack_length is not None and self.pack_length < self.max_length:
            raise ValueError(f"pack_length {self.pack_length} is shorter than max_length {self.max_length}")
        return self


# paths a training config reads and writes: relative ones start at the config's folder (command-line overrides at
# the working directory, where they were written)
INPUT_PATHS = ("model", "tokenizer", "data.train", "data.eval", "resume_from", "dpo.reference_model", "rlvr.reference_model")
OUTPUT_PATHS = ("output_dir", "dpo.cache_dir")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config at ``path`` (relative paths in it taken from its folder) with ``key=value`` overrides applied
    (values parsed as YAML)."""
    path = Path(path)
    base = path.resolve().parent
    return parse_spec(
        read_spec_text(path, "config"), str(path), TrainConfig, overrides, lambda data: rebase_paths(data, base, INPUT_PATHS, OUTPUT_PATHS)
    )
