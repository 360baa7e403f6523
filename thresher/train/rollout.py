"""Rollout engines for RLVR: sample ``n`` completions per prompt from the current policy and report, for each
sampled token, its log-probability under the engine's own sampling distribution (softmax(logits / T)).

- ``TransformersEngine`` (CPU, or a GPU without vLLM): ``generate`` on the very model being trained, so there is
  no weight copy to keep in sync; the trainer's recomputed log-probs differ only by numerics (KV cache, padding).
- ``VLLMEngine`` (CUDA): a colocated vLLM engine in the trainer's process. After each update the trainer pushes
  its weights into the engine; with sleep mode the engine frees its memory while the trainer runs.

The trainer corrects the gap between the two log-probs with truncated importance sampling.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from thresher.errors import InputError


@dataclass
class Sample:
    """One sampled completion of one prompt."""

    ids: list[int]  # generated tokens; the end-of-sequence token included when the completion stopped on it
    logprobs: list[float]  # the engine's log p of each generated token at the sampling temperature
    finished: bool  # stopped on end-of-sequence rather than cut at max_new_tokens
    text: str  # the decoded completion, end-of-sequence and special tokens removed


@dataclass(frozen=True)
class Sampling:
    n: int
    max_new_tokens: int
    temperature: float  # 0: greedy
    top_p: float = 1.0
    seed: int = 0


class Engine(Protocol):
    name: str
    needs_weights: bool  # whether the trainer must push its weights after each update

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[list[Sample]]:
        """``sampling.n`` samples for each prompt (token ids, chat template already applied)."""
        ...

    def push_weights(self, named: Any) -> None:
        """Load the trainer's current weights ((name, tensor) pairs of the causal LM)."""
        ...

    def sleep(self) -> None: ...

    def wake(self) -> None: ...


def _cut_at_end(ids: list[int], end_ids: set[int]) -> tuple[list[int], bool]:
    for i, token in enumerate(ids):
        if token in end_ids:
            return ids[: i + 1], True
    return ids, False


class TransformersEngine:
    """Batched, left-padded ``generate``: on the live policy model in one process, or (``copy=True``, when the
    policy is sharded over processes) on an unsharded copy that ``push_weights`` refreshes."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, pad_id: int, batch_prompts: int = 64, copy: bool = False) -> None:
        self.model, self.tokenizer, self.pad_id, self.batch_prompts = model, tokenizer, pad_id, batch_prompts
        self.needs_weights = copy
        self.end_ids = {i for i in [tokenizer.eos_token_id] if i is not None}

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[list[Sample]]:
        out: list[list[Sample]] = []
        for lo in range(0, len(prompts), self.batch_prompts):
            out += self._batch(prompts[lo : lo + self.batch_prompts], sampling, lo)
        return out

    def _batch(self, prompts: list[list[int]], sampling: Sampling, offset: int) -> list[list[Sample]]:
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        sample = sampling.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": self.pad_id,
            "num_return_sequences": sampling.n if sample else 1,
            "return_dict_in_generate": True,
            "output_logits": sample,
            "eos_token_id": sorted(self.end_ids) or None,
        }
        if sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        torch.manual_seed(sampling.seed * 1_000_003 + offset)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                result = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        finally:
            self.model.train(was_training)
        new = result.sequences[:, width:].cpu()
        logprobs = None
        if sample:  # (rows, steps): log p of each generated token under softmax(logits / T)
            logits = torch.stack(result.logits, 1).float().cpu()
            logprobs = torch.log_softmax(logits / sampling.temperature, -1).gather(-1, new[:, : logits.shape[1], None])[..., 0]
        per_prompt = sampling.n if sample else 1
        samples: list[list[Sample]] = [[] for _ in prompts]
        for row, tokens in enumerate(new.tolist()):
            kept, finished = _cut_at_end(tokens, self.end_ids)
            lps = logprobs[row, : len(kept)].tolist() if logprobs is not None else [0.0] * len(kept)
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            samples[row // per_prompt].append(Sample(kept, lps, finished, text))
        if not sample and sampling.n > 1:
            samples = [group * sampling.n for group in samples]
        return samples

    def push_weights(self, named: Any) -> None:
        """Refresh the copy (the live model needs nothing)."""
        if self.needs_weights:
            missing, unexpected = self.model.load_state_dict(dict(named), strict=False)
            if unexpected or [m for m in missing if "rotary" not in m]:
                raise RuntimeError(f"the rollout copy does not match the policy: missing {missing}, unexpected {unexpected}")

    def sleep(self) -> None:
        pass

    def wake(self) -> None:
        pass


def _load_into_worker(worker: Any, weights: list[tuple[str, torch.Tensor]]) -> None:
    worker.model_runner.model.load_weights(weights=weights)


class VLLMEngine:
    """A vLLM engine colocated with the trainer on one GPU (in-process, so weights pass by reference)."""

    name = "vllm"
    needs_weights = True

    def __init__(self, model: str, tokenizer: str | None, max_length: int, memory: float, sleep_mode: bool, seed: int) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: collective_rpc sees the trainer's tensors
        from vllm import LLM

        self.sleep_mode = sleep_mode
        self.llm = LLM(
            model=model,
            tokenizer=tokenizer or model,
            dtype="bfloat16",
            gpu_memory_utilization=memory,
            max_model_len=max_length,
            enable_sleep_mode=sleep_mode,
            seed=seed,
            enable_prefix_caching=False,
            logprobs_mode="processed_logprobs",
        )  # log-probs after temperature, as the trainer computes them
        self.asleep = False

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[list[Sample]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            logprobs=0,
            seed=sampling.seed,
            skip_special_tokens=True,
        )
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        result = []
        for output in outputs:
            group = []
            for c in output.outputs:
                ids = list(c.token_ids)
                lps = [step[token].logprob for step, token in zip(c.logprobs or [], ids, strict=False)] if c.logprobs else [0.0] * len(ids)
                group.append(Sample(ids, lps, c.finish_reason == "stop", c.text))
            result.append(group)
        return result

    def push_weights(self, named: Any) -> None:
        weights = [(name, tensor.detach()) for name, tensor in named]
        self.llm.collective_rpc(_load_into_worker, args=(weights,))
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False


def pick_engine(choice: str, device: str) -> str:
    """``auto``: vLLM on CUDA when it is installed, else transformers."""
    if choice != "auto":
        if choice == "vllm" and not device.startswith("cuda"):
            raise InputError("rlvr.engine: vllm needs a CUDA device; use transformers on the CPU")
        return choice
    if device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"
