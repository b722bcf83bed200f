"""Each customer's products as one sparse matrix: the shared input of every candidate source and feature.

:func:`user_products` turns the order lines of a :class:`~basket_insights.features.History` into

* ``bought``: a CSR matrix (customers × product ids) of how many orders held each product;
* ``recent``: the same over each customer's last ``recent_orders`` orders;
* per customer: orders placed and order lines.

Rows follow ``users`` (sorted ids); a product id is its own column, so no id mapping is needed.
Built with one sort of ``(row, product)`` keys: no hash table over the lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from basket_insights.arrays import factorize_ids
from basket_insights.features import History


@dataclass(frozen=True)
class UserProducts:
    users: np.ndarray  # sorted user ids; row i is users[i]
    bought: sp.csr_array  # (users, n_products) orders holding the product
    recent: sp.csr_array  # (users, n_products) the same over the last ``recent_orders`` orders
    orders: np.ndarray  # orders per user (that have lines)
    lines: np.ndarray  # order lines per user

    @property
    def n_products(self) -> int:
        return self.bought.shape[1]

    def rows_of(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user id (``-1`` for users without history)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        if len(self.users) == 0:
            return np.full(len(user_ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.users, user_ids), len(self.users) - 1)
        return np.where(self.users[pos] == user_ids, pos, -1)

    def subset(self, rows: np.ndarray) -> UserProducts:
        """The customers of ``rows`` (ascending) alone, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return UserProducts(self.users[rows], self.bought[rows], self.recent[rows], self.orders[rows], self.lines[rows])

    @staticmethod
    def concat(parts: list[UserProducts]) -> UserProducts:
        """Disjoint sets of customers (of as many product columns) in one, rows sorted by user id."""
        users = np.concatenate([p.users for p in parts])
        order = np.argsort(users, kind="stable")
        bought, recent = (
            sp.vstack([getattr(p, name) for p in parts], format="csr")[order] for name in ("bought", "recent")
        )
        return UserProducts(
            users[order],
            sp.csr_array(bought),
            sp.csr_array(recent),
            np.concatenate([p.orders for p in parts])[order],
            np.concatenate([p.lines for p in parts])[order],
        )

    @cached_property
    def _keys(self) -> np.ndarray:
        return _row_keys(self.bought)

    def has_bought(self, rows: np.ndarray, products: np.ndarray) -> np.ndarray:
        """Whether each (row, product) pair is in the user's history, by binary search in the CSR rows
        (only in the slice of rows asked about: a block of customers searches its own entries)."""
        keys = rows.astype(np.int64) * self.n_products + products.astype(np.int64)
        if len(keys) == 0:
            return np.zeros(0, dtype=bool)
        first, last = int(rows.min()), int(rows.max())
        known = self._keys[self.bought.indptr[first] : self.bought.indptr[last + 1]]
        if len(known) == 0:
            return np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
        return known[pos] == keys


def _row_keys(matrix: sp.csr_array) -> np.ndarray:
    """``row * n_cols + col`` of every stored entry, sorted (CSR with sorted indices)."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices.astype(np.int64)


def _count_matrix(rows: np.ndarray, products: np.ndarray, n_rows: int, n_products: int) -> sp.csr_array:
    keys = rows.astype(np.int64) * n_products + products.astype(np.int64)
    keys.sort()
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    counts = np.diff(np.r_[starts, len(keys)]).astype(np.float32)
    unique = keys[starts]
    row_of = unique // n_products
    indptr = np.r_[0, np.cumsum(np.bincount(row_of, minlength=n_rows))].astype(np.int64)
    return sp.csr_array((counts, (unique % n_products).astype(np.int32), indptr), shape=(n_rows, n_products))


def user_products(history: History, recent_orders: int = 3, n_products: int | None = None) -> UserProducts:
    """Build :class:`UserProducts` from order lines (``user_id, order_id, order_number, product_id``).

    ``n_products`` is the number of columns (product ids ``0..n_products-1``); by default one more
    than the largest id in the history.
    """
    lines = history.lines
    products = lines["product_id"].to_numpy(np.int64)
    row_of_line, users = factorize_ids(lines["user_id"].to_numpy(np.int64))
    n_users = len(users)
    width = max(int(products.max(initial=0)) + 1, n_products or 0)
    numbers = lines["order_number"].to_numpy(np.int64)
    # per order (3.7M at full scale, not per line: ufunc.at is slow): its customer and number
    order_ids = lines["order_id"].to_numpy(np.int64)
    customer_of_order = np.full(int(order_ids.max(initial=-1)) + 1, -1, dtype=np.int64)
    number_of_order = np.zeros(len(customer_of_order), dtype=np.int64)
    customer_of_order[order_ids] = row_of_line
    number_of_order[order_ids] = numbers
    placed = customer_of_order >= 0
    orders = np.bincount(customer_of_order[placed], minlength=n_users)
    last = np.zeros(n_users, dtype=np.int64)
    np.maximum.at(last, customer_of_order[placed], number_of_order[placed])
    recent = numbers > last[row_of_line] - recent_orders
    return UserProducts(
        users=users.astype(np.int64),
        bought=_count_matrix(row_of_line, products, n_users, width),
        recent=_count_matrix(row_of_line[recent], products[recent], n_users, width),
        orders=orders.astype(np.int64),
        lines=np.bincount(row_of_line, minlength=n_users).astype(np.int64),
    )
