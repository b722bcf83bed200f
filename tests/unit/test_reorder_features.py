"""Buy-again features on a tiny hand-checked history, and the histories that break naive code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights.features import History
from basket_insights.reorder_features import (
    FEATURES,
    label_candidates,
    orders_from_last,
    product_stats,
    product_stats_by_group,
    reorder_candidates,
)
from basket_insights.reorder_tasks import product_stats_of_splits


def history(orders: list[tuple[int, int, int, list[int]]]) -> History:
    """``orders``: (user, order number, day, products in cart order); order ids numbered in turn."""
    rows = []
    for order_id, (user, number, day, products) in enumerate(orders, start=1):
        for position, product in enumerate(products, start=1):
            rows.append((user, order_id, number, product, position, day))
    columns = ["user_id", "order_id", "order_number", "product_id", "add_to_cart_order", "day"]
    return History(pd.DataFrame(rows, columns=columns))


# user 1: A B | A C | B A  on days 0, 10, 30;  user 2: A | B  on days 5, 12  (A=1, B=2, C=3)
TINY = history(
    [
        (1, 1, 0, [1, 2]),
        (1, 2, 10, [1, 3]),
        (2, 1, 5, [1]),
        (1, 3, 30, [2, 1]),
        (2, 2, 12, [2]),
    ]
)


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    return reorder_candidates(TINY).set_index(["user_id", "product_id"])


def test_customer_product_features_match_the_hand_count(tiny) -> None:
    a, b, c = tiny.loc[(1, 1)], tiny.loc[(1, 2)], tiny.loc[(1, 3)]
    assert (a.up_times, a.up_share, a.up_share_since_first, a.up_orders_since, a.up_days_since) == (3, 1, 1, 0, 0)
    assert a.up_streak == 3 and a.up_mean_cart_position == pytest.approx(4 / 3) and a.up_mean_interval == 15
    assert a.up_gap_ratio == 0
    assert b.up_times == 2 and b.up_share == pytest.approx(2 / 3) and b.up_share_since_first == pytest.approx(2 / 3)
    assert b.up_orders_since == 0 and b.up_streak == 1  # bought in the last order, not in the one before
    assert b.up_mean_cart_position == 1.5 and b.up_mean_interval == 30
    # C: bought once, in the middle order, 20 days before the last order: no interval, not in the streak
    assert (c.up_times, c.up_share_since_first, c.up_orders_since, c.up_days_since, c.up_streak) == (1, 0.5, 1, 20, 0)
    assert np.isnan(c.up_mean_interval) and np.isnan(c.up_gap_ratio)
    assert tiny.loc[(2, 2)].up_streak == 1 and tiny.loc[(2, 1)].up_days_since == 7


def test_customer_and_product_features_match_the_hand_count(tiny) -> None:
    one = tiny.loc[(1, 1)]
    assert (one.user_orders, one.user_mean_gap, one.user_mean_basket, one.user_distinct_products) == (3, 15, 2, 3)
    assert one.user_reorder_ratio == 0.5  # 6 lines, 3 of them first purchases
    # A: 4 lines from 2 buyers, one of whom bought it again
    assert (one.product_buyers, one.product_reorder_rate, one.product_repeat_buyers) == (2, 0.5, 0.5)
    assert tiny.loc[(2, 1)].user_mean_gap == 7
    assert list(tiny.columns[-len(FEATURES) :]) == FEATURES


def test_every_bought_product_is_a_candidate_and_labels_mark_the_next_order(tiny) -> None:
    candidates = reorder_candidates(TINY)
    pairs = list(zip(candidates["user_id"], candidates["product_id"], strict=True))
    assert pairs == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    labels = label_candidates(candidates, pd.DataFrame({"user_id": [1, 1, 2], "product_id": [3, 9, 2]}))
    assert labels.tolist() == [0, 0, 1, 0, 1]


def test_one_order_one_purchase_and_the_same_basket_every_time() -> None:
    frame = reorder_candidates(
        history([(5, 1, 0, [7]), (6, 1, 0, [1, 2]), (6, 2, 7, [1, 2]), (6, 3, 14, [1, 2]), (6, 4, 21, [1, 2])])
    ).set_index(["user_id", "product_id"])
    single = frame.loc[(5, 7)]
    assert single.user_orders == 1 and np.isnan(single.user_mean_gap) and np.isnan(single.up_mean_interval)
    assert single.user_reorder_ratio == 0 and single.up_streak == 1
    same = frame.loc[(6, 1)]
    assert (same.up_times, same.up_share, same.up_streak, same.up_mean_interval) == (4, 1, 4, 7)
    assert same.user_reorder_ratio == 0.75
    assert np.isfinite(frame[FEATURES].drop(columns=["user_mean_gap", "up_mean_interval", "up_gap_ratio"])).all().all()


def test_an_empty_history_has_no_candidates() -> None:
    empty = reorder_candidates(History(history([]).lines))
    assert len(empty) == 0 and set(FEATURES) <= set(empty.columns)


def test_product_statistics_of_several_subsets_match_the_hand_count() -> None:
    # group 0: the last orders (user 1's third, user 2's second); 1: the others
    last = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    earlier, everything = product_stats_by_group(TINY, 1 - last, [{1}, {0, 1}])
    # without the last orders: A 3 lines from 2 buyers (user 1 twice), B and C one line each
    assert earlier.buyers[1:4].tolist() == [2, 1, 1]
    assert earlier.reorder_rate[1:4].tolist() == pytest.approx([1 / 3, 0, 0])
    assert earlier.repeat_buyers[1:4].tolist() == [0.5, 0, 0]
    # everything: A 4 lines and B 3 lines from 2 buyers each, one of whom bought it again
    assert everything.buyers[1:4].tolist() == [2, 2, 1]
    assert everything.reorder_rate[1:4].tolist() == pytest.approx([0.5, 1 / 3, 0])
    assert everything.repeat_buyers[1:4].tolist() == [0.5, 0.5, 0]
    assert np.isnan(earlier.of("reorder_rate", np.array([0, 99]))).all()  # never counted


def test_the_splits_statistics_from_one_sort_equal_one_count_per_split() -> None:
    # user 3 has one order: the evaluation keeps it (nothing to hold out), the fit cannot use it
    lines = history(
        [(1, 1, 0, [1, 2]), (1, 2, 10, [1, 3]), (2, 1, 5, [1]), (1, 3, 30, [2, 1]), (2, 2, 12, [2, 4]), (3, 1, 3, [4])]
    )
    from_last, orders = orders_from_last(lines.lines)
    held = (from_last == 0) & (orders >= 2)
    for skip in (1, 2):
        expected = [product_stats(lines, keep=from_last > skip), product_stats(lines, keep=~held), product_stats(lines)]
        for got, want in zip(product_stats_of_splits(lines, (from_last, orders), skip), expected, strict=True):
            for name in ("buyers", "reorder_rate", "repeat_buyers"):
                np.testing.assert_array_equal(got.of(name, np.arange(6)), want.of(name, np.arange(6)))
