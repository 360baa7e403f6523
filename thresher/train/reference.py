"""Reference log-probs for DPO: computed once, cached on disk, and the reference model freed.

The cache key covers the reference model (its path and weight files' sizes and times, or its hub
id), the precision, and the encoded pairs themselves (token ids and target masks, which carry the
data, the chat template, the tokenizer and the length limit). An entry is one float32 per
completion: 8 bytes per pair.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from thresher.cache import cache_root
from thresher.progress import progress_bar
from thresher.train.data import EncodedPair
from thresher.train.loss import TargetLogprobs
from thresher.train.runtime import Runtime, evaluating, load_causal_lm

DEFAULT_CACHE = cache_root() / "reference_logprobs"


def model_fingerprint(name: str) -> str:
    """A local model folder by its config and weight files (name, size, modification time); a hub id by name."""
    folder = Path(name)
    if not folder.is_dir():
        return f"hub:{name}"
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for file in sorted(folder.iterdir()):
        if file.suffix in (".json", ".safetensors", ".bin", ".pt"):
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def pairs_fingerprint(pairs: list[EncodedPair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        for side in (pair.chosen, pair.rejected):
            digest.update(np.asarray(side.input_ids, dtype=np.int64).tobytes())
            digest.update(np.asarray(side.labels, dtype=np.int64).tobytes())
            digest.update(b"|")
    return digest.hexdigest()


def cache_key(reference: str, dtype: torch.dtype, pairs: list[EncodedPair]) -> str:
    parts = [model_fingerprint(reference), str(dtype), pairs_fingerprint(pairs)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


PairBatch = list[list[int]]  # rows of pair indices
LogprobsOf = Callable[[Any, PairBatch], torch.Tensor]  # (model, batch) -> per pair in order: chosen, rejected sums


def compute_logprobs(model: Any, pairs: list[EncodedPair], logprobs_of: LogprobsOf, batches: list[PairBatch]) -> np.ndarray:
    """(pairs, 2) summed target log-probs, chosen then rejected, with ``model`` in eval mode and no gradients."""
    out = np.zeros((len(pairs), 2), dtype=np.float32)
    with evaluating(model), progress_bar() as bar:
        task = bar.add_task("reference log-probs", total=len(pairs), rate="")
        for batch in batches:
            indices = [i for row in batch for i in row]
            out[indices] = logprobs_of(model, batch).float().cpu().numpy().reshape(len(indices), 2)
            bar.advance(task, len(indices))
    return out


def reference_logprobs(
    runtime: Runtime,
    reference: str,
    use_policy: bool,
    cache_dir: Path,
    pairs: list[EncodedPair],
    logprobs_of: LogprobsOf,
    batches: list[PairBatch],
) -> tuple[np.ndarray, str]:
    """The pairs' reference log-probs and where they came from (``cached`` or ``computed``). ``use_policy``: the
    policy still holds the reference weights, so no second model is loaded."""
    path = cache_dir / f"{cache_key(reference, runtime.dtype, pairs)}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape == (len(pairs), 2):
            return cached, "cached"
    if use_policy:
        values = compute_logprobs(runtime.trainable, pairs, logprobs_of, batches)
    else:
        model = TargetLogprobs(load_causal_lm(reference, runtime.device, runtime.dtype, runtime.attention), runtime.trainable.backend)
        values = compute_logprobs(model, pairs, logprobs_of, batches)
        del model  # the reference leaves memory before training starts
        gc.collect()
        if runtime.on_gpu:
            torch.cuda.empty_cache()
    if runtime.is_main:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(partial, values)
        partial.replace(path)
        path.with_suffix(".json").write_bytes(orjson.dumps({"reference": reference, "dtype": str(runtime.dtype), "pairs": len(pairs)}))
    runtime.barrier()
    return values, "computed"
