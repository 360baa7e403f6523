"""Where training runs: device and precision, one process or several (torchrun), the model and
tokenizer loaded and, with several processes, sharded with FSDP2 (``fully_shard``)."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from thresher.io.outputs import replace_folder
from thresher.kernels.dispatch import plan
from thresher.kernels.patch import patch_model
from thresher.models import local_model
from thresher.train.config import TrainConfig
from thresher.train.loss import TargetLogprobs


@dataclass
class Runtime:
    device: str  # "cuda", "cuda:N" or "cpu"
    dtype: torch.dtype
    rank: int
    world: int
    model: Any  # the causal LM (config, save_pretrained)
    trainable: Any  # what the loop runs: TargetLogprobs around the model, the FSDP root under torchrun
    tokenizer: Any
    pad_id: int
    attention: str = "sdpa"  # the attention implementation the model was loaded with
    kernels: dict[str, str] | None = None  # op -> "triton" or "torch" (thresher.kernels.dispatch.plan)

    @property
    def varlen(self) -> bool:
        """Flash-attention and ``varlen``: a micro-batch goes unpadded in one row, example boundaries from
        ``position_ids``, no mask."""
        return self.attention in ("flash_attention_2", "varlen")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the processes (the values themselves in one process)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.on_gpu else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def load_tokenizer(config: TrainConfig) -> tuple[Any, int]:
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(local_model(config.tokenizer or config.model, "tokenizer"))
    if config.chat_template:
        tokenizer.chat_template = config.chat_template
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return tokenizer, pad_id


def attention_for(config: TrainConfig, device: str) -> str:
    """``auto``: on CUDA, flash-attention 2 when ``flash_attn`` is installed, else ``varlen``
    (``thresher.kernels.varlen_attention``: SDPA's flash kernels per example, no T×T mask); on the CPU, SDPA
    with the block-diagonal mask."""
    if config.attention != "auto":
        return config.attention
    if device.startswith("cuda"):
        return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "varlen"
    return "sdpa"


def load_causal_lm(path: str, device: str, dtype: torch.dtype, attention: str = "sdpa") -> Any:
    """A causal LM in training-ready form, with ``attention`` as its attention implementation (``varlen``:
    Thresher's, registered with transformers here)."""
    from transformers import AutoModelForCausalLM

    if attention == "varlen":
        from thresher.kernels.varlen_attention import register

        attention = register()

    model: Any = AutoModelForCausalLM.from_pretrained(local_model(path), dtype=dtype, attn_implementation=attention).to(device)  # type: ignore[arg-type]
    return model


def _shard(model: Any, trainable: Any, device_type: str, world: int) -> None:
    """FSDP2: each decoder layer is its own unit; the root (embeddings, final norm, head) is the wrapper whose forward runs the loss."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world,))
    for layer in model.get_decoder().layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(trainable, mesh=mesh)


def start(config: TrainConfig, weights: str | None = None) -> Runtime:
    """Seed, pick the device, join the process group when launched by torchrun, load (``weights`` or
    ``config.model``) and shard the model."""
    from thresher.device import pick_compute_path

    seed_everything(config.seed)
    device = pick_compute_path(config.device, announce=False).device
    rank, world = 0, 1
    if _launched_by_torchrun():
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    on_gpu = device.startswith("cuda")
    dtype = torch.bfloat16 if config.precision == "bf16" or (config.precision == "auto" and on_gpu) else torch.float32
    tokenizer, pad_id = load_tokenizer(config)
    attention = attention_for(config, device)
    model = load_causal_lm(weights or config.model, device, dtype, attention)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    kernels = plan(config.kernels, torch.device(device))
    patch_model(model, [op for op, backend in kernels.items() if backend == "triton"])
    trainable = TargetLogprobs(model, kernels["linear_logprobs"])
    if world > 1:
        _shard(model, trainable, "cuda" if on_gpu else "cpu", world)
    trainable.train()
    return Runtime(device, dtype, rank, world, model, trainable, tokenizer, pad_id, attention, kernels)


def full_state_dict(runtime: Runtime, everywhere: bool = False) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on the CPU in the main process (None elsewhere); gathers shards under FSDP.
    ``everywhere``: every process gets them, on its device (a rollout engine's copy to refresh)."""
    if runtime.world == 1:
        return runtime.model.state_dict() if everywhere else None  # save_pretrained reads the module itself
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(runtime.trainable, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere))
    return {key.removeprefix("lm."): cast(torch.Tensor, value) for key, value in state.items()}


def save_model(runtime: Runtime, folder: Path) -> None:
    """``save_pretrained`` of model and tokenizer (called by every process; the main one writes), into a
    staging folder beside ``folder`` that replaces it whole: a kill mid-save leaves the old one."""
    state = full_state_dict(runtime)
    if runtime.is_main:
        staging = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        runtime.model.save_pretrained(str(staging), state_dict=state)
        runtime.tokenizer.save_pretrained(str(staging))
        replace_folder(staging, folder)
    runtime.barrier()


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """``model`` in eval mode without gradients for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def finish(runtime: Runtime) -> None:
    if runtime.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
