"""The optimization loop shared by SFT and DPO, and the optimizer step shared with RLVR.

A task says what one epoch's micro-batches are, what each weighs in the normalizer (target tokens
for SFT, pairs for DPO) and how to compute a micro-batch's summed loss. The loop takes
``gradient_accumulation × processes`` micro-batches per optimizer step, in an order that does not
depend on the number of processes (process r takes every r-th), divides the summed loss by the
whole step's weight, clips, steps AdamW and the schedule, logs, evaluates, and saves resumable
checkpoints. Every process plans the same epoch from the seed, so no data moves between them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from thresher.errors import EXIT_CANNOT_GO_ON, InputError, ThresherError
from thresher.io.outputs import locked
from thresher.train.checkpoint import load_trainer_state, prune_checkpoints, resolve_resume, save_checkpoint
from thresher.train.config import TrainConfig
from thresher.train.folder import check_output_dir, start_fresh
from thresher.train.metrics import Log, MetricsLog, peak_flops, peak_memory_mb, train_flops_per_token
from thresher.train.runtime import Runtime, finish, save_model, start


class StepTask(Protocol):
    accounting: dict[str, Any]  # rows read, trained on, and left out (with reasons), logged first
    weight_name: str  # what the normalizer counts, as logged

    def weight(self, item: Any) -> int:
        """What ``item`` adds to the step's normalizer."""
        ...

    def loss_sum(self, model: Any, item: Any) -> tuple[torch.Tensor, dict[str, float], int, float]:
        """The summed loss of ``item``, summed metrics, its non-padding tokens and their mean attention context."""
        ...


class Task(StepTask, Protocol):
    def plan(self, seed: int) -> list[Any]:
        """One epoch's micro-batches (cheap descriptions; built when used)."""
        ...

    def evaluate(self, model: Any) -> dict[str, float]:
        """Held-out metrics (empty without held-out data)."""
        ...


@dataclass
class LoopResult:
    steps: int
    evals: list[tuple[int, dict[str, float]]]
    checkpoint: Path
    tokens: int  # real (non-padding) tokens trained on, all processes
    seconds: float  # the loop's wall time (evaluations included, setup and the final save not)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


class NonFiniteError(ThresherError, RuntimeError):
    """Training produced a non-finite loss or gradient; the message names the step."""

    exit_code = EXIT_CANNOT_GO_ON


