"""Token-level generation engines, shared by synthesis (under its chat layer, ``synth.backends``) and RLVR
rollouts: sample ``params.n`` completions per prompt (token ids, chat template already applied) and report, for
each sampled token, its log-probability under the engine's own sampling distribution (softmax(logits / T)).

- ``TransformersEngine`` (CPU, or a GPU without vLLM): batched, left-padded ``generate``. In RLVR it runs on the
  very model being trained, so there is no weight copy to keep in sync; the trainer's recomputed log-probs differ
  only by numerics (KV cache, padding), which it corrects with truncated importance sampling.
- ``VLLMEngine`` (CUDA): a vLLM ``LLM`` — offline for synthesis, or colocated with the trainer, which pushes its
  weights after each update (with sleep mode the engine frees its memory while the trainer runs).

A sample's ``ids`` end with the end-of-sequence token when it stopped on one (``finished``); its ``text`` never
holds it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from thresher.errors import ExternalError, InputError
from thresher.generation.sampling import SamplingParams


@dataclass
class Sample:
    """One sampled completion of one prompt."""

    ids: list[int]  # generated tokens; the end-of-sequence token included when the completion stopped on it
    logprobs: list[float]  # the engine's log p of each generated token at the sampling temperature
    finished: bool  # stopped on end-of-sequence rather than cut at max_new_tokens
    text: str  # the decoded completion, end-of-sequence and special tokens removed


class Engine(Protocol):
    name: str
    needs_weights: bool  # whether the trainer must push its weights after each update

    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int | None = None) -> list[list[Sample]]:
        """``params.n`` samples for each prompt (token ids, chat template already applied); ``seed`` overrides
        how the engine seeds (default: from ``params.seed``)."""
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
    policy is sharded over processes) on an unsharded copy that ``push_weights`` refreshes. ``logprobs``: report
    the sampler's log-probs (RLVR needs them; synthesis does not)."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, pad_id: int, batch_prompts: int = 64, copy: bool = False, logprobs: bool = True) -> None:
        self.model, self.tokenizer, self.pad_id, self.batch_prompts = model, tokenizer, pad_id, batch_prompts
        self.needs_weights = copy
        self.logprobs = logprobs
        self.end_ids = {i for i in [tokenizer.eos_token_id] if i is not None}

    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int | None = None) -> list[list[Sample]]:
        """Batches of ``batch_prompts``; batch i is seeded ``params.seed * 1_000_003 + offset`` (``seed + offset``
        when ``seed`` is given): reproducible, and different for different batches."""
        out: list[list[Sample]] = []
        for lo in range(0, len(prompts), self.batch_prompts):
            batch_seed = params.seed * 1_000_003 + lo if seed is None else seed + lo
            out += self._batch(prompts[lo : lo + self.batch_prompts], params, batch_seed)
        return out

    def _batch(self, prompts: list[list[int]], sampling: SamplingParams, seed: int) -> list[list[Sample]]:
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        sample = sampling.temperature > 0
        want_logprobs = sample and self.logprobs
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "do_sample": sample,
            "pad_token_id": self.pad_id,
            "num_return_sequences": sampling.n if sample else 1,
            "return_dict_in_generate": True,
            "output_logits": want_logprobs,
            "eos_token_id": sorted(self.end_ids) or None,
        }
        if sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:  # generation ends at a stop string; the chat layer cuts the text there
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        torch.manual_seed(seed & (2**63 - 1))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                result = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        finally:
            self.model.train(was_training)
        sequences = result.sequences[:, width:]
        new = sequences.cpu()
        logprobs = None
        if want_logprobs:  # (rows, steps): log p of each generated token under softmax(logits / T)
            # step by step on the device: the stacked logits in fp32 on the host would be rows × steps × vocab floats
            # (5 GB for 64 rows, 128 steps and a 152K vocabulary), and a host log-softmax over them seconds per rollout
            logprobs = torch.stack(
                [
                    torch.log_softmax(step.float() / sampling.temperature, -1).gather(-1, sequences[:, t, None])[:, 0]
                    for t, step in enumerate(result.logits)
                ],
                1,
            ).cpu()
        per_prompt = sampling.n if sample else 1
        samples: list[list[Sample]] = [[] for _ in prompts]
        for row, tokens in enumerate(new.tolist()):
            kept, finished = _cut_at_end(tokens, self.end_ids)
            lps = logprobs[row, : len(kept)].tolist() if logprobs is not None else [0.0] * len(kept)
            text = self.tokenizer.decode(kept[:-1] if finished else kept, skip_special_tokens=True)
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
    """A vLLM ``LLM``: ``offline`` for synthesis (tensor parallel), or ``colocated`` with the RLVR trainer on one GPU
    (in-process, so weights pass by reference; log-probs after temperature, as the trainer computes them)."""

    name = "vllm"
    needs_weights = True

    def __init__(self, llm: Any, sleep_mode: bool = False) -> None:
        self.llm = llm
        self.tokenizer: Any = llm.get_tokenizer()
        self.sleep_mode = sleep_mode
        self.asleep = False

    @classmethod
    def offline(cls, model: str, tokenizer: str | None = None, **options: Any) -> VLLMEngine:
        """An engine for synthesis; ``options`` go to ``vllm.LLM`` (tensor_parallel_size, gpu_memory_utilization, ...)."""
        try:
            from vllm import LLM
        except ImportError as e:
            raise ExternalError("the vllm backend needs vLLM: pip install 'thresher[gpu]'") from e
        return cls(LLM(model=model, **({"tokenizer": tokenizer} if tokenizer else {}), **options))

    @classmethod
    def colocated(cls, model: str, tokenizer: str | None, max_length: int, memory: float, sleep_mode: bool, seed: int) -> VLLMEngine:
        """An engine in the RLVR trainer's process, sharing its GPU."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: collective_rpc sees the trainer's tensors
        from vllm import LLM

        llm = LLM(
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
        return cls(llm, sleep_mode)

    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int | None = None) -> list[list[Sample]]:
        from vllm import SamplingParams as VSampling
        from vllm.inputs import TokensPrompt

        sampling = VSampling(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            logprobs=0,
            seed=params.seed if seed is None else seed,
            skip_special_tokens=True,
        )
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sampling, use_tqdm=False)
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

    def close(self) -> None:
        self.llm = None


def pick_engine(choice: str, device: str) -> str:
    """``auto``: vLLM on CUDA when it is installed, else transformers."""
    if choice != "auto":
        if choice == "vllm" and not device.startswith("cuda"):
            raise InputError("rlvr.engine: vllm needs a CUDA device; use transformers on the CPU")
        return choice
    if device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"
