"""Cached generation: ask a backend only for the (prompt, sample index) pairs the cache lacks, in
batches, committing each batch before the next, with a progress bar that shows tokens/s."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from thresher.generation.sampling import SamplingParams
from thresher.progress import progress_bar
from thresher.synth.backends.base import Backend, Completion, Conversation
from thresher.synth.cache import RequestCache, request_key


@dataclass
class GenerationStats:
    requested: int = 0  # completions asked for
    reused: int = 0  # found in the cache
    generated: int = 0  # produced by the backend in this run
    tokens: int = 0  # completion tokens generated in this run
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def generate_cached(
    backend: Backend,
    conversations: list[Conversation],
    params: SamplingParams,
    cache: RequestCache,
    batch_size: int = 16,
    label: str = "generate",
    quiet: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[list[Completion]], GenerationStats]:
    """``params.n`` completions per conversation, from the cache where it has them."""
    key = params.key()
    keys = [[request_key(backend.model, c, i, key) for i in range(params.n)] for c in conversations]
    found = cache.get_many([k for row in keys for k in row])
    stats = GenerationStats(requested=len({k for row in keys for k in row}), reused=len(found))
    # Prompts missing samples, grouped by how many they miss (usually all n or none). A prompt that
    # occurs twice is the same request: generated once, shared.
    missing: dict[int, list[int]] = {}
    lacking: dict[int, list[str]] = {}
    seen: set[str] = set()
    for p, row in enumerate(keys):
        need = [k for k in row if k not in found and k not in seen]
        seen.update(need)
        if need:
            lacking[p] = need
            missing.setdefault(len(need), []).append(p)
    todo = sum(n * len(ps) for n, ps in missing.items())
    started = time.perf_counter()
    with progress_bar(disable=quiet) as progress:
        task = progress.add_task(label, total=todo, rate="")
        for count, prompts in sorted(missing.items()):
            sub = params.model_copy(update={"n": count})
            for lo in range(0, len(prompts), batch_size):
                batch = prompts[lo : lo + batch_size]
                outputs = backend.generate([conversations[p] for p in batch], sub)
                items: list[tuple[str, Completion]] = []
                for p, completions in zip(batch, outputs, strict=True):
                    for k, completion in zip(lacking[p], completions, strict=True):
                        items.append((k, completion))
                        found[k] = completion
                cache.put_many(items)
                stats.generated += len(items)
                stats.tokens += sum(c.tokens for _, c in items)
                stats.seconds = time.perf_counter() - started
                progress.update(task, advance=len(items), rate=f"{stats.tokens_per_s:,.0f} tok/s")
                if on_batch is not None:
                    on_batch(stats.generated)
    stats.seconds = time.perf_counter() - started
    return [[found[k] for k in row] for row in keys], stats
