"""Blocks of customers scored a few at a time: the same results, in order, whatever the threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from basket_insights.blocks import blocks_of, map_ahead


def test_blocks_cover_every_value_once_in_order() -> None:
    values = np.arange(23)
    blocks = list(blocks_of(values, 10))
    assert [len(b) for b in blocks] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate(blocks), values)
    assert list(blocks_of(np.zeros(0), 10)) == []


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_come_back_in_order_with_their_items(threads: int) -> None:
    def work(item: int) -> int:
        time.sleep(0.01 * (item % 3))  # later items often finish first
        return item * item

    assert list(map_ahead(work, range(10), threads)) == [(i, i * i) for i in range(10)]


def test_at_most_threads_blocks_are_in_flight() -> None:
    running, most, lock = 0, 0, threading.Lock()

    def work(item: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return item

    for _ in map_ahead(work, range(12), 2):
        time.sleep(0.01)  # the caller's own work on each result
    assert most <= 2


def test_an_error_in_one_block_is_raised_after_the_blocks_before_it() -> None:
    def work(item: int) -> int:
        if item == 3:
            raise ValueError("block 3 is broken")
        return item

    seen = []
    with pytest.raises(ValueError, match="block 3"):
        for item, _ in map_ahead(work, range(6), 2):
            seen.append(item)
    assert seen == [0, 1, 2]
