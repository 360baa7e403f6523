"""RLVR: the policy samples a group of completions per prompt, verifiers score them, and clipped policy-gradient
steps (``policy_loss``) move it toward the verified ones.

One rollout: ``prompts_per_rollout`` prompts × ``group_size`` samples from the engine (``thresher.generation``), rewards
(``rewards.py``), group advantages; groups whose rewards all agree and, by option, truncated completions are left
out (every completion is accounted for); then ``updates_per_rollout`` passes of ``steps_per_rollout`` optimizer
steps through the shared ``Optimization`` (the same AdamW, schedule, clipping, FSDP gradient scaling, checkpoints
and metrics as SFT and DPO). Log-probs come from the fused linear log-prob + entropy kernel at the sampling
temperature.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thresher.errors import InputError
from thresher.generation.engines import Engine, Sample, TransformersEngine, VLLMEngine, pick_engine
from thresher.generation.sampling import SamplingParams
from thresher.models import local_model
from thresher.records import Kind
from thresher.stats import load_canonical
from thresher.synth.load import prompt_part
from thresher.train.chat import IGNORE, Encoded
from thresher.train.checkpoint import prune_checkpoints
from thresher.train.config import TrainConfig
from thresher.train.data import held_out_split, input_files
from thresher.train.loop import LoopResult, Optimization, run_task, start_record
from thresher.train.loss import TargetLogprobs, example_segments, target_terms
from thresher.train.metrics import Log, MetricsLog
from thresher.train.packing import collate, first_fit
from thresher.train.policy_loss import group_advantages, policy_loss
from thresher.train.rewards import Scored, score, verifier_means
from thresher.train.runtime import Runtime, evaluating, full_state_dict, load_causal_lm, save_model
from thresher.train.sft import batch_inputs, mean_context
from thresher.verifiers import Verifier


@dataclass(frozen=True)
class Prompt:
    ids: list[int]  # the chat template applied, generation prompt included
    instruction: str  # the last user turn (verifiers such as ifeval read it)
    ground_truth: str
    verifier: str | None


def load_prompts(path: str) -> list[dict[str, Any]]:
    """RLVR rows (messages, ground_truth, verifier) of ``path`` or a mixture directory's shards."""
    rows: list[dict[str, Any]] = []
    for file in input_files(path):
        frame, _, _ = load_canonical(file, Kind.RLVR)
        rows += frame.select("messages", "ground_truth", "verifier", "provenance").to_dicts()
    return rows


def encode_prompts(tokenizer: Any, rows: list[dict[str, Any]], max_prompt: int, row_verifiers: bool) -> tuple[list[Prompt], dict[str, int]]:
    """Prompts ready to sample from, and how many rows were left out for what reason. With ``row_verifiers`` each
    row's verifier must be one Thresher has (checked here, before any sampling)."""
    from thresher.verifiers import NAMES

    kept: list[Prompt] = []
    removed = {"prompt_too_long": 0, "no_user_turn": 0}
    for row in rows:
        messages = prompt_part(row["messages"])
        if not messages or messages[-1]["role"] != "user":
            removed["no_user_turn"] += 1
            continue
        if row_verifiers and row.get("verifier") not in NAMES:
            where = row.get("provenance") or {}
            raise InputError(
                f"{where.get('file')}: line {where.get('line')}: unknown verifier {row.get('verifier')!r}; "
                f"known: {', '.join(NAMES)} (or set rlvr.verifiers)"
            )
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_prompt:
            removed["prompt_too_long"] += 1
            continue
        kept.append(Prompt(ids, messages[-1]["content"], row["ground_truth"] or "", row.get("verifier")))
    return kept, removed


@dataclass
class RolloutBatch:
    """The completions of one rollout that are trained on, with what the loss needs per completion."""

    examples: list[Encoded]
    advantages: torch.Tensor  # (completions,)
    generation_logp: list[torch.Tensor]  # per completion, the engine's log-probs of its tokens
    old_logp: list[torch.Tensor] | None = None  # the policy before this rollout's updates (None: one update, equal to logp)
    ref_logp: list[torch.Tensor] | None = None


