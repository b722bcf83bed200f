"""Popularity by distinct buyers and by lines, per segment; the first products a customer never bought."""

from __future__ import annotations

import numpy as np
import pandas as pd

from basket_insights import popularity
from basket_insights.features import History
from basket_insights.user_products import user_products

# user 1 buys product 1 in five orders; users 2 and 3 buy product 2 once each
LINES = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 1, 1, 2, 3, 3],
        "order_id": [1, 2, 3, 4, 5, 6, 7, 7],
        "order_number": [1, 2, 3, 4, 5, 1, 1, 1],
        "product_id": [1, 1, 1, 1, 1, 2, 2, 3],
    }
)
SEGMENTS = pd.DataFrame({"user_id": [1, 2, 3], "segment_id": [0, 1, 1], "segment_name": ["loyal", "casual", "casual"]})


def test_buyers_count_each_customer_once_lines_count_every_line() -> None:
    up = user_products(History(LINES))
    pop = popularity.popularity(up, LINES["product_id"].to_numpy(), SEGMENTS)
    assert pop.buyers[1:4].tolist() == [1, 2, 1]
    assert pop.lines[1:4].tolist() == [5, 2, 1]
    assert pop.segment_names.tolist() == ["loyal", "casual"]
    np.testing.assert_allclose(pop.segment_share()[1, 1:4], [0.0, 1.0, 0.5])


def test_candidates_skip_what_the_customer_bought() -> None:
    up = user_products(History(LINES))
    pop = popularity.popularity(up, LINES["product_id"].to_numpy(), SEGMENTS)
    rows = up.rows_of(np.array([1, 2, 3]))
    by_buyers = popularity.global_candidates(up, rows, pop.buyers, 2)
    assert by_buyers[by_buyers["row"] == 0]["product_id"].tolist() == [2, 3]  # user 1 bought 1
    assert by_buyers[by_buyers["row"] == 2]["product_id"].tolist() == [1]  # user 3 bought 2 and 3
    by_lines = popularity.global_candidates(up, rows, pop.lines, 1)
    assert by_lines[by_lines["row"] == 1]["product_id"].tolist() == [1]
    in_segment = popularity.segment_candidates(pop, up, rows, 3)
    assert in_segment[in_segment["row"] == 1]["product_id"].tolist() == [3]  # casual: 2 (bought), 3


def test_customers_without_a_segment_share_one_group() -> None:
    up = user_products(History(LINES))
    pop = popularity.popularity(up, LINES["product_id"].to_numpy(), SEGMENTS.iloc[:1])
    assert pop.segment_names.tolist() == ["all customers", "loyal"]
    assert pop.segment_users.tolist() == [2, 1]
