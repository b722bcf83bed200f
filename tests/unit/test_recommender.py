"""The recommender on a generated feed with personal taste: fitted on its data, explained, nothing bought twice."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from basket_insights.features import History
from basket_insights.recommender import (
    RecommenderSettings,
    fit_recommender,
    recommend_customers,
    serving_evidence,
)


@pytest.fixture(scope="module")
def fitted(taste_world):
    w = taste_world
    return fit_recommender(w.history, w.segments, w.mine_rules, w.groups, w.settings)


@pytest.fixture(scope="module")
def evidence(taste_world, fitted):
    w = taste_world
    return serving_evidence(w.history, w.segments, w.mine_rules(w.history), w.groups, fitted, w.settings)


def test_every_customer_gets_k_new_products_each_with_a_source_and_a_reason(taste_world, fitted, evidence) -> None:
    w = taste_world
    users = np.unique(w.history.lines["user_id"])[:400]
    recs = recommend_customers(evidence, fitted, users, w.names, w.settings)
    assert (recs.groupby("user_id").size() == w.settings.k).all() and recs["user_id"].nunique() == len(users)
    bought = set(zip(w.history.lines["user_id"], w.history.lines["product_id"], strict=True))
    assert not any((u, p) in bought for u, p in zip(recs["user_id"], recs["product_id"], strict=True))
    assert recs["reason"].str.len().gt(10).all()
    assert set(recs["source"]) <= {"rule", "item_model", "cluster", "segment_popular", "popular"}
    assert recs["source"].nunique() >= 3, recs["source"].value_counts()
    item = recs[recs["source"] == "item_model"]["reason"]
    assert item.str.contains("customers who buy .* buy this", regex=True).mean() > 0.5
    rules = recs[recs["source"] == "rule"]["reason"]
    assert rules.str.match(r"bought .+ → .+ \(confidence \d\.\d\d, lift \d+\.\d\)").all()
    assert recs.groupby("user_id")["rank"].apply(lambda r: r.tolist() == list(range(1, 11))).all()
    assert recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_shards_together_equal_one_run(taste_world, fitted, evidence) -> None:
    w = taste_world
    users = np.unique(w.history.lines["user_id"])[:300]
    whole = recommend_customers(evidence, fitted, users, w.names, w.settings)
    parts = pd.concat(
        [recommend_customers(evidence, fitted, users[users % 3 == s], w.names, w.settings) for s in range(3)]
    ).sort_values(["user_id", "rank"])
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), parts.reset_index(drop=True))


def test_fitting_is_deterministic_and_learns_its_choices_from_the_data(taste_world, fitted) -> None:
    w = taste_world
    again = fit_recommender(w.history, w.segments, w.mine_rules, w.groups, w.settings)
    assert again.item_l2 == fitted.item_l2 and again.ranker.params == fitted.ranker.params
    x = pd.DataFrame(np.random.default_rng(1).random((50, len(fitted.ranker.features))), columns=fitted.ranker.features)
    np.testing.assert_array_equal(again.ranker.score(x), fitted.ranker.score(x))
    # λ and the ranker's setting are the best of their grids on validation, not constants
    best_l2 = max(fitted.l2_validation, key=lambda r: r["validation_recall"])["l2"]
    assert fitted.item_l2 == best_l2 and len(fitted.l2_validation) > 3
    assert fitted.ranker.params == max(fitted.ranker.validation, key=lambda r: r["validation_recall"])
    assert pickle.loads(pickle.dumps(fitted)).item_l2 == fitted.item_l2  # what fit_recommender stores


def _lines(rows: list[tuple[int, int, int, int]]) -> History:
    return History(pd.DataFrame(rows, columns=["user_id", "order_id", "order_number", "product_id"]))


def test_a_history_too_short_to_learn_from_falls_back_to_popularity(taste_world) -> None:
    w = taste_world
    one_order_each = _lines([(1, 1, 1, 5), (1, 1, 1, 6), (2, 2, 1, 6), (3, 3, 1, 7)])
    settings = RecommenderSettings(k=2, item_products=100)
    fitted = fit_recommender(one_order_each, None, w.mine_rules, w.groups, settings)
    assert fitted.ranker.params == {"fallback": "popularity_by_buyers"}
    ev = serving_evidence(one_order_each, None, None, w.groups, fitted, settings)
    recs = recommend_customers(ev, fitted, np.array([1, 2, 3, 99]), w.names, settings)
    assert set(recs["user_id"]) == {1, 2, 3}  # 99 has no history
    assert recs[recs["user_id"] == 1]["product_id"].tolist() == [7]  # all the catalogue they did not buy
    assert recs[recs["user_id"] == 3]["product_id"].tolist() == [6, 5]  # 6 has two buyers
    assert recs["source"].eq("popular").all() and recs["reason"].str.startswith("bought by ").all()
