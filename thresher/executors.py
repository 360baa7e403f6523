"""Where a command's heavy stages run: datatrove's ``LocalPipelineExecutor`` or ``RayPipelineExecutor``.

One type for every command that takes ``--executor local|ray --tasks N [--ray-address ADDR]`` (dedup,
decontaminate): the choice, a runner that runs one stage's datatrove pipeline as ``tasks`` tasks, and the check
that every task of a stage finished. Stage logs go under ``WORK/logs/STAGE``; Ray starts locally with ``tasks``
CPUs unless an address is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from thresher.errors import InputError

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Executor:
    """Where the stages run: datatrove's ``local`` executor or ``ray``, over ``tasks`` tasks."""

    kind: Literal["local", "ray"] = "local"
    tasks: int = 2
    address: str | None = None  # ray: a running cluster's address (default: start a local one)
    band_shards: int = 4  # dedup: shards of LSH bands, each one bucket task (at most ``tasks``)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise InputError(f"--executor must be {' or '.join(EXECUTORS)}, not {self.kind!r}")
        if self.tasks < 1:
            raise InputError(f"--tasks must be at least 1, got {self.tasks}")


StageRunner = Callable[[list[Any], int, str], None]


def stage_runner(executor: Executor, work: Path) -> StageRunner:
    """``run(pipeline, tasks, stage)``: one stage's datatrove pipeline as ``tasks`` tasks on ``executor``."""
    if executor.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        def local(pipeline: list[Any], tasks: int, stage: str) -> None:
            LocalPipelineExecutor(pipeline, tasks=tasks, workers=executor.tasks, logging_dir=str(work / "logs" / stage)).run()

        return local
    try:
        import ray
        from datatrove.executor.ray import RayPipelineExecutor
    except ImportError as error:
        raise InputError("--executor ray needs Ray: pip install 'thresher[ray]'") from error
    if not ray.is_initialized():
        if executor.address:
            ray.init(address=executor.address, log_to_driver=False)
        else:
            ray.init(num_cpus=executor.tasks, include_dashboard=False, log_to_driver=False)

    def on_ray(pipeline: list[Any], tasks: int, stage: str) -> None:
        RayPipelineExecutor(pipeline, tasks=tasks, workers=executor.tasks, logging_dir=str(work / "logs" / stage), mem_per_cpu_gb=1).run()

    return on_ray


def check_complete(work: Path, stage: str, tasks: int, command: str) -> None:
    """A one-line error when a stage finished fewer than ``tasks`` tasks (a task raised: its log says why)."""
    done = work / "logs" / stage / "completions"
    finished = len(list(done.iterdir())) if done.is_dir() else 0
    if finished != tasks:
        raise InputError(f"{command} --executor: stage {stage!r} finished {finished} of {tasks} tasks; its logs: {work / 'logs' / stage}")
