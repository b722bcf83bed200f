"""Rule candidates: a rule fires only on recent purchases, never for a product already bought."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights import rule_candidates
from basket_insights.features import History
from basket_insights.user_products import user_products

RULES = pd.DataFrame(
    {
        "antecedents": [[1], [1, 2], [3], [5]],
        "consequents": [[9], [9], [8], [1]],
        "confidence": [0.5, 0.4, 0.3, 0.9],
        "lift": [2.0, 3.0, 1.5, 4.0],
        "antecedent_support": [0.1, 0.05, 0.2, 0.1],
    }
)


def _up(recent_orders: int = 1):
    lines = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2],
            "order_id": [1, 2, 2, 3, 4],
            "order_number": [1, 2, 2, 1, 2],
            "product_id": [3, 1, 2, 1, 5],
        }
    )
    return user_products(History(lines), recent_orders=recent_orders)


def test_rules_fire_on_the_last_orders_and_combine_as_a_noisy_or() -> None:
    up = _up(recent_orders=1)  # user 1's last order: 1, 2; user 2's: 5
    found = rule_candidates.candidates(rule_candidates.flatten_rules(RULES), up, np.array([0, 1]))
    user1 = found[found["row"] == 0].set_index("product_id")
    assert user1.index.tolist() == [9]  # {1} -> 9 and {1, 2} -> 9; 3 -> 8 is not recent
    assert user1.loc[9, "rule_score"] == pytest.approx(1 - (1 - 0.5) * (1 - 0.4))
    assert user1.loc[9, "rules_fired"] == 2 and user1.loc[9, "rule_confidence"] == 0.5
    assert user1.loc[9, "rule_lift"] == 3.0
    assert found[found["row"] == 1].empty  # 5 -> 1, but user 2 bought 1


def test_older_orders_fire_when_the_window_is_longer() -> None:
    found = rule_candidates.candidates(rule_candidates.flatten_rules(RULES), _up(recent_orders=2), np.array([0]))
    assert sorted(found["product_id"].tolist()) == [8, 9]


def test_no_rules_and_no_customers_give_nothing() -> None:
    up = _up()
    assert rule_candidates.candidates(rule_candidates.flatten_rules(RULES.iloc[:0]), up, np.array([0])).empty
    assert rule_candidates.candidates(rule_candidates.flatten_rules(RULES), up, np.array([], dtype=np.int64)).empty
