"""The itemset engine is exact: property-based comparison with mlxtend's apriori; rules use mlxtend's metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlxtend.frequent_patterns import apriori

from basket_insights.rules import Baskets, RuleSettings, association_rules, frequent_itemsets, synthetic_workload


def mlxtend_itemsets(baskets: list[list[int]], min_support: float, max_len: int) -> dict[frozenset, float]:
    items = sorted({i for b in baskets for i in b})
    if not items:
        return {}
    onehot = pd.DataFrame([[i in set(b) for i in items] for b in baskets], columns=items)
    found = apriori(onehot, min_support=min_support, max_len=max_len, use_colnames=True)
    return {frozenset(s): round(float(v), 12) for s, v in zip(found["itemsets"], found["support"], strict=True)}


def ours(baskets: list[list[int]], min_support: float, max_len: int) -> dict[frozenset, float]:
    found = frequent_itemsets(Baskets.from_lists(baskets), min_support, max_len)
    return {s: round(float(v), 12) for s, v in zip(found["itemsets"], found["support"], strict=True)}


basket_lists = st.lists(st.lists(st.integers(min_value=0, max_value=14), max_size=9), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    baskets=basket_lists,
    min_support=st.sampled_from([0.01, 0.05, 0.1, 0.25, 0.5, 1.0]),
    max_len=st.integers(min_value=1, max_value=3),
)
def test_itemsets_equal_mlxtend_apriori(baskets: list[list[int]], min_support: float, max_len: int) -> None:
    """Random basket sets, including empty baskets, one-item baskets and repeated items."""
    assert ours(baskets, min_support, max_len) == mlxtend_itemsets(baskets, min_support, max_len)


@pytest.mark.parametrize(
    ("baskets", "min_support"),
    [
        ([[]], 0.5),  # a single empty basket
        ([[3]], 1.0),  # a single one-item basket
        ([[1, 2, 3]], 1.0),  # a single basket: everything is frequent
        ([[1, 1, 2, 2, 2], [2, 1]], 1.0),  # repeats count once
        ([[1], [2], [3]], 0.5),  # min support above every item
        ([[], [], [1, 2], [1, 2]], 0.5),  # empty baskets count in the total
    ],
)
def test_edge_cases_equal_mlxtend(baskets: list[list[int]], min_support: float) -> None:
    assert ours(baskets, min_support, 3) == mlxtend_itemsets(baskets, min_support, 3)


def test_larger_random_workload_equals_mlxtend() -> None:
    rng = np.random.default_rng(4)
    baskets = [list(rng.choice(40, size=rng.integers(0, 15), p=np.arange(40, 0, -1) / 820)) for _ in range(600)]
    for min_support in (0.02, 0.05):
        assert ours(baskets, min_support, 3) == mlxtend_itemsets(baskets, min_support, 3)


def test_min_count_and_input_checks() -> None:
    baskets = Baskets.from_lists([[1, 2]] * 3 + [[3]] * 20)
    found = frequent_itemsets(baskets, 0.01, 2, min_count=5)
    assert {tuple(sorted(s)) for s in found["itemsets"]} == {(3,)}
    with pytest.raises(ValueError, match="min_support"):
        frequent_itemsets(baskets, 0.0)
    with pytest.raises(ValueError, match="max_len"):
        frequent_itemsets(baskets, 0.1, max_len=4)
    assert frequent_itemsets(Baskets.from_lists([]), 0.1).empty


def test_from_pairs_groups_and_sorts() -> None:
    baskets = Baskets.from_pairs(np.array([9, 5, 9, 5, 9]), np.array([3, 1, 1, 2, 1]))
    assert baskets.indptr.tolist() == [0, 2, 5]  # basket 5 first, then basket 9
    assert sorted(baskets.items[:2].tolist()) == [1, 2] and sorted(baskets.items[2:].tolist()) == [1, 1, 3]


@pytest.mark.parametrize("layout", ["grouped", "sorted", "interleaved", "empty"])
def test_from_pairs_keeps_each_baskets_line_order_whatever_the_input_order(layout: str) -> None:
    """Lines grouped by basket (as bronze has them) take the fast path; it must equal a stable sort."""
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 12, 500)
    basket_ids = np.repeat(rng.permutation(np.arange(10, 10 + 3 * len(sizes), 3)), sizes)
    if layout == "sorted":
        basket_ids = np.sort(basket_ids)
    elif layout == "interleaved":
        basket_ids = rng.permutation(basket_ids)
    elif layout == "empty":
        basket_ids = basket_ids[:0]
    item_ids = np.arange(len(basket_ids)) * 7 % 101  # line order is visible in the items
    baskets = Baskets.from_pairs(basket_ids, item_ids)
    order = np.argsort(basket_ids, kind="stable")
    assert baskets.items.tolist() == item_ids[order].tolist()
    assert baskets.indptr.tolist() == [0, *np.cumsum(np.unique(basket_ids, return_counts=True)[1]).tolist()]


def test_rules_have_mlxtend_metrics_and_filters() -> None:
    baskets = Baskets.from_lists([[1, 2]] * 30 + [[1]] * 10 + [[2]] * 10 + [[3]] * 50)
    itemsets = frequent_itemsets(baskets, 0.05, 2)
    rules = association_rules(itemsets, baskets.n_baskets, RuleSettings(min_confidence=0.5, min_lift=1.0))
    rule = rules[rules["antecedents"] == frozenset({1})].iloc[0]
    assert rule["consequents"] == frozenset({2})
    assert rule["support"] == pytest.approx(0.3) and rule["confidence"] == pytest.approx(0.75)
    assert rule["lift"] == pytest.approx(0.75 / 0.4)
    assert association_rules(itemsets, baskets.n_baskets, RuleSettings(min_lift=2.0)).empty


def test_planted_pairs_are_found_in_a_zipf_workload() -> None:
    workload = synthetic_workload(n_baskets=20_000, n_items=2_000, seed=1)
    found = frequent_itemsets(workload, 0.002, 3)
    assert (found["length"] == 1).sum() > 50 and (found["length"] == 2).sum() > 0


def test_a_day_without_rules_writes_typed_empty_tables(lake) -> None:
    from basket_insights import ingest
    from basket_insights.rules import RULE_SCHEMA, RuleSettings, run_mine_rules
    from basket_insights.synth import generate

    generate(lake, users=20, days=2, end_date="2026-03-02", seed=3)
    for step in (ingest.ingest_catalog, ingest.ingest_orders, ingest.ingest_order_products):
        step(lake, "2026-03-02", max_bad_fraction=0.05)
    out = run_mine_rules(lake, "2026-03-02", RuleSettings(min_support=0.9, min_count=10**6))
    assert out["rules"] == 0
    assert lake.read_table("gold", "association_rules", dates=["2026-03-02"]).schema.equals(RULE_SCHEMA)
