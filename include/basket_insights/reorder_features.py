"""Buy-again candidates: every product a customer bought before, with the features of a reorder.

:func:`reorder_candidates` takes a reorder history (a :class:`~basket_insights.features.History`
whose lines also carry ``add_to_cart_order`` and ``day``, the order's date as days since
1970-01-01) and returns one row per (customer, product the customer bought), sorted by customer then
product, with :data:`FEATURES`, in the spirit of the Instacart competition's best solutions. Every
feature is as of the customer's last order in the history: what a model learns from one order back
(labels: the order after the history) it applies unchanged to the whole history.

Customer (``user_*``):

=============================  ============================================================
``user_orders``                orders placed
``user_mean_gap``              days between the first and last order / (orders - 1)
``user_mean_basket``           order lines per order
``user_reorder_ratio``         share of lines that repeat a product the customer bought before
``user_distinct_products``     distinct products bought
=============================  ============================================================

Product (``product_*``, over every customer of the history):

=============================  ============================================================
``product_buyers``             customers who bought it
``product_reorder_rate``       share of its lines that are repeats
``product_repeat_buyers``      share of its buyers who bought it in two orders or more
=============================  ============================================================

Customer × product (``up_*``):

=============================  ============================================================
``up_times``                   orders holding it
``up_share``                   ``up_times / user_orders``
``up_share_since_first``       ``up_times`` / orders since (and including) the first purchase
``up_orders_since``            orders placed after the last purchase (0: in the last order)
``up_days_since``              days from the last purchase to the customer's last order
``up_streak``                  consecutive latest orders holding it
``up_mean_cart_position``      mean ``add_to_cart_order``
``up_mean_interval``           days between its first and last purchase / (times - 1)
``up_gap_ratio``               ``up_days_since / max(up_mean_interval, 1)``: how overdue it is
=============================  ============================================================

A feature that does not exist for a row (an interval of a product bought once) is ``NaN``: the
gradient-boosted model handles missing values natively. Besides the features, each row keeps
``row``, ``user_id``, ``product_id`` and ``last_day`` (the day of the last purchase, for reasons).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from basket_insights.arrays import factorize_ids, padded_sum
from basket_insights.features import History

FEATURES = [
    "user_orders",
    "user_mean_gap",
    "user_mean_basket",
    "user_reorder_ratio",
    "user_distinct_products",
    "product_buyers",
    "product_reorder_rate",
    "product_repeat_buyers",
    "up_times",
    "up_share",
    "up_share_since_first",
    "up_orders_since",
    "up_days_since",
    "up_streak",
    "up_mean_cart_position",
    "up_mean_interval",
    "up_gap_ratio",
]


def _order_positions(lines: pd.DataFrame, row_of_line: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line: the 0-based position of its order among its customer's orders (by ``order_number``);
    per customer: the number of orders and the day of the last one."""
    order_ids = lines["order_id"].to_numpy(np.int64)
    size = int(order_ids.max(initial=-1)) + 1
    row_of_order = np.full(size, -1, dtype=np.int64)
    number_of_order = np.zeros(size, dtype=np.int64)
    day_of_order = np.zeros(size, dtype=np.int64)
    row_of_order[order_ids] = row_of_line
    number_of_order[order_ids] = lines["order_number"].to_numpy(np.int64)
    day_of_order[order_ids] = lines["day"].to_numpy(np.int64)
    placed = np.flatnonzero(row_of_order >= 0)
    placed = placed[np.lexsort((number_of_order[placed], row_of_order[placed]))]
    owner = row_of_order[placed]
    n_users = int(row_of_line.max(initial=-1)) + 1
    orders = np.bincount(owner, minlength=n_users)
    first = np.r_[0, np.cumsum(orders)[:-1]]
    position_of_order = np.zeros(size, dtype=np.int64)
    position_of_order[placed] = np.arange(len(placed)) - first[owner]
    # every customer of the lines has an order: first and last are inside `placed`
    first_day = day_of_order[placed[first]]
    last_day = day_of_order[placed[first + orders - 1]]
    return position_of_order[order_ids], orders, np.vstack([first_day, last_day])


