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


def test_every_ranked_list_source_skips_exactly_what_each_customer_bought() -> None:
    rng = np.random.default_rng(5)
    lines = pd.DataFrame(
        {
            "user_id": rng.integers(0, 300, 6_000),
            "order_id": rng.integers(0, 2_000, 6_000),
            "product_id": rng.integers(0, 400, 6_000),
        }
    )
    lines["order_number"] = lines["order_id"] % 7
    up = user_products(History(lines), n_products=400)
    ranked = np.array([rng.permutation(400)[:120] for _ in range(3)])
    ranked[1, 100:] = -1  # a short list
    rows = np.sort(rng.choice(len(up.users), 150, replace=False))  # a block of customers
    list_of_row = rng.integers(0, 3, len(rows))
    got = popularity.first_unbought(up, rows, ranked, list_of_row, 15)
    owned = {(r, p) for r, p in zip(*up.bought.nonzero(), strict=True)}
    expected = []
    for row, chosen in zip(rows, list_of_row, strict=True):
        fresh = [p for p in ranked[chosen] if p >= 0 and (row, p) not in owned][:15]
        expected += [(row, p, rank) for rank, p in enumerate(fresh, start=1)]
    assert list(zip(got["row"], got["product_id"], got["rank"], strict=True)) == expected
