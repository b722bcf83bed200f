"""Buy again on a generated feed: fitted on the data, leak-free, deterministic, explained, judged by F1."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from basket_insights import buy_again
from basket_insights.buy_again import BUY_AGAIN_COLUMNS, fit_buy_again, predict_buy_again
from basket_insights.features import History
from basket_insights.reorder_evaluation import METHODS, evaluate_buy_again
from basket_insights.reorder_features import reorder_candidates
from basket_insights.reorder_model import ReorderSettings, cheapest_within_noise
from basket_insights.splits import split_last_orders

SETTINGS = ReorderSettings(train_users=2_000, importance_rows=5_000)


def reorder_history(feed) -> History:
    orders = feed.orders[["order_id", "user_id", "order_number", "order_date"]]
    lines = feed.lines.merge(orders, on="order_id")
    lines["day"] = lines.pop("order_date").to_numpy("datetime64[D]").astype(np.int64)
    columns = ["user_id", "order_id", "order_number", "product_id", "add_to_cart_order", "day"]
    return History(lines[columns].astype(np.int64))


@pytest.fixture(scope="module")
def world(taste_world):
    history = reorder_history(taste_world.feed)
    train, _, _ = split_last_orders(history)
    return history, train, fit_buy_again(train, SETTINGS), taste_world.names


def test_every_customer_with_two_orders_gets_a_set_of_their_own_products_with_reasons(world) -> None:
    history, _, model, names = world
    as_of = int(history.lines["day"].max())
    out = predict_buy_again(model, history, names, as_of, SETTINGS)
    assert list(out.columns) == BUY_AGAIN_COLUMNS
    orders = history.lines.groupby("user_id")["order_number"].nunique()
    assert set(out["user_id"]) == set(orders[orders >= 2].index)
    nothing = out[out["rank"] == 0]
    assert len(nothing) == out["user_id"].nunique() and nothing["product_id"].isna().all()
    assert nothing["probability"].between(0, 1).all() and nothing["product_name"].eq("None").all()
    products = out[out["rank"] > 0]
    bought = set(zip(history.lines["user_id"], history.lines["product_id"], strict=True))
    assert all((u, p) in bought for u, p in zip(products["user_id"], products["product_id"], strict=True))
    ranks = products.groupby("user_id")["rank"].apply(list)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks)
    assert products.groupby("user_id")["probability"].apply(lambda p: p.is_monotonic_decreasing).all()
    # a customer names at least one product or None: never an empty set
    named = products.groupby("user_id").size().reindex(nothing["user_id"], fill_value=0).to_numpy()
    assert ((named > 0) | nothing["chosen"].to_numpy()).all()
    assert products["reason"].str.match(r"you (buy|bought) this .+; last bought (today|yesterday|\d+ days ago)").all()


def test_fitting_is_deterministic_and_chooses_its_setting_on_validation(world) -> None:
    _, train, model, _ = world
    again = fit_buy_again(train, SETTINGS)
    assert again.params == model.params
    candidates = reorder_candidates(train).head(5_000)
    np.testing.assert_array_equal(again.probability(candidates), model.probability(candidates))
    assert len(model.validation) == len(SETTINGS.grid)
    kept = {k: model.params[k] for k in model.validation[0]}
    assert kept in model.validation
    best = max(model.validation, key=lambda r: r["validation_f1"])
    if kept != best:  # only a cheaper model may stand in for the best
        assert kept["trees"] * np.log2(kept["max_leaf_nodes"]) < best["trees"] * np.log2(best["max_leaf_nodes"])
    assert {r["feature"] for r in model.importances} == set(model.features)
    assert pickle.loads(pickle.dumps(model)).params == model.params  # what predict_reorders stores


def test_the_model_beats_both_baselines_on_the_held_out_orders(world) -> None:
    history, _, model, _ = world
    table = evaluate_buy_again(history, model, SETTINGS).set_index("method")
    assert list(table.index) == list(METHODS)
    assert table.loc["buy_again_model", "mean_f1"] > table.loc[["frequency_threshold", "last_order"], "mean_f1"].max()
    assert (table["f1_low"] <= table["mean_f1"]).all() and (table["mean_f1"] <= table["f1_high"]).all()
    assert 0.1 <= table.loc["frequency_threshold", "threshold"] <= 0.5
    assert table["users_evaluated"].nunique() == 1


def test_the_last_order_baseline_matches_a_hand_count() -> None:
    # customer 1 orders A B, then A C, then A D (held out): the last order again names {A, C}, truth {A}
    # customer 2 orders B, then E (held out): names {B}, truth {None}
    rows = [(1, 1, 1, 1, 1, 0), (1, 1, 1, 2, 2, 0), (1, 2, 2, 1, 1, 7), (1, 2, 2, 3, 2, 7), (1, 3, 3, 1, 1, 14)]
    rows += [(1, 3, 3, 4, 2, 14), (2, 4, 1, 2, 1, 3), (2, 5, 2, 5, 1, 9)]
    columns = ["user_id", "order_id", "order_number", "product_id", "add_to_cart_order", "day"]
    history = History(pd.DataFrame(rows, columns=columns))
    model = fit_buy_again(split_last_orders(history)[0], SETTINGS)  # too little to learn: the fallback
    assert model.params == {"fallback": "share_of_orders"}
    table = evaluate_buy_again(history, model, SETTINGS).set_index("method")
    assert table.loc["last_order", "mean_f1"] == pytest.approx((2 * 1 / 3 + 0) / 2)


def test_training_never_sees_the_held_out_orders(world, monkeypatch) -> None:
    history, _, _, _ = world
    planted = int(history.lines["product_id"].max()) + 1
    lines = history.lines
    last = lines.groupby("user_id")["order_number"].transform("max") == lines["order_number"]
    first_line = last & ~lines.duplicated(["order_id"])
    extra = lines[first_line].assign(product_id=planted, add_to_cart_order=99)
    planted_history = History(pd.concat([lines, extra], ignore_index=True))
    seen = {}

    def spy(candidates, labels, settings):
        seen["products"] = set(candidates["product_id"])
        positive = labels == 1
        seen["positives"] = set(zip(candidates["user_id"][positive], candidates["product_id"][positive], strict=True))
        return fit(candidates, labels, settings)

    fit = buy_again.fit_reorder_model
    monkeypatch.setattr(buy_again, "fit_reorder_model", spy)
    fit_buy_again(planted_history, SETTINGS, skip=1)  # as predict_reorders fits
    assert seen["products"] and planted not in seen["products"]
    # the labels are the orders before the held-out ones: what each customer bought again there
    numbers = lines.groupby("user_id")["order_number"].transform("max") - 1 == lines["order_number"]
    before = set(zip(lines["user_id"][numbers], lines["product_id"][numbers], strict=True))
    assert seen["positives"] and seen["positives"] <= before
    # the held-out orders do count when serving: there the planted product is every customer's candidate
    serving = reorder_candidates(planted_history)
    assert serving.loc[serving["product_id"] == planted, "user_id"].nunique() == lines["user_id"].nunique()


def test_a_costlier_setting_is_kept_only_for_a_gain_beyond_noise() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400)
    # a setting 0.001 better on average, with per-customer noise far larger: the cheap one stays
    noisy = base + 0.001 + rng.normal(0, 0.05, 400)
    assert cheapest_within_noise([base, noisy], cost=[1.0, 5.0]) == 0
    # a setting clearly better on the same customers: worth its cost
    better = base + 0.05 + rng.normal(0, 0.01, 400)
    assert cheapest_within_noise([base, better], cost=[1.0, 5.0]) == 1
    # the best is also the cheapest: nothing to weigh
    assert cheapest_within_noise([better, base], cost=[1.0, 5.0]) == 0


def test_customers_with_two_orders_are_counted_by_distinct_orders() -> None:
    users = np.array([1, 1, 1, 2, 2, 3, 3, 3])
    orders = np.array([10, 10, 11, 12, 12, 13, 14, 15])  # 1: two orders; 2: one order of two lines; 3: three
    np.testing.assert_array_equal(buy_again.customers_with_orders(users, orders, 2), [1, 3])
    assert len(buy_again.customers_with_orders(np.zeros(0, np.int64), np.zeros(0, np.int64), 2)) == 0


def test_reasons_read_naturally() -> None:
    rows = pd.DataFrame(
        {
            "up_times": [8.0, 1.0, 5.0, 3.0],
            "user_orders": [10.0, 4.0, 5.0, 9.0],
            "up_mean_interval": [9.4, np.nan, 1.2, 0.0],
            "last_day": [100, 111, 112, 90],
        }
    )
    assert list(buy_again.reasons(rows, as_of_day=112)) == [
        "you buy this in 8 of your 10 orders, about every 9 days; last bought 12 days ago",
        "you bought this once, in 1 of your 4 orders; last bought yesterday",
        "you bought this in every one of your 5 orders, about every day; last bought today",
        "you buy this in 3 of your 9 orders, about every day; last bought 22 days ago",
    ]


def test_scoring_in_small_blocks_and_threads_changes_nothing(world) -> None:
    history, _, model, names = world
    as_of = int(history.lines["day"].max())
    one = predict_buy_again(model, history, names, as_of, SETTINGS)
    blocks = predict_buy_again(model, history, names, as_of, replace(SETTINGS, block_users=97, threads=3))
    pd.testing.assert_frame_equal(one, blocks)
