"""Frequent itemsets (exact, vectorised) and association rules.

The counting engine (:func:`frequent_itemsets`) is exact and has no Python loop over baskets:

1. **Items**: de-duplicate (basket, item) pairs, count items with ``bincount``; keep the frequent
   ones and re-number them densely (most frequent first).
2. **Pairs**: baskets are grouped by how many frequent items they hold (``m``); for each group the
   ``m × (m − 1) / 2`` pairs of every basket come from one fancy-indexing step over a
   ``(baskets, m)`` item matrix, are encoded as ``i · n + j`` and counted with ``bincount``, in
   chunks that bound memory.
3. **Triples**: only items that occur in a frequent pair can be in a frequent triple (Apriori), so
   baskets are cut down to those items; every triple of such a basket whose three sub-pairs are
   all frequent is a candidate occurrence; candidates are mapped to a compact index with
   ``searchsorted`` and counted with ``bincount``.

The output has mlxtend's format (``support``, ``itemsets`` as ``frozenset``), and the rule metrics
come from :func:`mlxtend.frequent_patterns.association_rules`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

_CHUNK_PAIRS = 20_000_000  # pair occurrences materialised at once (bounds peak memory)


@dataclass(frozen=True)
class Baskets:
    """Baskets in CSR form: basket ``b`` holds ``items[indptr[b]:indptr[b + 1]]`` (item ids ≥ 0)."""

    indptr: np.ndarray
    items: np.ndarray

    @property
    def n_baskets(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_pairs(cls, basket_ids: np.ndarray, item_ids: np.ndarray) -> Baskets:
        """Build from parallel arrays of basket and item ids (any order, duplicates allowed).

        Baskets are numbered densely in sorted order of ``basket_ids``.
        """
        basket_codes, uniques = pd.factorize(basket_ids, sort=True)
        order = np.lexsort((item_ids, basket_codes))
        counts = np.bincount(basket_codes, minlength=len(uniques))
        indptr = np.zeros(len(uniques) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, np.asarray(item_ids)[order])

    @classmethod
    def from_lists(cls, baskets: list[list[int]]) -> Baskets:
        lengths = np.array([len(b) for b in baskets], dtype=np.int64)
        indptr = np.zeros(len(baskets) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.fromiter((i for b in baskets for i in b), dtype=np.int64, count=int(lengths.sum()))
        return cls(indptr, items)


def _unique_basket_items(baskets: Baskets) -> tuple[np.ndarray, np.ndarray]:
    """(basket row, item) for every distinct item of every basket."""
    rows = np.repeat(np.arange(baskets.n_baskets, dtype=np.int64), np.diff(baskets.indptr))
    items = np.asarray(baskets.items, dtype=np.int64)
    if len(items) == 0:
        return rows, items
    n_items = int(items.max()) + 1
    keys = rows * n_items + items
    # items inside a basket are usually sorted already; sort to be safe, then drop repeats
    if not (np.diff(keys) >= 0).all():
        keys = np.sort(keys)
    keep = np.r_[True, keys[1:] != keys[:-1]]
    keys = keys[keep]
    return keys // n_items, keys % n_items


def _grouped_rows(rows: np.ndarray, codes: np.ndarray, n_baskets: int) -> dict[int, np.ndarray]:
    """``{m: (baskets with m items, m) item matrix}`` from (row, code) pairs sorted by row."""
    sizes = np.bincount(rows, minlength=n_baskets)
    starts = np.zeros(n_baskets + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    groups = {}
    for m in np.unique(sizes):
        if m < 2:
            continue
        which = np.flatnonzero(sizes == m)
        index = starts[which][:, None] + np.arange(m)
        groups[int(m)] = codes[index]
    return groups


def _count_combinations(matrix: np.ndarray, r: int, n: int, key_filter: np.ndarray | None = None) -> np.ndarray:
    """Counts of each sorted r-combination (r = 2) of items over the rows of ``matrix``; keys i*n+j."""
    m = matrix.shape[1]
    a, b = np.triu_indices(m, k=1)
    counts = np.zeros(n * n, dtype=np.int64)
    per_row = len(a)
    step = max(1, _CHUNK_PAIRS // max(per_row, 1))
    for start in range(0, len(matrix), step):
        block = matrix[start : start + step]
        keys = block[:, a] * n + block[:, b]
        counts += np.bincount(keys.ravel(), minlength=n * n)
    return counts


def frequent_itemsets(
    baskets: Baskets,
    min_support: float,
    max_len: int = 3,
    min_count: int = 1,
) -> pd.DataFrame:
    """Exact frequent itemsets of up to ``max_len`` (1–3) items.

    Parameters
    ----------
    baskets:
        The transactions; repeated items in a basket count once; empty baskets count in the total.
    min_support:
        Minimum share of baskets (0 < s ≤ 1) containing the itemset.
    max_len:
        Largest itemset size (1, 2 or 3).
    min_count:
        Also require at least this many baskets (guards against rules from a handful of baskets).

    Returns
    -------
    pandas.DataFrame
        mlxtend's format: ``support`` (float) and ``itemsets`` (``frozenset`` of item ids), plus
        ``count`` (baskets) and ``length``; sorted by length, then support descending.
    """
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    if max_len not in (1, 2, 3):
        raise ValueError(f"max_len must be 1, 2 or 3, got {max_len}")
    started = time.monotonic()
    n_baskets = baskets.n_baskets
    columns = ["support", "itemsets", "count", "length"]
    if n_baskets == 0:
        return pd.DataFrame({c: [] for c in columns})
    threshold = max(int(np.ceil(min_support * n_baskets - 1e-9)), int(min_count), 1)
    rows, items = _unique_basket_items(baskets)
    item_counts = np.bincount(items) if len(items) else np.zeros(0, dtype=np.int64)
    frequent = np.flatnonzero(item_counts >= threshold)
    frequent = frequent[np.argsort(-item_counts[frequent], kind="stable")]
    out = [pd.DataFrame({"items": [(int(i),) for i in frequent], "count": item_counts[frequent]})]
    n1 = len(frequent)
    if max_len >= 2 and n1 >= 2:
        code_of = np.full(len(item_counts), -1, dtype=np.int64)
        code_of[frequent] = np.arange(n1)
        codes = code_of[items]
        keep = codes >= 0
        rows_f, codes_f = rows[keep], codes[keep]
        # within a basket, order codes ascending so pairs come out as (low, high)
        order = np.lexsort((codes_f, rows_f))
        rows_f, codes_f = rows_f[order], codes_f[order]
        groups = _grouped_rows(rows_f, codes_f, n_baskets)
        pair_counts = np.zeros(n1 * n1, dtype=np.int64)
        for matrix in groups.values():
            pair_counts += _count_combinations(matrix, 2, n1)
        pair_keys = np.flatnonzero(pair_counts >= threshold)
        pi, pj = pair_keys // n1, pair_keys % n1
        out.append(
            pd.DataFrame(
                {
                    "items": list(zip(frequent[pi].tolist(), frequent[pj].tolist(), strict=True)),
                    "count": pair_counts[pair_keys],
                }
            )
        )
        if max_len >= 3 and len(pair_keys):
            out.append(_frequent_triples(rows_f, codes_f, pair_keys, n1, frequent, threshold, n_baskets))
    result = pd.concat(out, ignore_index=True)
    result["support"] = result["count"] / n_baskets
    result["itemsets"] = [frozenset(t) for t in result["items"]]
    result["length"] = [len(t) for t in result["items"]]
    result = result.sort_values(["length", "count"], ascending=[True, False], kind="stable").reset_index(drop=True)
    log.debug(
        "frequent_itemsets: %d itemsets from %d baskets in %.2f s", len(result), n_baskets, time.monotonic() - started
    )
    return result[columns]


def _frequent_triples(
    rows: np.ndarray,
    codes: np.ndarray,
    pair_keys: np.ndarray,
    n1: int,
    frequent: np.ndarray,
    threshold: int,
    n_baskets: int,
) -> pd.DataFrame:
    """Exact counts of triples whose three sub-pairs are frequent (Apriori candidates)."""
    in_pair = np.zeros(n1, dtype=bool)
    in_pair[pair_keys // n1] = True
    in_pair[pair_keys % n1] = True
    keep = in_pair[codes]
    rows, codes = rows[keep], codes[keep]
    # re-number the items that occur in frequent pairs, keeping order
    sub = np.flatnonzero(in_pair)
    n2 = len(sub)
    local = np.full(n1, -1, dtype=np.int64)
    local[sub] = np.arange(n2)
    codes = local[codes]
    frequent_pair = np.zeros((n2, n2), dtype=bool)
    frequent_pair[local[pair_keys // n1], local[pair_keys % n1]] = True
    # candidate triples (a < b < c with ab, ac, bc frequent), as sorted int64 keys
    a_idx, b_idx = np.nonzero(frequent_pair)
    cand_a, cand_b, cand_c = [], [], []
    for a, b in zip(a_idx.tolist(), b_idx.tolist(), strict=True):
        cs = np.flatnonzero(frequent_pair[a] & frequent_pair[b])
        cs = cs[cs > b]
        if len(cs):
            cand_a.append(np.full(len(cs), a))
            cand_b.append(np.full(len(cs), b))
            cand_c.append(cs)
    if not cand_a:
        return pd.DataFrame({"items": [], "count": []})
    ca, cb, cc = np.concatenate(cand_a), np.concatenate(cand_b), np.concatenate(cand_c)
    cand_keys = (ca * n2 + cb) * n2 + cc  # sorted because a, b, c are generated in order
    counts = np.zeros(len(cand_keys), dtype=np.int64)
    groups = _grouped_rows(rows, codes, n_baskets)
    for m, matrix in groups.items():
        if m < 3:
            continue
        ia, ib, ic = (np.array(x) for x in zip(*_triples(m), strict=True))
        per_row = len(ia)
        step = max(1, _CHUNK_PAIRS // max(per_row, 1))
        for start in range(0, len(matrix), step):
            block = matrix[start : start + step]
            a, b, c = block[:, ia].ravel(), block[:, ib].ravel(), block[:, ic].ravel()
            ok = frequent_pair[a, b] & frequent_pair[a, c] & frequent_pair[b, c]
            keys = ((a[ok] * n2 + b[ok]) * n2 + c[ok]).astype(np.int64)
            pos = np.searchsorted(cand_keys, keys)
            counts += np.bincount(pos, minlength=len(cand_keys))
    hit = counts >= threshold
    to_item = frequent[sub]
    return pd.DataFrame(
        {
            "items": list(
                zip(to_item[ca[hit]].tolist(), to_item[cb[hit]].tolist(), to_item[cc[hit]].tolist(), strict=True)
            ),
            "count": counts[hit],
        }
    )


def _triples(m: int) -> list[tuple[int, int, int]]:
    return [(a, b, c) for a in range(m) for b in range(a + 1, m) for c in range(b + 1, m)]
