"""The F1 of a predicted basket, as the Instacart competition scored it, and the set maximising its expectation.

**The score** (:func:`basket_f1`): per customer, the F1 between the predicted and the true set of
reordered products, where a customer who reorders nothing has the true set ``{None}`` and a
prediction may include ``None``; the competition's score is its mean over customers.

**The choice** (:func:`choose_sets`): given each candidate's probability of being reordered, treated
as independent, the set with the highest *expected* F1. Under independence the best set of ``k``
products is the ``k`` most probable (Lewis 1995; Nan et al., "Optimizing F-measures: a tale of two
approaches", ICML 2012), so only ``k`` and whether to add ``None`` are searched, exactly:

* with ``A`` the reorders among the top ``k`` and ``B`` those among the rest (independent
  Poisson-binomial counts), ``E[F1(top k)] = Σ_a P(A = a) · 2a · E[1 / (k + a + B)]``;
* adding ``None`` makes the predicted set one larger and scores when nothing is reordered:
  ``Σ_a P(A = a) · 2a · E[1 / (k + a + 1 + B)] + P(nothing) · 2 / (k + 2)``.

``P(A = a)`` is built forward over ``k`` and ``h_k(s) = E[1 / (s + B)]`` backward
(``h_{k-1}(s) = (1 - p_k) h_k(s) + p_k h_k(s + 1)``), so every ``k`` of a customer costs
``O(n²)`` together, vectorised over a block of customers. The search runs over each customer's
``max_items`` most probable products (the products past them, at full scale all below a few
per cent, are never chosen: their reorders enter ``B`` as a Poisson count of the same mean, the
sum of their probabilities, instead of one by one). ``P(nothing)`` is the product of
``1 - p`` over all of them, or a model's estimate (:mod:`basket_insights.reorder_model` fits one:
independence underestimates it, since one customer's products are not independent).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def basket_f1(
    rows: np.ndarray, chosen: np.ndarray, bought: np.ndarray, none_chosen: np.ndarray, n_rows: int
) -> np.ndarray:
    """Per customer row ``0..n_rows-1``: the F1 of the chosen set against what was bought.

    Per candidate: its customer ``rows``, whether it is ``chosen`` and whether it was ``bought``
    (reordered); per customer: ``none_chosen``. A customer whose candidates were none bought has the
    true set ``{None}``; a customer with no chosen product and no ``None`` scores 0.
    """
    rows = np.asarray(rows, dtype=np.int64)
    chosen, bought = np.asarray(chosen, bool), np.asarray(bought, bool)
    none_chosen = np.asarray(none_chosen, bool)
    hits = np.bincount(rows, weights=chosen & bought, minlength=n_rows)
    predicted = np.bincount(rows, weights=chosen, minlength=n_rows) + none_chosen
    true = np.bincount(rows, weights=bought, minlength=n_rows)
    hits = hits + (none_chosen & (true == 0))
    size = predicted + np.maximum(true, 1)
    return np.where(size > 0, 2 * hits / np.maximum(size, 1), 0.0)


def _tail_reciprocal(s: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """(customers, len(s)): ``E[1 / (s + T)]`` (0 where ``s + T`` is 0) for ``T`` ~ Poisson(``tail``)."""
    from scipy.stats import poisson

    top = float(tail.max(initial=0.0))
    counts = np.arange(int(np.ceil(top + 8 * np.sqrt(top))) + (10 if top > 0 else 1))
    pmf = poisson.pmf(counts[None, :], tail[:, None])  # (customers, counts)
    total = s[:, None] + counts[None, :]
    reciprocal = np.divide(1.0, total, out=np.zeros(total.shape), where=total > 0)
    return pmf @ reciprocal.T


def expected_f1_table(
    probabilities: np.ndarray, p_nothing: np.ndarray, tail: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact expected F1 of every top-``k`` choice, without and with ``None``.

    ``probabilities``: (customers, n), each row sorted in decreasing order (pad with 0);
    ``p_nothing``: (customers,) the chance of no reorder; ``tail``: (customers,) the expected reorders
    among products left out of the table (by default none), counted as a Poisson number. Returns two
    (customers, n + 1) arrays, column ``k`` the expected F1 of the top ``k`` products without / with ``None``
    (``k = 0`` without ``None`` is the empty prediction: 0).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    users, n = p.shape
    # prefix[k][:, a] = P(a of the top k are reordered), a = 0..k
    prefix = [np.ones((users, 1))]
    for k in range(1, n + 1):
        pk = p[:, k - 1 : k]
        step = np.zeros((users, k + 1))
        step[:, :k] = prefix[-1] * (1 - pk)
        step[:, 1:] += prefix[-1] * pk
        prefix.append(step)
    # h[:, s] = E[1 / (s + B)] for B the reorders past the top k; starts with B = 0 (k = n)
    h = _tail_reciprocal(np.arange(2 * n + 2), np.zeros(users) if tail is None else np.asarray(tail, np.float64))
    without, with_none = np.zeros((users, n + 1)), np.zeros((users, n + 1))
    a = np.arange(n + 1)
    for k in range(n, -1, -1):
        weights = prefix.pop() * (2 * a[: k + 1])
        without[:, k] = (weights * h[:, k : 2 * k + 1]).sum(axis=1)
        with_none[:, k] = (weights * h[:, k + 1 : 2 * k + 2]).sum(axis=1) + p_nothing * 2 / (k + 2)
        if k:
            pk = p[:, k - 1 : k]
            h[:, :-1] = (1 - pk) * h[:, :-1] + pk * h[:, 1:]
    return without, with_none


def choose_sets(
    rows: np.ndarray,
    probability: np.ndarray,
    n_rows: int,
    max_items: int = 80,
    p_none: np.ndarray | None = None,
    block: int = 2048,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """The expected-F1-optimal set of every customer (see the module docstring).

    ``rows``: each candidate's customer row (``0..n_rows-1``), ``probability``: its chance of being
    reordered; ``p_none``: each customer's chance of reordering nothing, when a model estimates it
    (by default the independent product of ``1 - p`` over every candidate); ``eligible``: the
    candidates the search looks at (by default all; the others are never chosen, as if past
    ``max_items``: :mod:`basket_insights.screen` leaves out those it screened). Returns ``rank``
    per candidate (1.. within the chosen set, 0 when not chosen) and one row per customer row:
    ``p_none``, ``none_chosen``, ``chosen`` (products chosen) and ``expected_f1``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    probability = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0 - 1e-12)
    if p_none is None:
        p_none = np.exp(np.bincount(rows, weights=np.log1p(-probability), minlength=n_rows))
    p_none = np.asarray(p_none, dtype=np.float64)
    expected = np.bincount(rows, weights=probability, minlength=n_rows)  # reorders, searched or not
    searched = rows if eligible is None else rows[eligible]
    if eligible is not None:
        probability = probability[eligible]
    # customers in blocks of alike candidate counts: a block's table is as wide as its widest customer
    by_count = np.argsort(np.minimum(np.bincount(searched, minlength=n_rows), max_items), kind="stable")
    place_of = np.empty(n_rows, dtype=np.int64)
    place_of[by_count] = np.arange(n_rows)
    ranked, chosen = _choose_sorted(
        place_of[searched], probability, n_rows, max_items, p_none[by_count], expected[by_count], block
    )
    per_user = pd.DataFrame({name: values[place_of] for name, values in chosen.items()})
    if eligible is None:
        return ranked, per_user
    rank = np.zeros(len(rows), dtype=np.int16)
    rank[eligible] = ranked
    return rank, per_user


