"""The temporal split: each customer's last order against the history before it."""

from __future__ import annotations

import pandas as pd

from basket_insights.features import History
from basket_insights.splits import holdout, split_last_orders
from basket_insights.synth import generate_feed, synthetic_catalog


def test_holdout_by_hand() -> None:
    lines = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2],
            "order_id": [10, 10, 11, 11, 20],
            "order_number": [1, 1, 2, 2, 1],
            "product_id": [5, 6, 6, 7, 5],
        }
    )
    train, truth = holdout(History(lines))
    assert train.lines["order_id"].tolist() == [10, 10, 20]  # user 2 has one order: nothing held out
    assert truth.to_dict("records") == [{"user_id": 1, "product_id": 7}]  # 6 was bought before
    _, held, _ = split_last_orders(History(lines))
    assert held["order_id"].tolist() == [11, 11]


def test_holdout_matches_the_group_by_definition() -> None:
    """The per-order hold-out holds out exactly what per-user group-bys over the lines say, with the
    lines shuffled (no order of users or orders is assumed) and users with a single order kept whole."""
    feed = generate_feed(synthetic_catalog(seed=2), users=500, days=90, end_date="2026-06-30", seed=8, progress=False)
    lines = feed.lines.merge(feed.orders[["order_id", "user_id", "order_number"]], on="order_id")
    lines = lines[["user_id", "order_id", "order_number", "product_id"]].sample(frac=1.0, random_state=3)
    lines = lines.reset_index(drop=True)
    first_order = lines[lines["order_id"] == lines["order_id"].iloc[0]]
    single = first_order.assign(user_id=10**6, order_id=lines["order_id"].max() + 1, order_number=1)
    lines = pd.concat([lines, single], ignore_index=True)

    by_user = lines.groupby("user_id")["order_number"]
    last, first = by_user.transform("max"), by_user.transform("min")
    held = (lines["order_number"] == last) & (last > first)
    train, test = lines[~held], lines[held]
    seen = set(zip(train["user_id"], train["product_id"], strict=True))
    expected_truth = {k for k in zip(test["user_id"], test["product_id"], strict=True) if k not in seen}

    got_train, got_truth = holdout(History(lines))
    pd.testing.assert_frame_equal(got_train.lines, train.reset_index(drop=True))
    assert set(zip(got_truth["user_id"], got_truth["product_id"], strict=True)) == expected_truth
    assert len(got_truth) == len(expected_truth)
    assert 10**6 in set(got_train.lines["user_id"])