def _grad_norm(model: Any, max_norm: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def run_task(
    config: TrainConfig,
    build_task: Callable[[Runtime, Path | None], Any],
    log: Log | None = None,
    loop: Callable[..., LoopResult] | None = None,
    command: str = "train",
) -> LoopResult:
    """Check the output folder (``thresher.train.folder``), start the runtime (from the checkpoint ``resume_from``
    names, if any), build the task on it, train it with ``loop`` (default: the fixed-plan ``run_loop``), and leave
    the process group."""
    resume = resolve_resume(config.resume_from, Path(config.output_dir))
    out = check_output_dir(config, command, resuming=resume is not None)  # before loading anything
    runtime = start(config, weights=str(resume) if resume else None)
    try:
        with contextlib.ExitStack() as stack:
            if runtime.is_main:  # one run at a time into an output folder (the main process holds the lock)
                out.parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(locked(out))
                if resume is None:  # an earlier run's metrics, checkpoints and final model must not stand beside new ones
                    check_output_dir(config, command, resuming=False)
                    start_fresh(out, config, command)
            runtime.barrier()
            return (loop or run_loop)(config, runtime, build_task(runtime, resume), log, resume)
    finally:
        finish(runtime)


class Optimization:
    """AdamW and the schedule over ``total_steps``, and one optimizer step over any list of micro-batches: process r
    runs every r-th, the summed losses are divided by the whole step's weight, gradients clipped, metrics summed
    over processes. Shared by the fixed-plan loop (SFT, DPO) and the rollout loop (RLVR)."""

    def __init__(self, config: TrainConfig, runtime: Runtime, total_steps: int) -> None:
        from transformers import get_scheduler

        self.config, self.runtime, self.total_steps = config, runtime, total_steps
        model = runtime.trainable
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.optim.lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay, fused=runtime.on_gpu
        )
        self.scheduler = get_scheduler(
            config.optim.schedule,
            self.optimizer,
            num_warmup_steps=int(config.optim.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
        self.peak = peak_flops(runtime.device)
        self.skipped = 0  # steps skipped for a non-finite loss or gradient
        self.local_params = sum(p.numel() for p in model.parameters())

    def step(self, task: StepTask, group: list[Any]) -> dict[str, Any]:
        """One optimizer step over ``group``; the step's record (loss, task metrics, lr, grad norm, throughput)."""
        runtime, model, world = self.runtime, self.runtime.trainable, self.runtime.world
        normalizer = sum(task.weight(item) for item in group)
        mine = group[runtime.rank :: world]
        turns = math.ceil(len(group) / world)  # every process runs as many micro-batches (FSDP collectives pair up)
        work = [(item, 1.0) for item in mine] + ([(group[0], 0.0)] * (turns - len(mine)) if group else [])
        started = time.perf_counter()
        loss_total, tokens, context_tokens = 0.0, 0, 0.0
        sums: dict[str, float] = {}
        for item, scale in work:
            summed, item_sums, item_tokens, context = task.loss_sum(model, item)
            # FSDP averages gradients over processes; scaling by ``world`` makes the step's gradient the sum / normalizer
            (summed * (scale * world / max(normalizer, 1e-12))).backward()
            if scale:
                loss_total += float(summed.detach())
                tokens += item_tokens
                context_tokens += context * item_tokens
                for key, value in item_sums.items():
                    sums[key] = sums.get(key, 0.0) + value
        keys = sorted(sums)
        totals = runtime.all_sum([loss_total, tokens, context_tokens, *(sums[k] for k in keys)])
        grad_norm = _grad_norm(model, self.config.optim.max_grad_norm)
        skipped = not (math.isfinite(totals[0]) and math.isfinite(grad_norm))
        if skipped:
            self.skipped += 1
            step = self.scheduler.last_epoch + 1
            if self.skipped > self.config.optim.skip_nonfinite_steps:
                raise NonFiniteError(
                    f"step {step}: the loss ({totals[0]}) or gradient norm ({grad_norm}) is not finite; nothing of this "
                    f"step was applied (lower optim.lr, or set optim.skip_nonfinite_steps to skip isolated spikes)"
                )
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = max(time.perf_counter() - started, 1e-9)
        denominator = max(normalizer, 1e-12)
        record: dict[str, Any] = {
            "loss": totals[0] / denominator,
            **{k: v / denominator for k, v in zip(keys, totals[3:], strict=True)},
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": grad_norm,
            "skipped": skipped,
            task.weight_name: normalizer,
            "tokens": int(totals[1]),
            "tokens_per_s": totals[1] / seconds,
            "peak_memory_mb": round(peak_memory_mb(runtime.device), 1),
        }
        if self.peak is not None and totals[1]:
            lm_config = runtime.model.config
            flops = train_flops_per_token(
                self.local_params * world, lm_config.num_hidden_layers, lm_config.hidden_size, totals[2] / totals[1]
            )
            record["mfu"] = totals[1] / seconds * flops / (self.peak * world)
        return record

    def save(self, folder: Path, position: dict[str, int]) -> None:
        save_checkpoint(self.runtime, folder, self.optimizer, self.scheduler, position)

    def restore(self, folder: Path) -> dict[str, int]:
        return load_trainer_state(self.runtime, folder, self.optimizer, self.scheduler)


def start_record(task: StepTask, runtime: Runtime, total_steps: int) -> dict[str, Any]:
    """The first metrics record of a fresh run: the plan, the row accounting and where it runs."""
    return {
        "step": 0,
        "total_steps": total_steps,
        **task.accounting,
        "processes": runtime.world,
        "device": runtime.device,
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "attention": runtime.attention,
        "kernels": runtime.kernels,
    }


def run_loop(config: TrainConfig, runtime: Runtime, task: Task, log: Log | None = None, resume: Path | None = None) -> LoopResult:
    """Train ``task`` on ``runtime``; ``resume``: a checkpoint whose optimizer, scheduler, RNG and data position to restore."""
    model, world = runtime.trainable, runtime.world
    per_step = config.gradient_accumulation * world
    first_epoch = task.plan(config.seed)
    if not first_epoch:
        raise InputError("no micro-batches to train on")
    per_epoch = math.ceil(len(first_epoch) / per_step)
    if config.max_steps is None and per_epoch * config.epochs < 1:
        raise InputError(
            f"epochs={config.epochs:g} is less than one optimizer step (an epoch is {per_epoch} steps): set epochs to at least "
            f"{1 / per_epoch:.3g}, or max_steps"
        )
    total_steps = config.max_steps or int(per_epoch * config.epochs)
    optimization = Optimization(config, runtime, total_steps)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    position = {"step": 0, "epoch": 0, "taken": 0}
    if resume is not None:
        position = optimization.restore(resume)
    metrics = MetricsLog(
        out, append=resume is not None, echo=log, enabled=runtime.is_main, resume_step=position["step"] if resume else None
    )

    evals: list[tuple[int, dict[str, float]]] = []

    def evaluate(step: int) -> None:
        result = task.evaluate(model)
        if result:
            evals.append((step, result))
            metrics({"step": step, **result})

    if resume is None:
        metrics(start_record(task, runtime, total_steps))
        evaluate(0)
    else:
        metrics({"resumed_from": str(resume), "at_step": position["step"]})
    step, epoch, taken = position["step"], position["epoch"], position["taken"]
    plan = task.plan(config.seed + epoch) if epoch else first_epoch
    tokens_seen, started = 0, time.perf_counter()
    while step < total_steps:
        if taken >= len(plan):
            epoch, taken = epoch + 1, 0
            plan = task.plan(config.seed + epoch)
        group = plan[taken : taken + per_step]
        taken += len(group)
        record = optimization.step(task, group)
        step += 1
        tokens_seen += record["tokens"]
        if step % config.log_every == 0 or step == total_steps:
            metrics({"step": step, "epoch": epoch + 1, **record})
        if config.eval_every and step % config.eval_every == 0 and step != total_steps:
            evaluate(step)
        if config.save_every and step % config.save_every == 0 and step != total_steps:
            optimization.save(out / f"checkpoint-{step}", {"step": step, "epoch": epoch, "taken": taken})
            if runtime.is_main:
                prune_checkpoints(out, config.save_total_limit)
    evaluate(step)
    elapsed = time.perf_counter() - started
    metrics.close()
    final = out / "final"
    save_model(runtime, final)
    return LoopResult(step, evals, final, tokens_seen, elapsed)
