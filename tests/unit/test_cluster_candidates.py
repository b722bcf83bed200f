"""Product-cluster candidates: the customer's favourite clusters' most-bought products."""

from __future__ import annotations

import numpy as np
import pandas as pd

from basket_insights import cluster_candidates
from basket_insights.features import History
from basket_insights.user_products import user_products

# clusters: 10 = {1, 2, 3}, 20 = {4, 5}, 30 = {6} (never bought: an empty cluster for every customer)
CLUSTERS = pd.DataFrame({"product_id": [1, 2, 3, 4, 5, 6], "cluster_id": [10, 10, 10, 20, 20, 30]})
LINES = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 2, 2, 3, 3],
        "order_id": [1, 1, 2, 3, 3, 4, 4],
        "order_number": [1, 1, 2, 1, 1, 1, 1],
        "product_id": [1, 1, 4, 2, 3, 2, 7],  # 7 has no cluster
    }
)


def test_shares_and_candidates_by_hand() -> None:
    lines = LINES.drop_duplicates(["order_id", "product_id"])
    up = user_products(History(lines))
    code_of, groups = cluster_candidates.group_codes(CLUSTERS["product_id"], CLUSTERS["cluster_id"], up.n_products)
    assert groups.tolist() == [10, 20, 30]
    shares = cluster_candidates.cluster_shares(up, code_of, len(groups))
    np.testing.assert_allclose(shares[0], [0.5, 0.5, 0.0])  # user 1: 1 (cluster 10) and 4 (cluster 20)
    np.testing.assert_allclose(shares[2], [1.0, 0.0, 0.0])  # user 3: 2 (10); 7 has no cluster
    buyers = np.bincount(up.bought.indices, minlength=up.n_products).astype(float)
    found = cluster_candidates.candidates(up, np.array([0, 1, 2]), shares, code_of, buyers, n=5)
    user1 = found[found["row"] == 0]
    # cluster 10 by buyers (2 first); cluster 20's 4 is theirs and 5 has no buyer
    assert user1["product_id"].tolist() == [2, 3]
    assert user1["cluster_rank"].tolist() == [1, 1]
    user2 = found[found["row"] == 1]  # bought 2 and 3 (cluster 10): 1 is left there
    assert user2["product_id"].tolist() == [1] and user2["cluster_rank"].tolist() == [1]
    assert not {5, 6} & set(found["product_id"])  # nobody bought them: never nominated


def test_no_clusters_give_nothing() -> None:
    up = user_products(History(LINES.drop_duplicates(["order_id", "product_id"])))
    found = cluster_candidates.candidates(
        up, np.array([0]), np.zeros((3, 0)), np.full(up.n_products, -1), np.ones(8), 5
    )
    assert found.empty
