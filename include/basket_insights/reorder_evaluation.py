"""The buy-again evaluation: mean F1 on each customer's held-out last order, as Instacart scored it.

Protocol (:func:`evaluate_buy_again`): for every customer with at least two orders, the last order
is held out (:func:`basket_insights.splits.split_last_orders`); every method names a set of the
products the customer bought before it (plus, optionally, ``None``) and is scored by the F1 against
the products of the held-out order they had bought before (``{None}`` when there are none:
:func:`basket_insights.expected_f1.basket_f1`). The model judged was fitted on the history without
those orders (the ``predict_reorders`` task), so nothing it saw contains a held-out order.

Methods (:data:`METHODS`):

* ``buy_again_model``: the model's probabilities and their expected-F1 sets;
* ``frequency_threshold``: the products bought in at least a share ``t`` of the customer's orders
  (``None`` when no product reaches it), ``t`` the best of :data:`THRESHOLDS` *on the held-out orders
  themselves*: the strongest form of that baseline, a ceiling a fixed threshold could not beat;
* ``last_order``: the customer's last order again.

Up to ``EvaluationSettings.customers`` held-out customers (those of smallest user hash when there are more);
a 95 % bootstrap interval over customers for each mean F1, and the paired difference of each
method to the best baseline with its interval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from basket_insights.arrays import select_rows
from basket_insights.buy_again import customers_mask, label_mask, labelled_customers, map_blocks, score_candidates
from basket_insights.evaluation import EvaluationSettings, bootstrap_means
from basket_insights.expected_f1 import basket_f1
from basket_insights.features import History
from basket_insights.reorder_features import (
    ProductStats,
    label_candidates,
    orders_from_last,
    product_stats,
    reorder_candidates,
)
from basket_insights.reorder_model import FrequencyModel, ReorderModel, ReorderSettings
from basket_insights.user_shards import smallest_hash_users

log = logging.getLogger(__name__)

METHODS = {
    "buy_again_model": "the gradient-boosted model with expected-F1 sets",
    "frequency_threshold": "products bought in at least a share t of the customer's orders (best t)",
    "last_order": "the customer's last order again",
}
BASELINES = ("frequency_threshold", "last_order")
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.10, 0.501, 0.05))


@dataclass
class Judged:
    """Customers' F1 on their held-out orders, per method (and per threshold ``t`` of
    ``frequency_threshold``), with the sizes of the sets named; customers sorted by id."""

    customers: np.ndarray
    f1: dict[str | float, np.ndarray]  # per method or threshold: one F1 per customer
    sizes: dict[str | float, int]  # per method or threshold: products (and None) named in all

    @classmethod
    def combine(cls, parts: Sequence[Judged]) -> Judged:
        """All customers of ``parts`` (disjoint: blocks or user shards) in one, sorted by id as if
        judged together: the bootstrap draws customers by position."""
        keys = ["buy_again_model", *THRESHOLDS, "last_order"]
        customers = np.concatenate([np.zeros(0, np.int64), *(part.customers for part in parts)])
        order = np.argsort(customers, kind="stable")
        f1 = {key: np.concatenate([np.zeros(0), *(part.f1[key] for part in parts)])[order] for key in keys}
        sizes = {key: sum(part.sizes[key] for part in parts) for key in keys}
        return cls(customers[order], f1, sizes)


def held_out_customers(history: History, positions: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The sorted ids of the customers whose last order is held out (those with two orders or more)."""
    return labelled_customers(history, positions, 0)


def judge_buy_again(
    history: History,
    model: ReorderModel | FrequencyModel,
    settings: ReorderSettings,
    customers: np.ndarray,
    positions: tuple[np.ndarray, np.ndarray],
    products: ProductStats,
) -> Judged:
    """Every method's sets for ``customers`` (sorted ids of :func:`held_out_customers`) from their
    history before the held-out order, scored against it. ``products``: the product features over
    every customer's lines but the held-out orders, as in training."""
    lines = history.lines
    user_ids = lines["user_id"].to_numpy(np.int64)
    held = label_mask(positions, 0)
    held_lines = select_rows(lines, held & customers_mask(user_ids, customers), ["user_id", "product_id"])

    def judge(block: np.ndarray) -> Judged:
        candidates = reorder_candidates(History(select_rows(lines, customers_mask(user_ids, block) & ~held)), products)
        scored_block = score_candidates(model, candidates, settings)
        rows, n = scored_block.rows, len(scored_block.users)
        bought = label_candidates(candidates, held_lines).astype(bool)
        picked = scored_block.rank > 0
        f1 = {"buy_again_model": basket_f1(rows, picked, bought, scored_block.none_chosen, n)}
        size = {"buy_again_model": int(picked.sum() + scored_block.none_chosen.sum())}
        share = candidates["up_share"].to_numpy()
        for t in THRESHOLDS:
            chosen = share >= t - 1e-9
            none = np.bincount(rows, weights=chosen, minlength=n) == 0
            f1[t], size[t] = basket_f1(rows, chosen, bought, none, n), int(chosen.sum() + none.sum())
        last = candidates["up_orders_since"].to_numpy() == 0
        f1["last_order"] = basket_f1(rows, last, bought, np.zeros(n, bool), n)
        size["last_order"] = int(last.sum())
        return Judged(scored_block.users, f1, size)

    return Judged.combine([judged for _, judged in map_blocks(judge, customers, settings)])


