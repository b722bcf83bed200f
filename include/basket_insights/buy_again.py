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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from basket_insights.arrays import select_rows
from basket_insights.blocks import blocks_of, map_ahead
from basket_insights.expected_f1 import choose_sets
from basket_insights.features import History
from basket_insights.reorder_features import (
    ProductStats,
    label_candidates,
    orders_from_last,
    product_stats,
    reorder_candidates,
)
from basket_insights.reorder_model import (
    FrequencyModel,
    NothingToLearn,
    ReorderModel,
    ReorderSettings,
    fit_reorder_model,
)
from basket_insights.user_shards import smallest_hash_users

log = logging.getLogger(__name__)

T = TypeVar("T")

BUY_AGAIN_COLUMNS = ["user_id", "rank", "product_id", "product_name", "probability", "chosen", "reason"]
#: ``gold/buy_again``: the run's date, then :data:`BUY_AGAIN_COLUMNS`.
BUY_AGAIN_SCHEMA = pa.schema(
    [
        ("ds", pa.large_string()),
        ("user_id", pa.int64()),
        ("rank", pa.int16()),
        ("product_id", pa.int64()),
        ("product_name", pa.large_string()),
        ("probability", pa.float64()),
        ("chosen", pa.bool_()),
        ("reason", pa.large_string()),
    ]
)


def customers_mask(user_ids: np.ndarray, customers: np.ndarray) -> np.ndarray:
    """Per line: is its customer one of ``customers``? (A dense lookup: no sort of the lines.)"""
    size = int(max(user_ids.max(initial=-1), np.max(customers, initial=-1))) + 1
    member = np.zeros(size, dtype=bool)
    member[customers] = True
    return member[user_ids]


def customers_with_orders(users: np.ndarray, order_ids: np.ndarray, at_least: int) -> np.ndarray:
    """The sorted ids of the customers of these lines with ``at_least`` distinct orders among them."""
    owner = np.full(int(order_ids.max(initial=-1)) + 1, -1, dtype=np.int64)
    owner[order_ids] = users
    placed = owner[owner >= 0]
    counts = np.bincount(placed, minlength=int(users.max(initial=-1)) + 1)
    return np.flatnonzero(counts >= at_least)


def label_mask(positions: tuple[np.ndarray, np.ndarray], skip: int) -> np.ndarray:
    """Per line: is it in its customer's order ``skip`` from the last, with an order before it to learn
    from? (``skip = 0``: the last orders the evaluation holds out.) ``positions``:
    :func:`~basket_insights.reorder_features.orders_from_last` of the lines."""
    from_last, orders = positions
    return (from_last == skip) & (orders >= skip + 2)


def labelled_customers(history: History, positions: tuple[np.ndarray, np.ndarray], skip: int) -> np.ndarray:
    """The sorted ids of the customers with a label order ``skip`` from their last (:func:`label_mask`)."""
    return np.unique(history.lines["user_id"].to_numpy(np.int64)[label_mask(positions, skip)])


