"""Choosing the compute path: CUDA when it is there, the CPU otherwise, and saying which."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from thresher.errors import ExternalError, InputError

log = logging.getLogger("thresher")


@dataclass(frozen=True)
class ComputePath:
    """The device a GPU-capable step runs on, and why."""

    device: str  # "cuda" or "cpu"
    reason: str

    @property
    def is_gpu(self) -> bool:
        return self.device == "cuda"


def pick_compute_path(prefer: str = "auto", announce: bool = True) -> ComputePath:
    """``auto`` takes CUDA when torch sees a GPU; ``cpu`` forces the CPU; ``cuda`` requires a GPU."""
    import torch

    if prefer not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, not {prefer!r}")
    has_cuda = torch.cuda.is_available()
    if prefer == "cuda" and not has_cuda:
        raise ExternalError("--device cuda was asked for, but torch sees no CUDA device")
    if prefer == "cpu":
        path = ComputePath("cpu", "CPU requested")
    elif has_cuda:
        path = ComputePath("cuda", f"CUDA: {torch.cuda.get_device_name(0)}")
    else:
        path = ComputePath("cpu", "no CUDA device: CPU path")
    if announce:
        log.info("compute path: %s", path.reason)
    return path


def faiss_has_gpu() -> bool:
    """Whether the installed ``faiss`` is the GPU build and sees a GPU (faiss-cpu and faiss-gpu share the module);
    False without faiss (the GPU image has none: the torch exact search serves there)."""
    try:
        import faiss
    except ImportError:
        return False

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
