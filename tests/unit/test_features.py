"""Per-user features on a small hand-checked history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights.features import FEATURE_COLUMNS, compute_user_features


def _history() -> tuple[pd.DataFrame, pd.DataFrame]:
    orders = pd.DataFrame(
        {
            "order_id": [1, 2, 3, 4],
            "user_id": [10, 10, 10, 20],
            "order_number": [1, 2, 3, 1],
            "order_dow": [0, 3, 1, 5],
            "order_hour_of_day": [8, 10, 12, 20],
            "days_since_prior_order": [np.nan, 10.0, 20.0, np.nan],
            "order_date": pd.to_datetime(["2026-01-01", "2026-01-11", "2026-01-31", "2026-01-30"]),
        }
    )
    lines = pd.DataFrame(
        {
            "order_id": [1, 1, 2, 2, 2, 3, 4, 99],
            "product_id": [5, 6, 5, 6, 7, 5, 5, 5],
            "reordered": [0, 0, 1, 1, 0, 1, 0, 0],
        }
    )
    return orders, lines


def test_features_of_a_regular_and_a_one_order_user() -> None:
    orders, lines = _history()
    f = compute_user_features(orders, lines, "2026-02-01").set_index("user_id")
    assert list(f.columns[2:]) == FEATURE_COLUMNS
    u = f.loc[10]
    assert u.total_orders == 3 and u.days_since_last_order == 1 and u.tenure_days == 32
    assert u.orders_per_30_days == pytest.approx(3 * 30 / 32)
    assert u.mean_days_between == 15 and u.std_days_between == pytest.approx(5)
    assert u.total_items == 6 and u.mean_basket_size == 2 and u.distinct_products == 3
    assert u.reorder_ratio == pytest.approx(3 / 6)
    assert u.weekend_share == pytest.approx(2 / 3) and u.mean_order_hour == 10
    single = f.loc[20]
    assert single.total_orders == 1 and np.isnan(single.mean_days_between) and np.isnan(single.std_days_between)
    assert single.orders_per_30_days == 1.0  # tenure floored at 30 days
    assert single.mean_basket_size == 1


def test_a_day_with_one_user_and_an_empty_history() -> None:
    orders, lines = _history()
    one = compute_user_features(orders[orders.user_id == 20], lines, "2026-02-01")
    assert one["user_id"].tolist() == [20]
    empty = compute_user_features(orders.iloc[:0], lines.iloc[:0], "2026-02-01")
    assert empty.empty and "reorder_ratio" in empty.columns


def test_user_with_orders_but_no_lines() -> None:
    orders, lines = _history()
    f = compute_user_features(orders, lines[lines.order_id != 4], "2026-02-01").set_index("user_id")
    assert f.loc[20, "total_items"] == 0 and np.isnan(f.loc[20, "reorder_ratio"])
