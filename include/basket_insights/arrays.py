"""Array idioms for line-sized arrays (tens of millions of ids), where the obvious call is slow."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def padded_sum(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The elementwise sum of 1-D ``arrays`` of different lengths, each as if padded with zeros to the
    longest (per-id counts of user shards, each up to its own largest id)."""
    total = np.zeros(max((len(a) for a in arrays), default=0), dtype=np.result_type(np.int64, *arrays))
    for a in arrays:
        total[: len(a)] += a
    return total


def sorted_unique(values: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """``np.unique(values)``: the distinct values, sorted, by one sort and a neighbour comparison.

    NumPy 2.3+ finds the distinct integers of ``np.unique`` with a hash table: for tens of millions
    of mostly distinct keys that is many times slower than sorting them (docs/benchmarks.md,
    "The daily tasks' passes over every order line"). ``in_place`` sorts ``values`` itself instead of a copy.
    """
    ordered = values if in_place else values.copy()
    ordered.sort()
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def factorize_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(ids, sort=True)`` for integer ids: each id's code and the sorted distinct ids.

    Ids that are non-negative and not much larger than their count (order, user and product ids) go
    through a dense id -> code table instead of a hash table: at full scale ~0.5 s instead of ~3 s
    for the 37M order ids of the order lines. Other ids fall back to ``pd.factorize``.
    """
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu" and len(ids) and ids.min() >= 0 and ids.max() <= 4 * len(ids) + 2**20:
        code_of = np.zeros(int(ids.max()) + 1, dtype=np.int64)
        code_of[ids] = 1
        uniques = np.flatnonzero(code_of).astype(ids.dtype, copy=False)
        code_of[uniques] = np.arange(len(uniques))
        return code_of[ids], uniques
    codes, uniques = pd.factorize(ids, sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def select_rows(frame: pd.DataFrame, mask: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """``frame.loc[mask, columns].reset_index(drop=True)``, selected column by column with numpy.

    For line-sized frames of numpy columns that is several times faster than pandas' boolean
    indexing (at full scale ~0.3-0.9 s instead of ~4 s to split the 37M order lines in two);
    frames with other column types go through pandas.
    """
    columns = list(frame.columns) if columns is None else columns
    if not all(isinstance(frame[c].dtype, np.dtype) for c in columns):
        return frame.loc[mask, columns].reset_index(drop=True)
    return pd.DataFrame({c: frame[c].to_numpy()[mask] for c in columns}, copy=False)