def fit_examples(
    history: History,
    sample: np.ndarray,
    skip: int,
    positions: tuple[np.ndarray, np.ndarray],
    products: ProductStats,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The fit's candidates and 0/1 labels for the customers ``sample`` (sorted ids with a label order):
    candidates from their orders before the label order, labels from it. ``products``: the product
    features over every customer's orders before their label order."""
    lines = history.lines
    users = lines["user_id"].to_numpy(np.int64)
    sampled = customers_mask(users, sample)
    inputs = positions[0] > skip
    candidates = reorder_candidates(History(select_rows(lines, inputs & sampled)), products)
    label = label_mask(positions, skip)
    labels = label_candidates(candidates, select_rows(lines, label & sampled, ["user_id", "product_id"]))
    return candidates, labels


def fit_on_examples(
    candidates: pd.DataFrame, labels: np.ndarray, settings: ReorderSettings
) -> ReorderModel | FrequencyModel:
    """:func:`~basket_insights.reorder_model.fit_reorder_model` on :func:`fit_examples`, or the
    frequency fallback when there is nothing to learn."""
    log.info(
        "buy-again fit: %d customers sampled of those with a label order, %d candidates, %d reordered",
        candidates["user_id"].nunique(),
        len(candidates),
        int(labels.sum()),
    )
    try:
        return fit_reorder_model(candidates, labels, settings)
    except NothingToLearn as exc:
        log.warning("buy-again fit: %s; predicting by each product's share of the customer's orders", exc)
        return FrequencyModel(str(exc))


def fit_buy_again(
    history: History,
    settings: ReorderSettings,
    skip: int = 0,
    positions: tuple[np.ndarray, np.ndarray] | None = None,
    products: ProductStats | None = None,
) -> ReorderModel | FrequencyModel:
    """Fit the model with each customer's order ``skip`` from the last as labels (see the module docstring).

    ``skip = 0``: the last order of ``history`` labels, the orders before it are the input; the
    ``predict_reorders`` task passes ``skip = 1``, leaving each customer's last order out of the fit
    altogether (it is the evaluation's). Only the ``settings.train_users`` labelled customers of
    smallest :func:`~basket_insights.user_shards.user_hash` get candidates (the same sample when the
    history is read in user shards); the product features count every customer's input orders.
    ``positions``: :func:`~basket_insights.reorder_features.orders_from_last` of the lines, when the
    caller has it; ``products``: the product features over the input lines (those more than ``skip``
    orders from each customer's last), likewise.
    """
    positions = positions if positions is not None else orders_from_last(history.lines)
    if products is None:
        products = product_stats(history, keep=positions[0] > skip)
    sample = smallest_hash_users(labelled_customers(history, positions, skip), settings.train_users)
    candidates, labels = fit_examples(history, sample, skip, positions, products)
    return fit_on_examples(candidates, labels, settings)


def reasons(candidates: pd.DataFrame, as_of_day: int) -> np.ndarray:
    """A sentence per candidate row from its features: how often, how regularly, how lately.

    Built with numpy's vectorised string functions: a full-scale run writes millions of them.
    """
    text = np.dtypes.StringDType()
    times = candidates["up_times"].to_numpy().astype(np.int64)
    order_count = candidates["user_orders"].to_numpy().astype(np.int64)
    orders = order_count.astype(text)
    interval = candidates["up_mean_interval"].to_numpy(np.float64)
    ago = as_of_day - candidates["last_day"].to_numpy().astype(np.int64)
    often = np.where(
        times == order_count,
        np.strings.add("you bought this in every one of your ", orders),
        np.where(
            times == 1,
            np.strings.add("you bought this once, in 1 of your ", orders),
            np.strings.add(np.strings.add(np.strings.add("you buy this in ", times.astype(text)), " of your "), orders),
        ),
    )
    often = np.strings.add(often, " orders")
    regular = np.isfinite(interval) & (times > 1)
    every = np.maximum(np.round(np.where(regular, interval, 1.0)), 1).astype(np.int64)
    rhythm = np.where(
        regular & (every > 1),
        np.strings.add(np.strings.add(", about every ", every.astype(text)), " days"),
        np.where(regular, ", about every day", ""),
    )
    when = np.where(
        ago == 0,
        "today",
        np.where(ago == 1, "yesterday", np.strings.add(ago.astype(text), " days ago")),
    )
    return np.strings.add(np.strings.add(often, rhythm), np.strings.add("; last bought ", when)).astype(object)


@dataclass
class ScoredBlock:
    """A block of customers' candidates with the model's probabilities and expected-F1 sets."""

    candidates: pd.DataFrame
    users: np.ndarray  # the block's customer ids; ``rows`` index them
    rows: np.ndarray  # per candidate
    probability: np.ndarray  # per candidate
    p_none: np.ndarray  # per customer
    rank: np.ndarray  # per candidate: 1.. in the chosen set, 0 not chosen
    none_chosen: np.ndarray  # per customer


def score_candidates(
    model: ReorderModel | FrequencyModel, candidates: pd.DataFrame, settings: ReorderSettings
) -> ScoredBlock:
    """The model's probabilities for ``candidates`` and every customer's expected-F1 set."""
    users, rows = np.unique(candidates["user_id"].to_numpy(np.int64), return_inverse=True)
    probability, passed = model.screened_probability(candidates)
    p_none = model.p_none(candidates, probability, rows, len(users))
    rank, per_user = choose_sets(rows, probability, len(users), settings.max_items, p_none, eligible=passed)
    return ScoredBlock(candidates, users, rows, probability, p_none, rank, per_user["none_chosen"].to_numpy())


def map_blocks(
    work: Callable[[np.ndarray], T], customers: np.ndarray, settings: ReorderSettings
) -> Iterator[tuple[np.ndarray, T]]:
    """``work`` on each block of ``settings.block_users`` customers, ``settings.threads`` blocks at a
    time (:func:`basket_insights.blocks.map_ahead`); yields each block's customers and result, in order."""
    return map_ahead(work, blocks_of(customers, settings.block_users), settings.threads)


def _buy_again_rows(block: ScoredBlock, names: pd.Series, as_of_day: int) -> pd.DataFrame:
    candidates, probability, rank = block.candidates, block.probability, block.rank
    users, p_none, none_chosen = block.users, block.p_none, block.none_chosen
    picked = rank > 0
    chosen = candidates.loc[
        picked, ["user_id", "product_id", "up_times", "user_orders", "up_mean_interval", "last_day"]
    ]
    products = pd.DataFrame(
        {
            "user_id": chosen["user_id"].to_numpy(np.int64),
            "rank": rank[picked].astype(np.int16),
            "product_id": pd.array(chosen["product_id"].to_numpy(np.int64), dtype="Int64"),
            "product_name": names.reindex(chosen["product_id"].to_numpy()).fillna("").to_numpy(object),
            "probability": probability[picked],
            "chosen": True,
            "reason": reasons(chosen, as_of_day),
        }
    )
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
    products: ProductStats | None = None,
) -> pd.DataFrame:
    """:data:`BUY_AGAIN_COLUMNS` for every customer of ``history`` with at least two orders.

    ``names``: product id -> name; ``as_of_day``: the run's date as days since 1970-01-01 (reasons
    say how long ago). Per customer: the chosen products (``rank`` 1..) and a ``rank`` 0 row with
    ``product_id`` null, the chance of reordering nothing and whether ``None`` is ``chosen``.
    Customers are scored ``settings.block_users`` at a time (memory stays bounded); the product
    features count all of them (``products``, when the caller has them), so a customer's set does
    not depend on the others in the block.
    """
    started = time.monotonic()
    lines = history.lines
    users = lines["user_id"].to_numpy(np.int64)
    customers = customers_with_orders(users, lines["order_id"].to_numpy(np.int64), 2)
    stats = product_stats(history) if products is None else products

    def predict(block: np.ndarray) -> tuple[int, pd.DataFrame]:
        candidates = reorder_candidates(History(select_rows(lines, customers_mask(users, block))), stats)
        return len(candidates), _buy_again_rows(score_candidates(model, candidates, settings), names, as_of_day)

    parts, done, chosen, with_none = [], 0, 0, 0
    for block, (n_candidates, part) in map_blocks(predict, customers, settings):
        done += len(block)
        chosen += int((part["rank"] > 0).sum())
        with_none += int(part.loc[part["rank"] == 0, "chosen"].sum())
        parts.append(part)
        log.info(
            "buy-again: %d/%d customers, %d candidates in the block, %d products chosen (%.1f s)",
            done,
            len(customers),
            n_candidates,
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
