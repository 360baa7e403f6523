"""Both cores, deterministically: ``ordered_map`` runs a function over a stream on a few threads and yields the
results in input order, so what is built from them does not depend on the number of workers.

Threads, not processes: the work handed out here (Arrow's JSON reader, Polars expressions, NumPy and torch
kernels) releases the GIL, and threads share the rows without pickling them or paying a second start-up.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads (None: ``default_workers()``), in input order, with at most
    ``2 * workers`` items in flight (memory stays bounded); one worker runs in the calling thread. An error is
    raised where its item's result would have been yielded."""
    workers = workers or default_workers()
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="thresher") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
