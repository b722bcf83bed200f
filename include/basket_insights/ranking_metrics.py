"""Per-customer quality of ranked lists against the products a customer actually bought next.

Every method is scored the same way (:func:`per_user`): for each customer with at least one relevant
product, hits in the top ``k``, hit (at least one), precision ``hits / k``, recall ``hits / relevant``
and NDCG (binary gains, ``1 / log2(rank + 1)``, normalised by the best possible ranking of
``min(relevant, k)`` hits). A customer the method recommends nothing to scores zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def per_user(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per customer of ``truth``: ``user_id, relevant, hits, hit, precision, recall, ndcg``.

    ``recs``: ``user_id, rank, product_id`` (rank 1 = best); ``truth``: ``user_id, product_id``.
    """
    users, relevant = np.unique(truth["user_id"].to_numpy(np.int64), return_counts=True)
    top = recs.loc[recs["rank"] <= k, ["user_id", "rank", "product_id"]]
    hits = top.merge(truth[["user_id", "product_id"]].drop_duplicates(), on=["user_id", "product_id"])
    row = np.searchsorted(users, hits["user_id"].to_numpy(np.int64))
    known = (row < len(users)) & (users[np.minimum(row, len(users) - 1)] == hits["user_id"].to_numpy())
    row, ranks = row[known], hits["rank"].to_numpy()[known]
    n_hits = np.bincount(row, minlength=len(users))
    dcg = np.bincount(row, weights=1.0 / np.log2(ranks + 1.0), minlength=len(users))
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    ideal = discounts[np.minimum(relevant, k) - 1]
    return pd.DataFrame(
        {
            "user_id": users,
            "relevant": relevant,
            "hits": n_hits,
            "hit": (n_hits > 0).astype(np.float64),
            "precision": n_hits / k,
            "recall": n_hits / relevant,
            "ndcg": dcg / ideal,
        }
    )


def mean_recall(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> float:
    """Mean recall@k over the customers of ``truth`` (0 when there are none)."""
    scores = per_user(recs, truth, k)
    return float(scores["recall"].mean()) if len(scores) else 0.0
