"""Direct preference optimization (``sigmoid``, ``dpo_norm``, ``ipo``, ``simpo``) on chosen/rejected
pairs: reference log-probs computed once and cached, the loss averaged over the pairs of the whole
accumulated batch, metrics for reward accuracy, margins and the chosen/rejected log-probs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from thresher.errors import InputError
from thresher.train.config import TrainConfig
from thresher.train.data import EncodedPair, encode_pairs, encoded_cache, held_out_split, load_pairs, plan_micro_batches
from thresher.train.loop import LoopResult, run_task
from thresher.train.loss import example_logprobs
from thresher.train.metrics import Log
from thresher.train.packing import Batch, collate
from thresher.train.preference_loss import PreferenceLoss, preference_loss
from thresher.train.reference import DEFAULT_CACHE, PairBatch, reference_logprobs
from thresher.train.runtime import Runtime, evaluating
from thresher.train.sft import batch_inputs, mean_context


class DPOTask:
    """Micro-batches of pairs (a pair's two sequences packed together, or on two rows); each weighs its pair count."""

    def __init__(self, config: TrainConfig, runtime: Runtime, train: list[EncodedPair], held_out: list[EncodedPair]) -> None:
        self.config, self.runtime, self.train, self.held_out = config, runtime, train, held_out
        self.pack_length = config.pack_length or 2 * config.max_length
        self.reference = np.zeros((len(train), 2), dtype=np.float32)
        self.held_out_reference = np.zeros((len(held_out), 2), dtype=np.float32)
        self.accounting: dict[str, Any] = {}
        self.weight_name = "pairs"

    def plan_pairs(self, pairs: list[EncodedPair], seed: int) -> list[PairBatch]:
        return plan_micro_batches([p.length for p in pairs], self.config.packing, self.pack_length, self.config.rows_per_micro_batch, seed)

    def _collate(self, pairs: list[EncodedPair], item: PairBatch) -> Batch:
        if self.config.packing:
            groups = [[side for i in row for side in (pairs[i].chosen, pairs[i].rejected)] for row in item]
        else:
            groups = [[side] for row in item for i in row for side in (pairs[i].chosen, pairs[i].rejected)]
        return collate(groups, self.runtime.pad_id, varlen=self.runtime.varlen)

    def _logprobs(self, model: Any, pairs: list[EncodedPair], item: PairBatch) -> tuple[torch.Tensor, torch.Tensor, Batch]:
        batch = self._collate(pairs, item)
        inputs = batch_inputs(batch, self.runtime.device, self.runtime.dtype)
        sums, counts = example_logprobs(model, **inputs, seq_lens=batch.seq_lens, chunk=self.config.loss_chunk)
        return sums, counts, batch

    def _loss(
        self, model: Any, pairs: list[EncodedPair], reference: np.ndarray, item: PairBatch
    ) -> tuple[PreferenceLoss, torch.Tensor, Batch]:
        sums, counts, batch = self._logprobs(model, pairs, item)
        indices = [i for row in item for i in row]
        ref = torch.from_numpy(reference[indices]).to(sums.device, sums.dtype)
        dpo = self.config.dpo
        out = preference_loss(
            dpo.loss, dpo.beta, sums[0::2], sums[1::2], counts[0::2], counts[1::2], ref[:, 0], ref[:, 1], simpo_gamma=dpo.simpo_gamma
        )
        return out, sums.detach(), batch

    def reference_logprobs_of(self, pairs: list[EncodedPair]) -> Any:
        return lambda model, item: self._logprobs(model, pairs, item)[0]

    def plan(self, seed: int) -> list[PairBatch]:
        return self.plan_pairs(self.train, seed)

    def weight(self, item: PairBatch) -> int:
        return sum(len(row) for row in item)

    def loss_sum(self, model: Any, item: PairBatch) -> tuple[torch.Tensor, dict[str, float], int, float]:
        out, sums, batch = self._loss(model, self.train, self.reference, item)
        metrics = {k: v for k, v in out.metric_sums().items() if k != "loss"}
        metrics["chosen_logps"], metrics["rejected_logps"] = float(sums[0::2].sum()), float(sums[1::2].sum())
        return out.losses.sum(), metrics, sum(sum(row) for row in batch.seq_lens), mean_context(batch.seq_lens)

    def evaluate(self, model: Any) -> dict[str, float]:
        """Held-out loss, reward accuracy and margin, averaged over the held-out pairs."""
        if not self.held_out:
            return {}
        totals: dict[str, float] = {}
        with evaluating(model):
            for item in self.plan_pairs(self.held_out, 0):
                out, _, _ = self._loss(model, self.held_out, self.held_out_reference, item)
                for key, value in out.metric_sums().items():
                    totals[key] = totals.get(key, 0.0) + value
        return {f"eval_{key}": value / len(self.held_out) for key, value in totals.items()}


def _kept(encoded: list[EncodedPair | None]) -> list[EncodedPair]:
    return [p for p in encoded if p is not None]


def run_dpo(config: TrainConfig, log: Log | None = None) -> LoopResult:
    """Train ``config.model`` on the preference pairs of ``config.data``; returns steps, held-out metrics and the checkpoint."""

    def build(runtime: Runtime, resume: Path | None) -> DPOTask:
        rows, held_rows = held_out_split(
            load_pairs(config.data.train), load_pairs(config.data.eval) if config.data.eval else None, config.data.eval_rows, config.seed
        )
        train = _kept(encode_pairs(runtime.tokenizer, rows, config.max_length, encoded_cache(config)))
        held_out = _kept(encode_pairs(runtime.tokenizer, held_rows, config.max_length, encoded_cache(config)))
        if not train:
            raise InputError(f"{config.data.train}: no pairs whose completions keep a target token within max_length")
        task = DPOTask(config, runtime, train, held_out)
        sources = {}
        if config.dpo.loss != "simpo":
            reference = config.dpo.reference_model or config.model
            use_policy = config.dpo.reference_model is None and resume is None
            cache = Path(config.dpo.cache_dir) if config.dpo.cache_dir else DEFAULT_CACHE
            for name, pairs in (("train", train), ("held_out", held_out)):
                if pairs:
                    values, sources[name] = reference_logprobs(
                        runtime, reference, use_policy, cache, pairs, task.reference_logprobs_of(pairs), task.plan_pairs(pairs, 0)
                    )
                    if name == "train":
                        task.reference = values
                    else:
                        task.held_out_reference = values
        task.accounting = {
            "pairs": len(rows),
            "pairs_trained": len(train),
            "pairs_without_targets": len(rows) - len(train),
            "held_out_pairs": len(held_out),
            "held_out_without_targets": len(held_rows) - len(held_out),
            **{f"reference_{k}": v for k, v in sources.items()},
        }
        return task

    return run_task(config, build, log, command="train dpo")
