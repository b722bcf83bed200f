"""Buy again: which of their products each customer will order next, and why.

**Fitting** (:func:`fit_buy_again`): each customer's last order of the history given becomes the
labels, the history before it the candidates and features
(:mod:`basket_insights.reorder_features`); the classifier and its setting are chosen on validation
customers by the mean F1 of the sets they lead to (:mod:`basket_insights.reorder_model`). The
``predict_reorders`` task fits on the history without each customer's last order, so that order
stays unseen for the evaluation (:mod:`basket_insights.reorder_evaluation`).

**Predicting** (:func:`predict_buy_again`): every customer with at least two orders gets the
probability of each product they bought before, the expected-F1-optimal set of them
(:func:`basket_insights.expected_f1.choose_sets`, with ``None`` when reordering nothing is likely
enough), each with a reason a person can read ("you buy this in 8 of your 10 orders, about every
9 days; last bought 12 days ago"), and one row (``rank`` 0, no product) with the chance that they
reorder nothing and whether ``None`` is in the set.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from basket_insights.expected_f1 import choose_sets
from basket_insights.features import History
from basket_insights.reorder_features import label_candidates, orders_from_last, product_stats, reorder_candidates
from basket_insights.reorder_model import (
    FrequencyModel,
    NothingToLearn,
    ReorderModel,
    ReorderSettings,
    fit_reorder_model,
)

log = logging.getLogger(__name__)

BUY_AGAIN_COLUMNS = ["user_id", "rank", "product_id", "product_name", "probability", "chosen", "reason"]


def customers_mask(user_ids: np.ndarray, customers: np.ndarray) -> np.ndarray:
    """Per line: is its customer one of ``customers``? (A dense lookup: no sort of the lines.)"""
    size = int(max(user_ids.max(initial=-1), np.max(customers, initial=-1))) + 1
    member = np.zeros(size, dtype=bool)
    member[customers] = True
    return member[user_ids]


def fit_buy_again(history: History, settings: ReorderSettings, skip: int = 0) -> ReorderModel | FrequencyModel:
    """Fit the model with each customer's order ``skip`` from the last as labels (see the module docstring).

    ``skip = 0``: the last order of ``history`` labels, the orders before it are the input; the
    ``predict_reorders`` task passes ``skip = 1``, leaving each customer's last order out of the fit
    altogether (it is the evaluation's). Only a sample of ``settings.train_users`` labelled customers
    get candidates; the product features count every customer's input orders.
    """
    started = time.monotonic()
    lines = history.lines
    from_last, orders = orders_from_last(lines)
    users = lines["user_id"].to_numpy(np.int64)
    label = (from_last == skip) & (orders >= skip + 2)
    inputs = from_last > skip
    labelled = np.unique(users[label])
    rng = np.random.default_rng(settings.seed)
    if len(labelled) > settings.train_users:
        labelled = np.sort(rng.choice(labelled, settings.train_users, replace=False))
    sampled = customers_mask(users, labelled)
    candidates = reorder_candidates(History(lines[inputs & sampled]), product_stats(history, keep=inputs))
    labels = label_candidates(candidates, lines.loc[label & sampled, ["user_id", "product_id"]])
    log.info(
        "buy-again fit: %d customers sampled of those with a label order, %d candidates, %d reordered (%.1f s)",
        len(labelled),
        len(candidates),
        int(labels.sum()),
        time.monotonic() - started,
    )
    try:
        return fit_reorder_model(candidates, labels, settings)
    except NothingToLearn as exc:
        log.warning("buy-again fit: %s; predicting by each product's share of the customer's orders", exc)
        return FrequencyModel(str(exc))


def _ago(days: int) -> str:
    return {0: "today", 1: "yesterday"}.get(int(days), f"{int(days)} days ago")


def reasons(candidates: pd.DataFrame, as_of_day: int) -> list[str]:
    """A sentence per candidate row from its features: how often, how regularly, how lately."""
    out = []
    columns = ["up_times", "user_orders", "up_mean_interval", "last_day"]
    for times, orders, interval, last in candidates[columns].itertuples(index=False):
        times, orders = int(times), int(orders)
        if times == orders:
            often = f"you bought this in every one of your {orders} orders"
        elif times == 1:
            often = f"you bought this once, in 1 of your {orders} orders"
        else:
            often = f"you buy this in {times} of your {orders} orders"
        rhythm = f", about every {max(round(interval), 1)} days" if np.isfinite(interval) and times > 1 else ""
        out.append(f"{often}{rhythm}; last bought {_ago(as_of_day - int(last))}")
    return out


def _predict_block(
    model: ReorderModel | FrequencyModel,
    candidates: pd.DataFrame,
    name_of: dict,
    as_of_day: int,
    settings: ReorderSettings,
) -> pd.DataFrame:
    users, rows = np.unique(candidates["user_id"].to_numpy(np.int64), return_inverse=True)
    probability = model.probability(candidates)
    p_none = model.p_none(candidates, probability, rows, len(users))
    rank, per_user = choose_sets(rows, probability, len(users), settings.max_items, p_none)
    picked = rank > 0
    chosen = candidates.loc[
        picked, ["user_id", "product_id", "up_times", "user_orders", "up_mean_interval", "last_day"]
    ]
    products = pd.DataFrame(
        {
            "user_id": chosen["user_id"].to_numpy(np.int64),
            "rank": rank[picked].astype(np.int16),
            "product_id": pd.array(chosen["product_id"].to_numpy(np.int64), dtype="Int64"),
            "product_name": [str(name_of.get(p, "")) for p in chosen["product_id"].tolist()],
            "probability": probability[picked],
            "chosen": True,
            "reason": reasons(chosen, as_of_day),
        }
    )
    none_chosen = per_user["none_chosen"].to_numpy()
    nothing = pd.DataFrame(
        {
            "user_id": users,
            "rank": np.zeros(len(users), dtype=np.int16),
            "product_id": pd.array([None] * len(users), dtype="Int64"),
            "product_name": "None",
            "probability": p_none,
            "chosen": none_chosen,
            "reason": [
                f"a {p:.0%} chance you reorder nothing next time" + ("; None is part of the set" if c else "")
                for p, c in zip(p_none, none_chosen, strict=True)
            ],
        }
    )
    out = pd.concat([nothing, products], ignore_index=True)
    return out.sort_values(["user_id", "rank"], kind="stable")[BUY_AGAIN_COLUMNS]


def predict_buy_again(
    model: ReorderModel | FrequencyModel,
    history: History,
    names: pd.Series,
    as_of_day: int,
    settings: ReorderSettings,
) -> pd.DataFrame:
    """:data:`BUY_AGAIN_COLUMNS` for every customer of ``history`` with at least two orders.

    ``names``: product id -> name; ``as_of_day``: the run's date as days since 1970-01-01 (reasons
    say how long ago). Per customer: the chosen products (``rank`` 1..) and a ``rank`` 0 row with
    ``product_id`` null, the chance of reordering nothing and whether ``None`` is ``chosen``.
    Customers are scored ``settings.block_users`` at a time (memory stays bounded); the product
    features count all of them, so a customer's set does not depend on the others in the block.
    """
    started = time.monotonic()
    lines = history.lines
    _, orders = orders_from_last(lines)
    users = lines["user_id"].to_numpy(np.int64)
    stats = product_stats(history)
    customers = np.unique(users[orders >= 2])
    name_of = names.to_dict()
    parts, chosen, with_none = [], 0, 0
    for first in range(0, len(customers), settings.block_users):
        block = customers[first : first + settings.block_users]
        candidates = reorder_candidates(History(lines[customers_mask(users, block)]), stats)
        part = _predict_block(model, candidates, name_of, as_of_day, settings)
        chosen += int((part["rank"] > 0).sum())
        with_none += int(part.loc[part["rank"] == 0, "chosen"].sum())
        parts.append(part)
        log.info(
            "buy-again: %d/%d customers, %d candidates in the block, %d products chosen (%.1f s)",
            first + len(block),
            len(customers),
            len(candidates),
            chosen,
            time.monotonic() - started,
        )
    if not parts:
        return pd.DataFrame({c: [] for c in BUY_AGAIN_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    log.info(
        "buy-again: %d products chosen for %d customers (%.1f per customer), None in %d sets (%.1f s)",
        chosen,
        len(customers),
        chosen / max(len(customers), 1),
        with_none,
        time.monotonic() - started,
    )
    return out
