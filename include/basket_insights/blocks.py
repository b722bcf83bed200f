"""Work over blocks of customers: a few blocks at a time in threads, results in order.

The steps that score every customer (recommendations, buy again, their evaluations) do it block by
block so that memory stays the size of a block whatever the number of customers. Half of a block's
work is numpy and LightGBM code that releases the GIL, half is single-threaded; :func:`map_ahead`
runs the next blocks in threads while the caller consumes the previous one, so both cores of a
small machine work. Each block's result depends only on its own customers: the output is the same
for any number of threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")
Result = TypeVar("Result")


def blocks_of(values: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Consecutive slices of ``values`` of ``size`` (the last one shorter)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def map_ahead(work: Callable[[Item], Result], items: Iterable[Item], threads: int) -> Iterator[tuple[Item, Result]]:
    """``(item, work(item))`` for each of ``items``, in their order, ``threads`` of them computed at once.

    At most ``threads`` results wait unconsumed, so memory stays bounded. ``threads = 1`` computes each
    item only when the caller asks for it, in the caller's thread. An exception in ``work`` is raised
    here, for its item, after the items before it were yielded.
    """
    if threads <= 1:
        for item in items:
            yield item, work(item)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        running: deque[tuple[Item, Future]] = deque()
        for item in items:
            running.append((item, pool.submit(work, item)))
            if len(running) >= threads:
                done, future = running.popleft()
                yield done, future.result()
        while running:
            done, future = running.popleft()
            yield done, future.result()
