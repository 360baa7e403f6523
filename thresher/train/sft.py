"""Supervised fine-tuning: assistant-only loss, packing without cross-talk, a loss normalized by
the target tokens of the whole accumulated batch (across processes), a Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from thresher.errors import InputError
from thresher.train.chat import Encoded
from thresher.train.config import TrainConfig
from thresher.train.data import encode_all, encoded_cache, held_out_split, load_chats, plan_micro_batches
from thresher.train.loop import LoopResult, run_task
from thresher.train.loss import sft_loss_sum
from thresher.train.metrics import Log
from thresher.train.packing import Batch, collate
from thresher.train.runtime import Runtime, evaluating


def batch_inputs(batch: Batch, device: str, dtype: torch.dtype) -> dict[str, Any]:
    mask = batch.attention_mask
    return {
        "input_ids": batch.input_ids.to(device),
        "labels": batch.labels.to(device),
        "position_ids": batch.position_ids.to(device),
        "attention_mask": None if mask is None else mask.to(device, dtype),
    }


def mean_context(seq_lens: list[list[int]]) -> float:
    """The mean number of keys a token attends to (its position + 1, averaged), for attention FLOPs."""
    tokens = sum(n for row in seq_lens for n in row)
    return sum(n * (n + 1) / 2 for row in seq_lens for n in row) / max(tokens, 1)


class SFTTask:
    """Micro-batches of encoded chats; each weighs its target-token count."""

    def __init__(self, config: TrainConfig, runtime: Runtime, train: list[Encoded], held_out: list[Encoded]) -> None:
        self.config, self.runtime, self.train = config, runtime, train
        self.accounting: dict[str, Any] = {}
        self.weight_name = "target_tokens"
        self.pack_length = config.pack_length or config.max_length
        self.lengths = [len(e.input_ids) for e in train]
        self.held_out = (
            [
                self._collate(rows, held_out)
                for rows in plan_micro_batches(
                    [len(e.input_ids) for e in held_out], config.packing, self.pack_length, config.rows_per_micro_batch, 0
                )
            ]
            if held_out
            else []
        )

    def _collate(self, rows: list[list[int]], examples: list[Encoded]) -> Batch:
        return collate([[examples[i] for i in row] for row in rows], self.runtime.pad_id, varlen=self.runtime.varlen)

    def plan(self, seed: int) -> list[list[list[int]]]:
        return plan_micro_batches(self.lengths, self.config.packing, self.pack_length, self.config.rows_per_micro_batch, seed)

    def weight(self, item: list[list[int]]) -> int:
        return sum(self.train[i].targets for row in item for i in row)

    def loss_sum(self, model: Any, item: list[list[int]]) -> tuple[torch.Tensor, dict[str, float], int, float]:
        batch = self._collate(item, self.train)
        summed, _ = sft_loss_sum(model, **batch_inputs(batch, self.runtime.device, self.runtime.dtype), chunk=self.config.loss_chunk)
        return summed, {}, sum(sum(row) for row in batch.seq_lens), mean_context(batch.seq_lens)

    def evaluate(self, model: Any) -> dict[str, float]:
        """Held-out loss per target token."""
        if not self.held_out:
            return {}
        total, count = 0.0, 0
        with evaluating(model):
            for batch in self.held_out:
                summed, n = sft_loss_sum(
                    model, **batch_inputs(batch, self.runtime.device, self.runtime.dtype), chunk=self.config.loss_chunk
                )
                total += float(summed)
                count += n
        return {"eval_loss": total / max(count, 1)}


def run_sft(config: TrainConfig, log: Log | None = None) -> LoopResult:
    """Train ``config.model`` on the chats of ``config.data``; returns steps, held-out losses and the final checkpoint."""

    def build(runtime: Runtime, _resume: Path | None) -> SFTTask:
        train_chats, eval_chats = held_out_split(
            load_chats(config.data.train), load_chats(config.data.eval) if config.data.eval else None, config.data.eval_rows, config.seed
        )
        cache = encoded_cache(config)
        train = encode_all(runtime.tokenizer, train_chats, config.max_length, cache)
        if not train:
            raise InputError(f"{config.data.train}: no rows with assistant tokens to train on")
        task = SFTTask(config, runtime, train, encode_all(runtime.tokenizer, eval_chats, config.max_length, cache))
        task.accounting = {
            "rows": len(train_chats),
            "rows_trained": len(train),
            "rows_without_targets": len(train_chats) - len(train),
            "held_out_rows": len(eval_chats),
        }
        return task

    return run_task(config, build, log, command="train sft")
