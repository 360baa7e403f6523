"""Training metrics: JSONL (always), TensorBoard (when installed), peak memory and model FLOPs utilization."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import torch

Log = Callable[[dict[str, Any]], None]

# Dense bf16 peak FLOP/s by device name (vendor datasheets); MFU is left out for devices not listed.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated, or the process's peak resident set on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def train_flops_per_token(n_params: int, n_layers: int, hidden: int, mean_context: float) -> float:
    """Forward + backward FLOPs per trained token: 6N for the weights plus 12·layers·hidden·context for attention."""
    return 6.0 * n_params + 12.0 * n_layers * hidden * mean_context


def record_line(record: dict[str, Any]) -> str:
    """A metrics record as one ``key=value`` line."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


def headline(record: dict[str, Any]) -> bool:
    """Whether a record is worth a line by default (the start, an evaluation, a resume); the rest (per-step
    losses and timings) show with -v, or as the periodic progress line."""
    return "total_steps" in record or "resumed_from" in record or any(k.startswith("eval_") for k in record)


def progress_log(bar: Any, task: Any, say: Callable[..., None]) -> Log:
    """The ``log`` a trainer calls with each record, for the command line and pipeline stages alike: the step and
    loss (and tokens/s) on ``task`` of the progress ``bar``, and the record as a line through ``say`` (by default
    the start and evaluations; every step's record with -v)."""

    def show(record: dict[str, Any]) -> None:
        if "total_steps" in record:
            bar.update(task, total=record["total_steps"])
        if "loss" in record:
            speed = f" {record['tokens_per_s']:,.0f} tok/s" if isinstance(record.get("tokens_per_s"), int | float) else ""
            bar.update(task, completed=record["step"], rate=f"loss {record['loss']:.4g}{speed}")
        say(record_line(record), level=1 if headline(record) else 2)

    return show


def keep_until(path: Path, step: int) -> None:
    """Drop the records of steps after ``step`` from the metrics file (a run killed after its last checkpoint
    logged them; the resumed run logs them again), atomically."""
    if not path.is_file():
        return
    lines = path.read_bytes().splitlines()
    kept = [line for line in lines if line.strip() and _step_of(line) <= step]
    if len(kept) != len(lines):
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(b"".join(line + b"\n" for line in kept))
        partial.replace(path)


def _step_of(line: bytes) -> int:
    try:
        value = orjson.loads(line).get("step", 0)
    except orjson.JSONDecodeError:  # a line cut by a kill: dropped
        return 1 << 62
    return int(value) if isinstance(value, int | float) else 0


class MetricsLog:
    """Writes each record as a JSON line with its wall-clock ``time`` (Unix seconds) and ``wall_s`` (seconds since
    this run started), mirrors numeric fields to TensorBoard, passes records to ``echo``. Resuming at
    ``resume_step`` first drops the records the killed run wrote after it, so no step is written twice."""

    def __init__(self, folder: Path, append: bool, echo: Log | None, enabled: bool = True, resume_step: int | None = None) -> None:
        self.echo = echo
        self.enabled = enabled
        self.started = time.perf_counter()
        if enabled and append and resume_step is not None:
            keep_until(folder / "metrics.jsonl", resume_step)
        self.file = (folder / "metrics.jsonl").open("ab" if append else "wb") if enabled else None
        self.board = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:  # tensorboard is optional
                pass

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        assert self.file is not None
        stamped = {**record, "time": round(time.time(), 3), "wall_s": round(time.perf_counter() - self.started, 3)}
        self.file.write(orjson.dumps(stamped) + b"\n")
        self.file.flush()
        if self.board is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.board.add_scalar(key, value, step)
        if self.echo is not None:
            self.echo(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.board is not None:
            self.board.close()
