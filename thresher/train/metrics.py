"""Training metrics: JSONL (always), TensorBoard (when installed), peak memory and model FLOPs utilization."""

from __future__ import annotations

import resource
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


class MetricsLog:
    """Writes each record as a JSON line, mirrors numeric fields to TensorBoard, passes records to ``echo``."""

    def __init__(self, folder: Path, append: bool, echo: Log | None, enabled: bool = True) -> None:
        self.echo = echo
        self.enabled = enabled
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
        self.file.write(orjson.dumps(record) + b"\n")
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