def evaluation_table(judged: Judged, evaluation: EvaluationSettings) -> pd.DataFrame:
    """One row per method of :data:`METHODS`: ``users_evaluated, mean_f1, f1_low, f1_high, mean_set_size,
    threshold`` and the paired difference to the best baseline (``baseline, f1_vs_baseline, *_low, *_high``);
    ``frequency_threshold`` at its best ``t`` on these customers."""
    n = len(judged.customers)
    best_t = max(THRESHOLDS, key=lambda t: judged.f1[t].mean() if n else 0.0)
    # each method of METHODS, the frequency threshold at its best t
    source = {"buy_again_model": "buy_again_model", "frequency_threshold": best_t, "last_order": "last_order"}
    f1 = {method: judged.f1[key] for method, key in source.items()}
    sizes = {method: judged.sizes[key] / max(n, 1) for method, key in source.items()}
    table = _score_table(f1, sizes, evaluation)
    table.loc[table["method"] == "frequency_threshold", "threshold"] = best_t
    log.info(
        "buy-again evaluation: %d customers, %s",
        n,
        table[["method", "mean_f1", "f1_low", "f1_high"]].round(4).to_dict("records"),
    )
    return table


def evaluate_buy_again(
    history: History,
    model: ReorderModel | FrequencyModel,
    settings: ReorderSettings,
    evaluation: EvaluationSettings | None = None,
    positions: tuple[np.ndarray, np.ndarray] | None = None,
    products: ProductStats | None = None,
) -> pd.DataFrame:
    """:func:`evaluation_table` of the ``evaluation.customers`` held-out customers of smallest
    :func:`~basket_insights.user_shards.user_hash` (the same sample when the history is read in user
    shards).

    ``positions``: :func:`~basket_insights.reorder_features.orders_from_last` of the lines, when the
    caller has it; ``products``: the product features over every line but the held-out last orders,
    likewise."""
    evaluation = evaluation or EvaluationSettings()
    positions = positions if positions is not None else orders_from_last(history.lines)
    if products is None:
        products = product_stats(history, keep=~label_mask(positions, 0))
    customers = smallest_hash_users(held_out_customers(history, positions), evaluation.customers)
    judged = judge_buy_again(history, model, settings, customers, positions, products)
    return evaluation_table(judged, evaluation)


def _score_table(f1: dict[str, np.ndarray], sizes: dict[str, float], settings: EvaluationSettings) -> pd.DataFrame:
    methods = list(f1)
    values = np.vstack([f1[m] for m in methods])
    users = values.shape[1]
    boot = bootstrap_means(values, settings.bootstrap, settings.seed) if users else None
    best = max(BASELINES, key=lambda m: values[methods.index(m)].mean()) if users else None
    rows = []
    for i, method in enumerate(methods):
        row = {
            "method": method,
            "users_evaluated": users,
            "mean_f1": float(values[i].mean()) if users else 0.0,
            "mean_set_size": sizes[method],
            "threshold": np.nan,
        }
        if boot is not None:
            diff = boot[:, i] - boot[:, methods.index(best)]
            row |= {
                "f1_low": float(np.quantile(boot[:, i], 0.025)),
                "f1_high": float(np.quantile(boot[:, i], 0.975)),
                "baseline": best,
                "f1_vs_baseline": row["mean_f1"] - float(values[methods.index(best)].mean()),
                "f1_vs_baseline_low": float(np.quantile(diff, 0.025)),
                "f1_vs_baseline_high": float(np.quantile(diff, 0.975)),
            }
        rows.append(row)
    return pd.DataFrame(rows)
