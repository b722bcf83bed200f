"""Recommendations: exclusions, sources and reasons, shards; planted bundles recovered; beats popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights.features import History, compute_user_features
from basket_insights.recommend import RecommendSettings, evaluate, holdout, recommend, score
from basket_insights.rules import Baskets, RuleSettings, mine
from basket_insights.segments import segment_users
from basket_insights.synth import generate_feed, synthetic_catalog

END = "2026-06-30"


@pytest.fixture(scope="module")
def world():
    catalog = synthetic_catalog(seed=2)
    feed = generate_feed(catalog, users=3000, days=120, end_date=END, seed=8, progress=False)
    orders = feed.orders
    lines = feed.lines.merge(orders[["order_id", "user_id", "order_number"]], on="order_id")
    history = History(lines[["user_id", "order_id", "order_number", "product_id"]].astype(np.int64))
    segments = segment_users(compute_user_features(orders, feed.lines, END)).assignments
    names = catalog.products.set_index("product_id")["product_name"]
    return feed, history, segments, names


def _rules(history: History, settings: RuleSettings) -> pd.DataFrame:
    baskets = Baskets.from_pairs(history.lines["order_id"].to_numpy(), history.lines["product_id"].to_numpy())
    return mine(baskets, settings)[1]


def test_rules_recover_the_planted_bundles(world) -> None:
    feed, history, _, _ = world
    settings = RuleSettings()
    rules = _rules(history, settings)
    found = {
        (a[0], c[0]) for a, c in zip(rules["antecedents"], rules["consequents"], strict=True) if len(a) == len(c) == 1
    }
    baskets = history.lines.groupby("order_id")["product_id"].apply(frozenset)
    n = len(baskets)
    above = [
        (a, c)
        for a, c in zip(feed.bundles["antecedent"], feed.bundles["consequent"], strict=True)
        if baskets.map(lambda s, a=a, c=c: a in s and c in s).sum() >= max(settings.min_support * n, settings.min_count)
    ]
    assert len(above) >= 10
    recall = np.mean([pair in found for pair in above])
    assert recall >= 0.9, recall  # measured 1.0 (docs/rules.md)


def test_recommendations_exclude_what_was_bought_and_explain_themselves(world) -> None:
    _, history, segments, names = world
    rules = _rules(history, RuleSettings())
    users = np.unique(history.lines["user_id"])[:300]
    recs = recommend(history, rules, segments, names, RecommendSettings(k=10), users=users)
    assert (recs.groupby("user_id").size() == 10).all()
    bought = set(zip(history.lines["user_id"], history.lines["product_id"], strict=True))
    assert not any((u, p) in bought for u, p in zip(recs["user_id"], recs["product_id"], strict=True))
    assert set(recs["source"]) == {"rule", "segment_popular"}
    rule_reason = recs.loc[recs["source"] == "rule", "reason"].iloc[0]
    assert rule_reason.startswith("bought ") and "→" in rule_reason and "confidence" in rule_reason
    assert recs.loc[recs["source"] == "segment_popular", "reason"].str.startswith("popular with ").all()
    assert (recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert recs.groupby("user_id")["rank"].apply(lambda r: r.tolist() == list(range(1, 11))).all()


def test_shards_together_equal_one_run(world) -> None:
    _, history, segments, names = world
    rules = _rules(history, RuleSettings())
    users = np.unique(history.lines["user_id"])[:200]
    whole = recommend(history, rules, segments, names, users=users)
    parts = pd.concat(
        [recommend(history, rules, segments, names, users=users[users % 3 == s]) for s in range(3)]
    ).sort_values(["user_id", "rank"])
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), parts.reset_index(drop=True))


def test_recommender_beats_global_popularity_on_the_hold_out(world) -> None:
    _, history, segments, names = world
    table = evaluate(history, segments, names, RuleSettings()).set_index("method")
    assert table.loc["recommender", "hit_rate"] > table.loc["global_popularity", "hit_rate"], table
    assert table.loc["recommender", "users_evaluated"] > 1000
    assert table.loc["recommender", "coverage"] > table.loc["global_popularity", "coverage"]


def test_evaluate_lets_the_full_history_go_before_it_recommends(world, monkeypatch) -> None:
    """At full scale the history is ~1 GB: evaluate must not hold it while the three recommenders
    run, when its caller handed over the only reference (as run_evaluate does)."""
    import gc
    import weakref

    from basket_insights import recommend as module

    _, history, segments, names = world
    handed_over = [History(history.lines.copy())]
    full_lines = weakref.ref(handed_over[0].lines)
    alive_when_indexing = []
    index_history = module._index_history

    def spy(train: History, users: np.ndarray):
        gc.collect()
        alive_when_indexing.append(full_lines() is not None)
        return index_history(train, users)

    monkeypatch.setattr(module, "_index_history", spy)
    table = evaluate(handed_over.pop(), segments, names, RuleSettings())
    assert alive_when_indexing == [False]
    assert len(table) == 3


def test_holdout_and_scores_by_hand() -> None:
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
    recs = pd.DataFrame({"user_id": [1, 1], "rank": [1, 2], "product_id": [8, 7]})
    metrics = score(recs, truth, k=2, n_products=10)
    assert metrics == {"users_evaluated": 1, "hit_rate": 1.0, "precision": 0.5, "recall": 1.0, "coverage": 0.2}


def test_holdout_matches_the_group_by_definition(world) -> None:
    """The per-order hold-out holds out exactly what per-user group-bys over the lines say, with the
    lines shuffled (no order of users or orders is assumed) and users with a single order kept whole."""
    _, history, _, _ = world
    lines = history.lines.sample(frac=1.0, random_state=3).reset_index(drop=True)
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
