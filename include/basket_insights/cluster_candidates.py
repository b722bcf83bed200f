"""The customer's product-cluster preferences as a candidate source.

Each customer's favourite product clusters (:mod:`basket_insights.products`: TF-IDF of names plus
aisle and department) are those holding the largest share of what they bought
(:func:`cluster_shares`); the candidates are the products of their top ``clusters`` clusters bought
by the most customers, that they never bought. An empty cluster gives nothing; a customer whose
purchases have no cluster gets nothing from this source.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from basket_insights.popularity import first_unbought, ranked_lists
from basket_insights.user_products import UserProducts


def group_codes(product_ids: np.ndarray, group_ids: np.ndarray, n_products: int) -> tuple[np.ndarray, np.ndarray]:
    """Product id -> dense code of its group (cluster, aisle, department; ``-1`` for none), and the group ids."""
    product_ids = np.asarray(product_ids, dtype=np.int64)
    groups, codes = np.unique(np.asarray(group_ids), return_inverse=True)
    code_of = np.full(max(n_products, int(product_ids.max(initial=-1)) + 1), -1, dtype=np.int64)
    code_of[product_ids] = codes
    return code_of[:n_products], groups


def cluster_shares(up: UserProducts, code_of_product: np.ndarray, n_groups: int, recent: bool = False) -> np.ndarray:
    """(customers, groups) float32: each customer's share of purchases (orders × products) in each group."""
    matrix = up.recent if recent else up.bought
    codes = code_of_product[matrix.indices]
    keep = codes >= 0
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))[keep]
    width = max(n_groups, 1)
    # one bincount over (customer, group) bins: no sparse matrix to build and convert
    counts = np.bincount(rows * width + codes[keep], weights=matrix.data[keep], minlength=matrix.shape[0] * width)
    dense = counts.reshape(matrix.shape[0], width).astype(np.float32)
    return dense / np.maximum(dense.sum(axis=1, keepdims=True), 1.0)


def candidates(
    up: UserProducts,
    rows: np.ndarray,
    shares: np.ndarray,
    code_of_product: np.ndarray,
    buyers: np.ndarray,
    n: int,
    clusters: int = 2,
    depth: int = 200,
) -> pd.DataFrame:
    """The ``n`` most-bought unbought products of each of the customer's top ``clusters`` clusters.

    ``shares`` comes from :func:`cluster_shares` (all customers); ``buyers`` is distinct buyers per product.
    Returns ``row, product_id, cluster_rank`` (the cluster's rank for the customer, 1 = favourite).
    """
    n_groups = shares.shape[1]
    if n_groups == 0 or len(rows) == 0:
        return pd.DataFrame({"row": np.zeros(0, np.int64), "product_id": np.zeros(0, np.int64), "cluster_rank": []})
    in_cluster = np.zeros((n_groups, len(code_of_product)))
    has = code_of_product >= 0
    in_cluster[code_of_product[has], np.flatnonzero(has)] = buyers[: len(code_of_product)][has]
    ranked = ranked_lists(in_cluster, depth)
    top = np.argsort(-shares[rows], axis=1, kind="stable")[:, :clusters]
    parts = []
    for position in range(top.shape[1]):
        liked = shares[rows, top[:, position]] > 0
        part = first_unbought(up, rows[liked], ranked, top[liked, position], n)
        parts.append(part.drop(columns="rank").assign(cluster_rank=np.int16(position + 1)))
    return pd.concat(parts, ignore_index=True)
