"""The item-to-item model (EASE) against a tiny history worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights import item_model
from basket_insights.features import History
from basket_insights.user_products import user_products


def _history(baskets: dict[int, list[list[int]]]) -> History:
    rows, order_id = [], 0
    for user, orders in baskets.items():
        for number, products in enumerate(orders, start=1):
            order_id += 1
            rows += [(user, order_id, number, p) for p in products]
    return History(pd.DataFrame(rows, columns=["user_id", "order_id", "order_number", "product_id"]))


# products 1 and 2 go together (users 1-3), 3 is bought alone (users 4-5), 4 once by user 6
HISTORY = _history({1: [[1, 2]], 2: [[1], [2]], 3: [[1, 2, 3]], 4: [[3]], 5: [[3], [1]], 6: [[4]]})


def test_products_are_the_most_bought_with_at_least_two_buyers() -> None:
    up = user_products(HISTORY)
    assert item_model.model_products(up, 10).tolist() == [1, 2, 3]  # ties by id; 4 has one buyer only
    assert item_model.model_products(up, 2).tolist() == [1, 2]


def test_co_buyers_and_the_closed_form_by_hand() -> None:
    up = user_products(HISTORY)
    products = np.array([1, 2, 3])
    gram = item_model.co_buyers(up, products)
    # buyers: 1 -> users 1, 2, 3, 5; 2 -> 1, 2, 3; 3 -> 3, 4, 5
    np.testing.assert_array_equal(gram, [[4, 3, 2], [3, 3, 1], [2, 1, 3]])
    weights = item_model.fit_weights(gram, l2=1.0)
    precision = np.linalg.inv(gram + np.eye(3))
    expected = -precision / np.diag(precision)
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    assert weights[0, 1] > 0 and weights[1, 0] > 0  # 1 and 2 predict each other


def test_the_closed_form_on_a_larger_gram_and_on_one_not_positive_definite() -> None:
    buys = np.random.default_rng(4).random((400, 60)) < 0.1
    gram = (buys.T.astype(np.float64) @ buys).astype(np.float64)
    for matrix, l2 in ((gram, 5.0), (np.array([[0.0, 2.0], [2.0, 0.0]]), 1.0)):  # the second: eigenvalues 3, -1
        precision = np.linalg.inv(matrix + l2 * np.eye(len(matrix)))
        expected = -precision / np.diag(precision)
        np.fill_diagonal(expected, 0)
        np.testing.assert_allclose(item_model.fit_weights(matrix, l2), expected, rtol=1e-5, atol=1e-7)


def test_candidates_exclude_what_was_bought_and_rank_by_score() -> None:
    up = user_products(HISTORY)
    model = item_model.fit_item_model(up, 10, l2=1.0)
    user4 = up.rows_of(np.array([4]))  # bought 3: 1 (bought with 3 by users 3, 5) comes before 2
    found = item_model.candidates(model, up, user4, 5)
    assert found["product_id"].tolist()[0] == 1
    assert 3 not in found["product_id"].tolist()
    assert found["item_rank"].tolist() == list(range(1, len(found) + 1))
    assert (np.diff(found["item_score"].to_numpy()) <= 0).all()


def test_strongest_link_names_the_customers_product_and_the_ratio() -> None:
    up = user_products(HISTORY)
    model = item_model.fit_item_model(up, 10, l2=1.0)
    row = up.rows_of(np.array([2]))  # user 2 bought 1 and 2; is 3 recommended because of 1?
    links = item_model.strongest_links(model, up, row, np.array([3]))
    assert links["because_product"].tolist() == [1]
    assert links["times_bought"].tolist() == [1]
    # buyers of 1 who bought 3: users 3, 5 of 4 (0.5); others: user 4 of 2 (0.5): ratio 1.0
    assert links["ratio"].iloc[0] == pytest.approx(1.0)
    outside = item_model.strongest_links(model, up, row, np.array([4]))  # product 4 is outside the model
    assert outside["because_product"].tolist() == [-1]


def test_l2_grid_scales_with_the_data() -> None:
    gram = np.diag([10.0, 30.0])
    assert item_model.l2_grid(gram) == [20.0 * f for f in item_model.L2_FACTORS]


def _random_history(seed: int) -> History:
    rng = np.random.default_rng(seed)
    baskets = {
        user: [sorted(set(rng.integers(1, 15, size=rng.integers(1, 5)).tolist())) for _ in range(rng.integers(1, 5))]
        for user in range(1, 41)
    }
    return _history(baskets)


def test_co_buyers_summed_over_slices_equals_one_product() -> None:
    up = user_products(_random_history(3))
    products = item_model.model_products(up, 10)
    x = item_model.binary_columns(up, products).toarray().astype(np.float64)
    np.testing.assert_array_equal(item_model.co_buyers(up, products, threads=2), x.T @ x)
    np.testing.assert_array_equal(item_model.co_buyers(up, products, threads=1), x.T @ x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strongest_links_match_a_loop_over_each_customers_products(seed: int) -> None:
    up = user_products(_random_history(seed))
    model = item_model.fit_item_model(up, 8, l2=1.0)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(up.users), size=60)
    products = rng.integers(0, up.n_products, size=60)  # some outside the model, some owned
    links = item_model.strongest_links(model, up, rows, products)
    column = {int(p): c for c, p in enumerate(model.products)}
    bought = up.bought.toarray()
    for i, (row, product) in enumerate(zip(rows, products, strict=True)):
        owned = [p for p in np.flatnonzero(bought[row]) if p in column]  # in product order
        weights = [model.weights[column[p], column[product]] for p in owned] if product in column else []
        best = int(np.argmax(weights)) if weights else -1  # argmax keeps the first: the lower product id
        expected = owned[best] if best >= 0 and weights[best] > 0 else -1
        assert links["because_product"].iloc[i] == expected
        if expected >= 0:
            assert links["times_bought"].iloc[i] == bought[row, expected]