class RLVRTask:
    """Micro-batches of completions (lists of indices into the current rollout) and their clipped policy loss."""

    def __init__(self, config: TrainConfig, runtime: Runtime, train: list[Prompt], held_out: list[Prompt], reference: Any | None) -> None:
        self.config, self.rl, self.runtime = config, config.rlvr, runtime
        self.train, self.held_out, self.reference = train, held_out, reference
        self.weight_name = {"token": "completion_tokens", "sequence": "completions", "dr_grpo": "completions_x_max_new_tokens"}[
            self.rl.aggregation
        ]
        self.accounting: dict[str, Any] = {}
        self.batch = RolloutBatch([], torch.zeros(0), [])
        self.verifiers: dict[str, Verifier] = {}
        self._orders: dict[int, list[int]] = {}

    # --- prompts ---
    def prompts_for(self, rollout: int) -> list[Prompt]:
        """The rollout's prompts: consecutive slices of seeded per-epoch permutations."""
        count, out = len(self.train), []
        for j in range(rollout * self.rl.prompts_per_rollout, (rollout + 1) * self.rl.prompts_per_rollout):
            epoch = j // count
            if epoch not in self._orders:
                order = list(range(count))
                random.Random(self.config.seed + epoch).shuffle(order)
                self._orders[epoch] = order
            out.append(self.train[self._orders[epoch][j % count]])
        return out

    # --- micro-batches ---
    def micro_batches(self, indices: list[int]) -> list[list[int]]:
        """``indices`` split into micro-batches: packs of up to pack_length tokens, or rows_per_micro_batch completions."""
        if self.config.packing:
            capacity = self.config.pack_length or self.config.max_length
            packs = first_fit([len(self.batch.examples[i].input_ids) for i in indices], capacity)
            return [[indices[k] for k in pack] for pack in packs]
        per = self.config.rows_per_micro_batch
        return [indices[lo : lo + per] for lo in range(0, len(indices), per)]

    def weight(self, item: list[int]) -> int:
        """What the micro-batch adds to the step's normalizer: its tokens, its completions, or completions × max_new_tokens."""
        if self.rl.aggregation == "token":
            return sum(self.batch.examples[i].targets for i in item)
        if self.rl.aggregation == "dr_grpo":
            return len(item) * self.rl.max_new_tokens
        return len(item)

    def _forward(self, model: Any, item: list[int], with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, Any]:
        batch = collate([[self.batch.examples[i]] for i in item], self.runtime.pad_id, varlen=self.runtime.varlen)
        logp, keep, entropy = target_terms(
            model,
            **batch_inputs(batch, self.runtime.device, self.runtime.dtype),
            chunk=self.config.loss_chunk,
            temperature=self.rl.temperature,
            with_entropy=with_entropy,
        )
        segment = example_segments(batch.seq_lens, batch.input_ids.shape[1]).to(logp.device)[keep]
        return logp, entropy, segment, batch

    def logprobs_of(self, model: Any) -> list[torch.Tensor]:
        """Per completion of the current rollout, the log-probs of its tokens under ``model`` (no gradient). Process r
        computes every r-th micro-batch (and, to pair FSDP's collectives, as many passes as the others); all
        processes receive all results."""
        runtime = self.runtime
        items = self.micro_batches(list(range(len(self.batch.examples))))
        mine = items[runtime.rank :: runtime.world]
        turns = math.ceil(len(items) / runtime.world)
        found: dict[int, torch.Tensor] = {}
        with evaluating(model):
            for k in range(turns):
                item = mine[k] if k < len(mine) else items[0]
                logp, _, _, _ = self._forward(model, item, False)
                if k < len(mine):
                    found.update(zip(item, torch.split(logp.float().cpu(), [self.batch.examples[i].targets for i in item]), strict=True))
        if runtime.world > 1:
            gathered: list[dict[int, torch.Tensor] | None] = [None] * runtime.world
            torch.distributed.all_gather_object(gathered, found)
            found = {i: t for part in gathered if part for i, t in part.items()}
        return [found[i] for i in range(len(self.batch.examples))]

    def loss_sum(self, model: Any, item: list[int]) -> tuple[torch.Tensor, dict[str, float], int, float]:
        rl, device = self.rl, self.runtime.device
        logp, entropy, segment, batch = self._forward(model, item, True)

        def gather(per: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([per[i] for i in item]).to(device)

        generation = gather(self.batch.generation_logp)
        old = gather(self.batch.old_logp) if self.batch.old_logp is not None else logp.detach().float()
        per_sequence = rl.aggregation == "sequence"
        result = policy_loss(
            logp.float(),
            old,
            self.batch.advantages[item].to(device),
            segment,
            len(item),
            rl.clip_low,
            rl.clip_high,
            rl.kl_beta,
            gather(self.batch.ref_logp) if self.batch.ref_logp is not None else None,
            rl.kl_estimator,
            generation,
            rl.importance_cap,
            "sequence" if per_sequence else "token",
        )
        w = self.weight(item)
        # the micro-batch's sum: of per-completion means (sequence), else of per-token terms (token, dr_grpo)
        summed = result.loss * (len(item) if per_sequence else logp.numel())
        with torch.no_grad():
            raw = torch.exp(old - generation)
            sums = {
                "clip_fraction": result.clip_fraction * w,
                "kl": result.kl * w,
                "ratio": result.ratio_mean * w,
                "entropy": float(entropy.mean()) * w if entropy is not None else 0.0,
                "importance_ratio": float(raw.mean()) * w,
                "importance_weight": result.importance_weight_mean * w,
                "importance_truncated": float((raw > rl.importance_cap).float().mean()) * w,
            }
        return summed, sums, sum(sum(r) for r in batch.seq_lens), mean_context(batch.seq_lens)


@dataclass
class RolloutStats:
    record: dict[str, Any]
    kept: int


@dataclass
class ScoredSamples:
    flat: list[tuple[Prompt, Sample]]  # every completion with its prompt, group after group
    finished: np.ndarray
    lengths: np.ndarray  # generated tokens per completion
    scored: Scored


def score_samples(task: RLVRTask, prompts: list[Prompt], samples: list[list[Sample]], verifiers_only: bool = False) -> ScoredSamples:
    """The samples of ``prompts`` flattened and scored (``verifiers_only``: no format, length or truncation terms)."""
    flat = [(p, s) for p, group in zip(prompts, samples, strict=True) for s in group]
    finished = np.array([s.finished for _, s in flat])
    lengths = np.array([len(s.ids) for _, s in flat], dtype=np.float64)
    scored = score(
        [s.text for _, s in flat],
        [p.ground_truth for p, _ in flat],
        [p.verifier for p, _ in flat],
        [p.instruction for p, _ in flat],
        finished,
        lengths,
        task.rl,
        task.verifiers,
        verifiers_only,
    )
    return ScoredSamples(flat, finished, lengths, scored)


def build_batch(task: RLVRTask, prompts: list[Prompt], samples: list[list[Sample]], seed: int) -> RolloutStats:
    """Score a rollout, compute advantages, keep what is trained on and set it as the task's batch; the rollout's metrics."""
    rl = task.rl
    started = time.perf_counter()
    result = score_samples(task, prompts, samples)
    scoring_s = time.perf_counter() - started
    flat, finished, lengths, scored = result.flat, result.finished, result.lengths, result.scored
    rewards = np.random.default_rng(seed).permutation(scored.rewards) if rl.shuffle_rewards else scored.rewards
    advantages = group_advantages(torch.tensor(rewards), rl.group_size, rl.normalize_std)
    informative = advantages.informative.numpy() if rl.filter_zero_variance else np.ones(len(flat), dtype=bool)
    trainable = informative & (finished | (rl.truncated != "mask"))
    trainable &= lengths > 0
    keep = np.flatnonzero(trainable)
    examples = [Encoded(p.ids + s.ids, [IGNORE] * len(p.ids) + s.ids) for p, s in (flat[i] for i in keep)]
    task.batch = RolloutBatch(
        examples, advantages.advantages[keep].float(), [torch.tensor(flat[i][1].logprobs, dtype=torch.float32) for i in keep]
    )
    groups = len(prompts)
    zero_variance = int((~advantages.informative.numpy()).reshape(groups, rl.group_size).all(1).sum())
    record = {
        "completions": len(flat),
        "completions_trained": len(keep),
        "removed_zero_variance": int((~informative).sum()),
        "removed_truncated": int((informative & ~finished).sum()) if rl.truncated == "mask" else 0,
        "removed_empty": int((informative & (finished | (rl.truncated != "mask")) & (lengths == 0)).sum()),
        "zero_variance_groups": zero_variance,
        "reward_mean": float(scored.rewards.mean()),
        "reward_std": float(scored.rewards.std()),
        "solved": float(scored.solved.mean()),
        **verifier_means(scored),
        "response_length": float(lengths.mean()),
        "truncated_fraction": float((~finished).mean()),
        "scoring_s": scoring_s,
    }
    assert (
        record["completions"]
        == record["completions_trained"] + record["removed_zero_variance"] + record["removed_truncated"] + record["removed_empty"]
    ), record
    return RolloutStats(record, len(keep))


def make_engine(config: TrainConfig, runtime: Runtime, weights: str) -> Engine:
    choice = pick_engine(config.rlvr.engine, runtime.device)
    if choice == "vllm":
        engine = VLLMEngine.colocated(
            local_model(weights),
            local_model(config.tokenizer, "tokenizer") if config.tokenizer else None,
            config.max_length,
            config.rlvr.vllm_memory,
            config.rlvr.vllm_sleep,
            config.seed,
        )
        engine.sleep()
        return engine
    if runtime.world > 1:  # the policy is sharded: generate with an unsharded copy, refreshed after each update
        copy = load_causal_lm(weights, runtime.device, runtime.dtype, runtime.attention).requires_grad_(False)
        return TransformersEngine(copy, runtime.tokenizer, runtime.pad_id, config.rlvr.generation_batch, copy=True)
    return TransformersEngine(runtime.model, runtime.tokenizer, runtime.pad_id, config.rlvr.generation_batch)


def generate_shared(engine: Engine, runtime: Runtime, prompts: list[Prompt], sampling: SamplingParams, chunk: int) -> list[list[Sample]]:
    """Samples for ``prompts``, generated in chunks of ``chunk`` prompts, process r taking every r-th chunk and all
    processes receiving all samples. Each chunk's seed depends only on its index, so the samples do not depend on
    the number of processes."""
    chunks = [prompts[lo : lo + chunk] for lo in range(0, len(prompts), chunk)]
    mine = {
        k: engine.generate([p.ids for p in chunks[k]], sampling.model_copy(update={"seed": sampling.seed * 1_000_033 + k}))
        for k in range(runtime.rank, len(chunks), runtime.world)
    }
    if runtime.world > 1:
        gathered: list[dict[int, list[list[Sample]]] | None] = [None] * runtime.world
        torch.distributed.all_gather_object(gathered, mine)
        mine = {k: v for part in gathered if part for k, v in part.items()}
    return [group for k in range(len(chunks)) for group in mine[k]]


def generation_chunk(task: RLVRTask, engine: Engine, prompts: int) -> int:
    """Prompts per generate call: ``generation_batch`` for transformers; vLLM batches best with a process's whole share."""
    if engine.name == "transformers":
        return task.rl.generation_batch
    return max(1, math.ceil(prompts / task.runtime.world))


def evaluate(task: RLVRTask, engine: Engine, seed: int) -> dict[str, float]:
    """Held-out pass@1 (the share of sampled completions every verifier accepts) and mean verifier reward."""
    if not task.held_out:
        return {}
    rl = task.rl
    temperature = rl.temperature if rl.eval_temperature is None else rl.eval_temperature
    samples = generate_shared(
        engine,
        task.runtime,
        task.held_out,
        SamplingParams(
            n=rl.eval_samples, max_tokens=rl.max_new_tokens, temperature=temperature, top_p=rl.top_p if temperature else 1.0, seed=seed
        ),
        generation_chunk(task, engine, len(task.held_out)),
    )
    result = score_samples(task, task.held_out, samples, verifiers_only=True)
    return {
        "eval_pass@1": float(result.scored.solved.mean()),
        "eval_reward": float(result.scored.rewards.mean()),
        "eval_response_length": float(result.lengths.mean()),
    }


def plan_rollouts(config: TrainConfig, prompts: int) -> int:
    rl = config.rlvr
    if rl.rollouts:
        return rl.rollouts
    if config.max_steps:
        return math.ceil(config.max_steps / (rl.steps_per_rollout * rl.updates_per_rollout))
    share = config.epochs * prompts / rl.prompts_per_rollout
    if share < 1:
        raise InputError(
            f"epochs={config.epochs:g} is less than one rollout ({rl.prompts_per_rollout} of {prompts} prompts): set epochs to at "
            f"least {rl.prompts_per_rollout / prompts:.3g}, rlvr.rollouts, or max_steps"
        )
    return math.ceil(share)


def _split(order: list[int], parts: int) -> list[list[int]]:
    size = math.ceil(len(order) / parts) if order else 0
    return [order[k * size : (k + 1) * size] for k in range(parts)]


def _crossed(step: int, taken: int, every: int | None) -> bool:
    """Whether the last ``taken`` steps, ending at ``step``, passed a multiple of ``every``."""
    return bool(every) and step // every > (step - taken) // every  # type: ignore[operator]


def train_rollouts(config: TrainConfig, runtime: Runtime, task: RLVRTask, log: Log | None = None, resume: Path | None = None) -> LoopResult:
    """The RLVR loop: rollout, score, update; evaluate and checkpoint at rollout boundaries."""
    rl = config.rlvr
    steps_per = rl.steps_per_rollout * rl.updates_per_rollout
    rollouts = plan_rollouts(config, len(task.train))
    total_steps = rollouts * steps_per
    optimization = Optimization(config, runtime, total_steps)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    position = {"step": 0, "rollout": 0}
    if resume is not None:
        position = optimization.restore(resume)
    metrics = MetricsLog(
        out, append=resume is not None, echo=log, enabled=runtime.is_main, resume_step=position["step"] if resume else None
    )
    engine = make_engine(config, runtime, str(resume) if resume else config.model)
    model = runtime.trainable
    evals: list[tuple[int, dict[str, float]]] = []

    def run_eval(step: int) -> None:
        engine.wake()
        result = evaluate(task, engine, config.seed + 7919)
        engine.sleep()
        if result:
            evals.append((step, result))
            metrics({"step": step, **result})

    if resume is None:
        metrics({**start_record(task, runtime, total_steps), "rollouts": rollouts, "engine": engine.name})
        run_eval(0)
    else:
        metrics({"resumed_from": str(resume), "at_step": position["step"]})
    step, tokens_seen, started = position["step"], 0, time.perf_counter()
    totals = {"generation_s": 0.0, "scoring_s": 0.0, "training_s": 0.0}
    for rollout in range(position["rollout"], rollouts):
        prompts = task.prompts_for(rollout)
        began = time.perf_counter()
        engine.wake()
        samples = generate_shared(
            engine,
            runtime,
            prompts,
            SamplingParams(
                n=rl.group_size,
                max_tokens=rl.max_new_tokens,
                temperature=rl.temperature,
                top_p=rl.top_p,
                seed=config.seed * 100_003 + rollout,
            ),
            generation_chunk(task, engine, len(prompts)),
        )
        engine.sleep()
        generation_s = time.perf_counter() - began
        stats = build_batch(task, prompts, samples, config.seed * 100_003 + rollout)
        generated = sum(len(s.ids) for group in samples for s in group)
        began = time.perf_counter()
        if steps_per > 1 and stats.kept:
            task.batch.old_logp = task.logprobs_of(model)
        if rl.kl_beta and stats.kept:
            task.batch.ref_logp = task.logprobs_of(task.reference)
        first = {
            "rollout": rollout + 1,
            **stats.record,
            "generation_s": generation_s,
            "generation_tokens_per_s": generated / max(generation_s, 1e-9),
        }
        rng = random.Random(config.seed * 7 + rollout)
        for _update in range(rl.updates_per_rollout):
            order = list(range(stats.kept))
            rng.shuffle(order)
            for part in _split(order, rl.steps_per_rollout):
                record = optimization.step(task, task.micro_batches(part) if part else [])
                step += 1
                tokens_seen += record.pop("tokens")
                if first or step % config.log_every == 0 or step == total_steps:
                    metrics({"step": step, **first, **record})
                first = {}
        training_s = time.perf_counter() - began
        for key, value in (("generation_s", generation_s), ("scoring_s", stats.record["scoring_s"]), ("training_s", training_s)):
            totals[key] += value
        metrics(
            {
                "step": step,
                "rollout": rollout + 1,
                "training_s": training_s,
                "rollout_s": generation_s + stats.record["scoring_s"] + training_s,
            }
        )
        if engine.needs_weights:
            began = time.perf_counter()
            weights = full_state_dict(runtime, everywhere=True)
            assert weights is not None
            engine.wake()
            engine.push_weights(weights.items())
            engine.sleep()
            totals["weight_sync_s"] = totals.get("weight_sync_s", 0.0) + time.perf_counter() - began
        if _crossed(step, steps_per, config.eval_every) and rollout + 1 < rollouts:
            run_eval(step)
        if _crossed(step, steps_per, config.save_every) and rollout + 1 < rollouts:
            optimization.save(out / f"checkpoint-{step}", {"step": step, "rollout": rollout + 1})
            if runtime.is_main:
                prune_checkpoints(out, config.save_total_limit)
    run_eval(step)
    elapsed = time.perf_counter() - started
    busy = sum(totals.values())
    metrics({"step": step, **totals, **{f"{k.removesuffix('_s')}_share": v / max(busy, 1e-9) for k, v in totals.items()}})
    metrics.close()
    final = out / "final"
    save_model(runtime, final)
    return LoopResult(step, evals, final, tokens_seen, elapsed)


def run_rlvr(config: TrainConfig, log: Log | None = None) -> LoopResult:
    """Train ``config.model`` with verifiable rewards on the RLVR rows of ``config.data``; held-out pass@1 in ``evals``."""

    def build(runtime: Runtime, _resume: Path | None) -> RLVRTask:
        rows = load_prompts(config.data.train)
        train_rows, eval_rows = held_out_split(
            rows, load_prompts(config.data.eval) if config.data.eval else None, config.data.eval_rows, config.seed
        )
        max_prompt = config.max_length - config.rlvr.max_new_tokens
        if max_prompt <= 0:
            raise InputError(
                f"max_length {config.max_length} leaves no room for a prompt before rlvr.max_new_tokens {config.rlvr.max_new_tokens}"
            )
        need = not config.rlvr.verifiers
        train, removed = encode_prompts(runtime.tokenizer, train_rows, max_prompt, need)
        held_out, removed_eval = encode_prompts(runtime.tokenizer, eval_rows, max_prompt, need)
        if not train:
            raise InputError(f"{config.data.train}: no prompts to train on ({removed})")
        reference = None
        if config.rlvr.kl_beta:
            lm = load_causal_lm(config.rlvr.reference_model or config.model, runtime.device, runtime.dtype, runtime.attention)
            reference = TargetLogprobs(lm.requires_grad_(False), runtime.trainable.backend).eval()
        task = RLVRTask(config, runtime, train, held_out, reference)
        task.accounting = {
            "rows": len(rows),
            "prompts_trained": len(train),
            "held_out_prompts": len(held_out),
            **{f"removed_{k}": v for k, v in removed.items()},
            **{f"held_out_removed_{k}": v for k, v in removed_eval.items()},
        }
        return task

    return run_task(config, build, log, loop=train_rollouts, command="train rlvr")
