"""Supervised fine-tuning: assistant-only loss, packing without cross-talk, a loss normalized by
the target tokens of the whole accumulated batch, metrics as JSONL, a Hugging Face checkpoint."""

from __future__ import annotations

import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch

from thresher.train.config import TrainConfig
from thresher.train.data import encode_all, load_chats, micro_batches, plan_micro_batches
from thresher.train.loss import sft_loss_sum
from thresher.train.packing import Batch

Log = Callable[[dict[str, Any]], None]


@dataclass
class SFTResult:
    steps: int
    eval_losses: list[tuple[int, float]]  # (step, held-out loss per target token)
    checkpoint: Path
    tokens_per_s: float


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _to(batch: Batch, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {"input_ids": batch.input_ids.to(device), "labels": batch.labels.to(device),
            "position_ids": batch.position_ids.to(device), "attention_mask": batch.attention_mask.to(device, dtype)}


def evaluate(model: torch.nn.Module, batches: list[Batch], device: str, dtype: torch.dtype, chunk: int) -> float:
    """Held-out loss per target token."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            summed, n = sft_loss_sum(model, **_to(batch, device, dtype), chunk=chunk)
            total += float(summed)
            count += n
    model.train(was_training)
    return total / max(count, 1)


def run_sft(config: TrainConfig, log: Log | None = None) -> SFTResult:
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    from thresher.device import pick_compute_path

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = pick_compute_path(config.device, announce=False).device
    dtype = torch.bfloat16 if config.precision == "bf16" or (config.precision == "auto" and device == "cuda") else torch.float32
    tokenizer: Any = AutoTokenizer.from_pretrained(config.tokenizer or config.model)
    if config.chat_template:
        tokenizer.chat_template = config.chat_template
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    model: Any = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype).to(device)
    if device == "cpu":
        model.config._attn_implementation = "sdpa"  # takes the block-diagonal 4-D mask
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()

    chats = load_chats(config.data.train)
    eval_chats = load_chats(config.data.eval) if config.data.eval else []
    if not config.data.eval and config.data.eval_rows:
        order = list(range(len(chats)))
        random.Random(config.seed).shuffle(order)
        held = set(order[: config.data.eval_rows])
        eval_chats = [c for i, c in enumerate(chats) if i in held]
        chats = [c for i, c in enumerate(chats) if i not in held]
    train = encode_all(tokenizer, chats, config.max_length)
    if not train:
        raise ValueError(f"{config.data.train}: no rows with assistant tokens to train on")
    pack_length = config.pack_length or config.max_length
    eval_batches = micro_batches(encode_all(tokenizer, eval_chats, config.max_length), pad_id, config.packing, pack_length,
                                 config.rows_per_micro_batch, 0) if eval_chats else []

    plan = plan_micro_batches([len(e.input_ids) for e in train], config.packing, pack_length, config.rows_per_micro_batch, 0)
    per_epoch = math.ceil(len(plan) / config.gradient_accumulation)
    total_steps = config.max_steps or max(1, int(per_epoch * config.epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, betas=config.optim.betas,
                                  weight_decay=config.optim.weight_decay, fused=device == "cuda")
    scheduler = get_scheduler(config.optim.schedule, optimizer, num_warmup_steps=int(config.optim.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = (out / "metrics.jsonl").open("wb")

    def emit(record: dict[str, Any]) -> None:
        metrics_file.write(orjson.dumps(record) + b"\n")
        metrics_file.flush()
        if log is not None:
            log(record)

    eval_losses: list[tuple[int, float]] = []
    if eval_batches:
        eval_losses.append((0, evaluate(model, eval_batches, device, dtype, config.loss_chunk)))
        emit({"step": 0, "eval_loss": eval_losses[-1][1]})
    step, epoch, tokens_seen, started = 0, 0, 0, time.perf_counter()
    queue: list[Batch] = []
    while step < total_steps:
        if not queue:
            queue = micro_batches(train, pad_id, config.packing, pack_length, config.rows_per_micro_batch, config.seed + epoch)
            epoch += 1
        group, queue = queue[: config.gradient_accumulation], queue[config.gradient_accumulation :]
        targets = sum(b.targets for b in group)  # normalize by the whole accumulated batch's target tokens
        step_started = time.perf_counter()
        loss_total = 0.0
        group_tokens = 0
        for batch in group:
            summed, _ = sft_loss_sum(model, **_to(batch, device, dtype), chunk=config.loss_chunk)
            (summed / targets).backward()
            loss_total += float(summed.detach())
            group_tokens += int((batch.input_ids != pad_id).sum())
        tokens_seen += group_tokens
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % config.log_every == 0 or step == total_steps:
            seconds = time.perf_counter() - step_started
            emit({"step": step, "epoch": epoch, "loss": loss_total / max(targets, 1), "lr": scheduler.get_last_lr()[0],
                  "grad_norm": grad_norm, "target_tokens": targets,
                  "tokens_per_s": group_tokens / max(seconds, 1e-9),
                  "peak_memory_mb": round(_peak_memory_mb(device), 1)})
        if eval_batches and ((config.eval_every and step % config.eval_every == 0) or step == total_steps):
            eval_losses.append((step, evaluate(model, eval_batches, device, dtype, config.loss_chunk)))
            emit({"step": step, "eval_loss": eval_losses[-1][1]})
    metrics_file.close()
    checkpoint = out / "final"
    model.save_pretrained(str(checkpoint))
    tokenizer.save_pretrained(str(checkpoint))
    return SFTResult(step, eval_losses, checkpoint, tokens_seen / max(time.perf_counter() - started, 1e-9))
