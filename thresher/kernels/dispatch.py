"""Which implementation runs each op: the Triton kernel or the PyTorch path.

- ``kernels: triton`` runs every kernel (an error where Triton cannot run); ``torch`` runs none.
- ``kernels: auto`` runs a kernel only where it was *measured* faster than the PyTorch path on that class
  of device (``MEASURED`` below, each entry with the run that justifies it). Where nothing was measured,
  the PyTorch path runs: a user never pays for a kernel of ours that has not shown it is faster.

Triton compiles kernels for CUDA, and runs them on CPU tensors under its interpreter
(``TRITON_INTERPRET=1``, for tests). The interpreter on CUDA tensors is always a mistake (a test setting
leaking into a GPU run, about 1000× slower, and it crashes on some kernels): every launch refuses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

try:  # triton is optional: the torch paths need none
    import triton
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None

OPS = ("linear_logprobs", "rms_norm", "rope", "swiglu")


@dataclass(frozen=True)
class Measured:
    backend: str  # the faster of "triton" and "torch"
    evidence: str  # the run that showed it (benchmarks/gpu/results/… or RESULTS.md)


# (device class, op) -> the measured faster backend. Device classes: "cuda:smXY" (compute capability).
MEASURED: dict[tuple[str, str], Measured] = {
    ("cuda:sm90", "linear_logprobs"): Measured(
        "torch",
        "H200, issue 28/30: the first kernel took 237 ms vs eager PyTorch's 25.5 ms (8K tokens, hidden 896, vocab 151,936, "
        "bf16). Its rewrite (2-D grids, tile locks) is not yet measured: torch stays until the kit's kernels group shows it faster",
    ),
}


def interpreting() -> bool:
    """Triton's interpreter is on (``TRITON_INTERPRET`` set to a true value, as Triton itself reads it)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_usable(device: torch.device) -> bool:
    """Triton runs on CUDA tensors (compiled), and on CPU tensors under its interpreter."""
    if triton is None:
        return False
    return (device.type == "cuda" and not interpreting()) or (device.type == "cpu" and interpreting())


def refusal(device: torch.device) -> str | None:
    """Why a kernel cannot launch on ``device`` here, or None."""
    if device.type == "cuda" and interpreting():
        return (
            "Triton's interpreter is on (TRITON_INTERPRET=1) for CUDA tensors: the kernels would run interpreted on "
            "the GPU; unset TRITON_INTERPRET (or set it to 0)"
        )
    if not triton_usable(device):
        return (
            f"the Triton kernels cannot run on {device.type} here: they need CUDA and the triton package, "
            "or TRITON_INTERPRET=1 on the CPU (slow; for tests)"
        )
    return None


def require(device: torch.device) -> None:
    """Raise the refusal (``refusal``) for ``device``, if any."""
    reason = refusal(device)
    if reason is not None:
        raise RuntimeError(reason)


def check_launch(*tensors: torch.Tensor) -> None:
    """Refuse to launch a kernel on these tensors where it would run wrongly or absurdly slowly."""
    for tensor in tensors:
        require(tensor.device)


def device_class(device: torch.device) -> str:
    """``cuda:smXY`` for a CUDA device, else the device type."""
    if device.type == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda:sm{major}{minor}"
    return device.type


def choose(backend: str, op: str, device: torch.device) -> str:
    """``triton`` or ``torch`` for ``op`` on ``device`` under the configured ``backend`` (auto, triton or torch)."""
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"kernel backend must be auto, triton or torch, not {backend!r}")
    if op not in OPS:
        raise ValueError(f"unknown kernel {op!r}; known: {', '.join(OPS)}")
    if backend == "torch":
        return "torch"
    if backend == "triton":
        require(device)
        return "triton"
    measured = MEASURED.get((device_class(device), op))
    if measured is None or not triton_usable(device):
        return "torch"
    return measured.backend


def plan(backend: str, device: torch.device) -> dict[str, str]:
    """Every op's backend on ``device`` (what a training run records in its metrics)."""
    return {op: choose(backend, op, device) for op in OPS}