def _choose_sorted(
    rows: np.ndarray,
    probability: np.ndarray,
    n_rows: int,
    max_items: int,
    p_none: np.ndarray,
    expected: np.ndarray,
    block: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    order = np.lexsort((-probability, rows))
    sorted_rows = rows[order]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    place = np.arange(len(rows)) - starts[sorted_rows]
    k_best = np.zeros(n_rows, dtype=np.int64)
    none_best = np.ones(n_rows, dtype=bool)
    value = p_none.copy()  # k = 0 with None: the only non-empty choice of a customer with no candidates
    sorted_probability = probability[order]
    ends = np.r_[starts, len(rows)]
    searched = place < max_items
    in_table = np.bincount(sorted_rows[searched], weights=sorted_probability[searched], minlength=n_rows)
    tail = np.maximum(expected - in_table, 0.0)
    for first in range(0, n_rows, block):
        last = min(first + block, n_rows)
        width = int(min(max_items, counts[first:last].max(initial=0)))
        if width == 0:
            continue
        span = slice(ends[first], ends[last])  # the block's candidates: `rows` are sorted in `order`
        take = searched[span]
        matrix = np.zeros((last - first, width))
        matrix[sorted_rows[span][take] - first, place[span][take]] = sorted_probability[span][take]
        without, with_none = expected_f1_table(matrix, p_none[first:last], tail[first:last])
        usable = np.arange(width + 1)[None, :] <= np.minimum(counts[first:last], width)[:, None]
        without = np.where(usable, without, -np.inf)
        without[:, 0] = -np.inf  # the empty prediction
        with_none = np.where(usable, with_none, -np.inf)
        best_without, best_with = without.max(axis=1), with_none.max(axis=1)
        add_none = best_with >= best_without
        k_best[first:last] = np.where(add_none, with_none.argmax(axis=1), without.argmax(axis=1))
        none_best[first:last] = add_none
        value[first:last] = np.maximum(best_with, best_without)
    rank = np.zeros(len(rows), dtype=np.int16)
    picked = place < k_best[sorted_rows]
    rank[order[picked]] = place[picked] + 1
    return rank, {"p_none": p_none, "none_chosen": none_best, "chosen": k_best, "expected_f1": value}
