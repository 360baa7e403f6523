"""Resumable checkpoints: the model in Hugging Face format plus ``trainer_state.pt`` (optimizer,
scheduler, data position, RNG states), so that a resumed run continues the identical loss curve."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thresher.errors import InputError
from thresher.train.runtime import Runtime, save_model

STATE_FILE = "trainer_state.pt"


def _optimizer_state(runtime: Runtime, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    if runtime.world == 1:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(runtime.trainable, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(runtime: Runtime, folder: Path, optimizer: torch.optim.Optimizer, scheduler: Any, position: dict[str, int]) -> None:
    """The model and tokenizer (``save_pretrained``) and the trainer state at ``position`` (step, epoch, batches taken)."""
    save_model(runtime, folder)
    optim_state = _optimizer_state(runtime, optimizer)
    if runtime.is_main:
        # written last and renamed into place: a checkpoint is resumable only once its state is whole
        partial = folder / f".{STATE_FILE}.partial"
        torch.save({"position": position, "optimizer": optim_state, "scheduler": scheduler.state_dict(), "rng": _rng_state()}, partial)
        partial.replace(folder / STATE_FILE)
    runtime.barrier()


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The resumable checkpoint with the highest step under ``output_dir``."""
    found = [p for p in output_dir.glob("checkpoint-*") if (p / STATE_FILE).is_file() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def prune_checkpoints(output_dir: Path, keep: int | None) -> None:
    """Remove all but the ``keep`` newest checkpoints (by step) under ``output_dir``."""
    if keep is None:
        return
    found = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()), key=lambda p: int(p.name.split("-")[-1])
    )
    for old in found[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def resolve_resume(resume_from: str | None, output_dir: Path) -> Path | None:
    """``latest`` picks the newest checkpoint in the output directory; a path must hold a trainer state."""
    if resume_from is None:
        return None
    if resume_from == "latest":
        return latest_checkpoint(output_dir)
    folder = Path(resume_from)
    if not (folder / STATE_FILE).is_file():
        raise InputError(f"{folder}: not a resumable checkpoint (no {STATE_FILE})")
    return folder


def load_trainer_state(runtime: Runtime, folder: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, int]:
    """Restore optimizer, scheduler and RNG from ``folder``; the data position to continue from."""
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    if runtime.world == 1:
        optimizer.load_state_dict(state["optimizer"])
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(runtime.trainable, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return state["position"]