def orders_from_last(lines: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per line: how many of its customer's orders come after its order (0: the last order), and how
    many orders its customer placed. The splits of buy again are masks on these, not copies."""
    row_of_line, _ = factorize_ids(lines["user_id"].to_numpy(np.int64))
    position, user_orders, _ = _order_positions(lines, row_of_line)
    orders = user_orders[row_of_line]
    return orders - 1 - position, orders


@dataclass(frozen=True)
class ProductStats:
    """Per product id: its buyers, the share of its lines that are repeats, the share of its buyers
    who bought it twice or more (the ``product_*`` features), over the lines they were counted on."""

    buyers: np.ndarray
    reorder_rate: np.ndarray
    repeat_buyers: np.ndarray

    def of(self, name: str, products: np.ndarray) -> np.ndarray:
        """The statistic ``name`` of each of ``products`` (``NaN`` for a product never counted)."""
        values = np.r_[getattr(self, name), np.nan]  # the last entry stands for every unknown product
        return values[np.where(products < len(values) - 1, products, len(values) - 1)]


@dataclass(frozen=True)
class ProductCounts:
    """Per product id: its order lines, buyers and buyers of two lines or more over some customers.

    Every customer's lines count for their products only, so the counts of disjoint sets of
    customers (user shards) add up (``+``) to those of all of them; :meth:`stats` turns them into
    :class:`ProductStats`."""

    lines: np.ndarray
    buyers: np.ndarray
    repeaters: np.ndarray

    def __add__(self, other: ProductCounts) -> ProductCounts:
        return ProductCounts(
            padded_sum([self.lines, other.lines]),
            padded_sum([self.buyers, other.buyers]),
            padded_sum([self.repeaters, other.repeaters]),
        )

    def stats(self) -> ProductStats:
        """The ``product_*`` features of these counts (``NaN`` rates for a product without lines)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return ProductStats(self.buyers, (self.lines - self.buyers) / self.lines, self.repeaters / self.buyers)


def product_stats(history: History, keep: np.ndarray | None = None) -> ProductStats:
    """:class:`ProductStats` over the lines of ``history`` (those where ``keep``, when given)."""
    if keep is None:
        return product_stats_by_group(history, np.zeros(len(history.lines), np.int8), [{0}])[0]
    return product_stats_by_group(history, keep.astype(np.int8), [{1}])[0]


def product_stats_by_group(
    history: History, group: np.ndarray, subsets: Sequence[Collection[int]]
) -> list[ProductStats]:
    """:func:`product_stats` of several subsets of the lines of ``history`` for the cost of one sort
    (see :func:`product_counts_by_group`)."""
    return [counts.stats() for counts in product_counts_by_group(history, group, subsets)]


def product_counts_by_group(
    history: History, group: np.ndarray, subsets: Sequence[Collection[int]]
) -> list[ProductCounts]:
    """:class:`ProductCounts` of several subsets of the lines of ``history`` for the cost of one sort.

    ``group``: a small non-negative code per line; each of ``subsets`` is the codes of the lines it
    counts. The counts cover every product id up to the largest in ``history``.
    """
    users = history.lines["user_id"].to_numpy(np.int64)
    products = history.lines["product_id"].to_numpy(np.int64)
    group = np.asarray(group, dtype=np.int64)
    n_products = max(int(products.max(initial=-1)) + 1, 1)
    n_groups = int(group.max(initial=0)) + 1
    keys = (users * n_products + products) * n_groups + group
    keys.sort()
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    lines_in_group = np.diff(np.r_[starts, len(keys)])
    pair_keys, key_group = np.divmod(keys[starts], n_groups)
    del keys
    new_pair = np.r_[True, pair_keys[1:] != pair_keys[:-1]] if len(pair_keys) else np.zeros(0, dtype=bool)
    pair_of = np.cumsum(new_pair) - 1
    pair_product = pair_keys[new_pair] % n_products
    out = []
    for subset in subsets:
        counted = np.isin(key_group, list(subset))
        times = np.bincount(pair_of[counted], weights=lines_in_group[counted], minlength=len(pair_product))
        lines = np.bincount(pair_product, weights=times, minlength=n_products)
        buyers = np.bincount(pair_product[times > 0], minlength=n_products).astype(np.float64)
        repeaters = np.bincount(pair_product[times >= 2], minlength=n_products).astype(np.float64)
        out.append(ProductCounts(lines, buyers, repeaters))
    return out


def reorder_candidates(history: History, products: ProductStats | None = None) -> pd.DataFrame:
    """One row per (customer, product bought) of ``history`` with :data:`FEATURES` (see the module docstring).

    ``products``: the product features counted over more customers than ``history`` holds (a block
    of customers is scored with the product features of all of them); by default over ``history``.
    """
    lines = history.lines
    if len(lines) == 0:
        columns = ["row", "user_id", "product_id", "last_day", *FEATURES]
        return pd.DataFrame({c: np.zeros(0, dtype=np.int64 if c in columns[:4] else np.float32) for c in columns})
    stats = product_stats(history) if products is None else products
    row_of_line, users = factorize_ids(lines["user_id"].to_numpy(np.int64))
    products = lines["product_id"].to_numpy(np.int64)
    position, user_orders, days = _order_positions(lines, row_of_line)
    first_day, last_day = days
    n_products = int(products.max()) + 1
    width = int(position.max()) + 1
    keys = (row_of_line * n_products + products) * width + position
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    pair_keys = keys // width
    starts = np.flatnonzero(np.r_[True, pair_keys[1:] != pair_keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    row = pair_keys[starts] // n_products
    product = pair_keys[starts] % n_products
    line_position = keys % width
    line_day = lines["day"].to_numpy(np.int64)[order]
    times = (ends - starts + 1).astype(np.float64)
    last_position = line_position[ends]
    # a line is in the streak when it is `j` orders before the customer's last, `j` its place from the
    # pair's end: positions strictly increase within a pair, so those lines form its latest run
    from_end = np.repeat(ends, np.diff(np.r_[starts, len(keys)])) - np.arange(len(keys))
    in_streak = line_position == (user_orders[pair_keys // n_products] - 1 - from_end)
    cart = lines["add_to_cart_order"].to_numpy(np.float64)[order]

    user_lines = np.bincount(row_of_line, minlength=len(users)).astype(np.float64)
    user_products = np.bincount(row, minlength=len(users)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        user_mean_gap = np.where(user_orders > 1, (last_day - first_day) / (user_orders - 1), np.nan)
        interval = np.where(times > 1, (line_day[ends] - line_day[starts]) / (times - 1), np.nan)
        days_since = (last_day[row] - line_day[ends]).astype(np.float64)
        features = {
            "user_orders": user_orders[row],
            "user_mean_gap": user_mean_gap[row],
            "user_mean_basket": (user_lines / np.maximum(user_orders, 1))[row],
            "user_reorder_ratio": ((user_lines - user_products) / user_lines)[row],
            "user_distinct_products": user_products[row],
            "product_buyers": stats.of("buyers", product),
            "product_reorder_rate": stats.of("reorder_rate", product),
            "product_repeat_buyers": stats.of("repeat_buyers", product),
            "up_times": times,
            "up_share": times / user_orders[row],
            "up_share_since_first": times / (user_orders[row] - line_position[starts]),
            "up_orders_since": user_orders[row] - 1 - last_position,
            "up_days_since": days_since,
            "up_streak": np.add.reduceat(in_streak, starts),
            "up_mean_cart_position": np.add.reduceat(cart, starts) / times,
            "up_mean_interval": interval,
            # two purchases on one day make an interval of 0: counted as a day, not as infinitely overdue
            "up_gap_ratio": days_since / np.maximum(interval, 1.0),
        }
    out = pd.DataFrame({"row": row, "user_id": users[row], "product_id": product, "last_day": line_day[ends]})
    for name in FEATURES:
        out[name] = np.asarray(features[name], dtype=np.float32)
    return out


def label_candidates(candidates: pd.DataFrame, next_lines: pd.DataFrame) -> np.ndarray:
    """1 for each candidate whose product is in the customer's next order (``next_lines``: ``user_id, product_id``)."""
    keys = candidates["user_id"].to_numpy(np.int64) << 32 | candidates["product_id"].to_numpy(np.int64)
    bought = np.unique(next_lines["user_id"].to_numpy(np.int64) << 32 | next_lines["product_id"].to_numpy(np.int64))
    return np.isin(keys, bought).astype(np.int8)
