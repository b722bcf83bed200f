"""Replay of the real Kaggle files (users 1-64, whole users) into daily drops."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from basket_insights.lake import Lake
from basket_insights.replay import derive_order_dates, replay

END = "2026-06-30"


def _delivered(lake: Lake, table: str) -> pd.DataFrame:
    frames = []
    for ds in lake.landing_dates(table):
        frame = pd.read_csv(lake.landing_file(table, ds).path)
        frame["ds"] = ds
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_replay_dates_agree_with_days_since_prior_order(kaggle_sample: Path, lake: Lake) -> None:
    summary = replay(kaggle_sample, lake, end_date=END)
    assert summary["orders"] == 1000 and summary["users"] == 64
    assert summary["order_lines"] == 8538 + 438
    orders = _delivered(lake, "orders").sort_values(["user_id", "order_number"])
    assert len(orders) == 1000
    dates = pd.to_datetime(orders["ds"])
    gaps = dates.groupby(orders["user_id"]).diff().dt.days
    later = orders["order_number"] > 1
    assert (gaps[later].to_numpy() == orders.loc[later, "days_since_prior_order"].to_numpy()).all()
    last = dates.groupby(orders["user_id"]).max()
    assert last.max() <= pd.Timestamp(END) and last.min() >= pd.Timestamp(END) - pd.Timedelta(days=29)
    assert last.nunique() > 10  # spread over the final 30 days
    user1 = orders[orders["user_id"] == 1]
    assert user1["order_id"].iloc[0] == 2539329 and user1["order_id"].iloc[-1] == 1187899


def test_replay_delivers_every_line_with_its_order_and_every_day(kaggle_sample: Path, lake: Lake) -> None:
    replay(kaggle_sample, lake, end_date=END)
    orders = _delivered(lake, "orders")
    lines = _delivered(lake, "order_products")
    merged = lines.merge(orders[["order_id", "ds"]], on="order_id", suffixes=("", "_order"))
    assert len(merged) == len(lines) == 8976
    assert (merged["ds"] == merged["ds_order"]).all()
    days = lake.landing_dates("orders")
    expected = pd.date_range(days[0], END).strftime("%Y-%m-%d").tolist()
    assert days == expected and lake.landing_dates("order_products") == expected
    assert lake.landing_dates("products") == [days[0]]
    first = pd.read_csv(lake.landing_file("order_products", days[0]).path)
    assert list(first.columns) == ["order_id", "product_id", "add_to_cart_order", "reordered"]
    # test orders (no products) are delivered as orders without lines
    assert (orders["eval_set"] == "test").sum() == 27


def test_derive_order_dates_is_deterministic_and_exact() -> None:
    orders = pd.DataFrame(
        {
            "user_id": [7, 7, 7, 8],
            "order_number": [2, 1, 3, 1],
            "days_since_prior_order": [5.0, None, 30.0, None],
        }
    )
    dates = derive_order_dates(orders, "2026-01-31")
    assert (dates.iloc[2] - dates.iloc[0]).days == 30 and (dates.iloc[0] - dates.iloc[1]).days == 5
    assert dates.equals(derive_order_dates(orders, "2026-01-31"))
    assert dates.max() <= pd.Timestamp("2026-01-31")


def test_replay_needs_the_orders_file(tmp_path: Path, lake: Lake) -> None:
    with pytest.raises(FileNotFoundError, match=r"orders\.csv"):
        replay(tmp_path, lake, end_date=END)
