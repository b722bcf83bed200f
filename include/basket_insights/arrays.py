"""Array idioms for line-sized arrays (tens of millions of ids), where the obvious call is slow."""

from __future__ import annotations

import numpy as np


def sorted_unique(values: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """``np.unique(values)``: the distinct values, sorted, by one sort and a neighbour comparison.

    NumPy 2.3+ finds the distinct integers of ``np.unique`` with a hash table: for tens of millions
    of mostly distinct keys that is many times slower than sorting them (docs/benchmarks.md,
    "`evaluate`'s time"). ``in_place`` sorts ``values`` itself instead of a copy.
    """
    ordered = values if in_place else values.copy()
    ordered.sort()
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]
