"""Item-to-item relations learned from customers' whole histories: EASE on the most-bought products.

EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019) learns the item-item
weights ``B`` minimising ``||X − XB||² + λ||B||²`` with ``diag(B) = 0``, in closed form::

    P = (XᵀX + λI)⁻¹,   B_ij = −P_ij / P_jj  (i ≠ j),   B_jj = 0

``X`` is the binary customer × product matrix (bought at least once, in any order: the whole
history, not one basket) restricted to the ``N`` products bought by the most customers; a customer's
score for product ``j`` is ``Σ_i x_i B_ij``. ``N`` (``BASKET_ITEM_MODEL_PRODUCTS``) bounds the dense
solve: ``N = 3,000`` is a 3,000² inverse, about a second, and covers most purchases (docs/rules.md
gives the measurement). λ is not a constant: :func:`l2_grid` spans it relative to the data's own
co-purchase counts and the fitting step picks the value that recalls the most of a validation
split's next orders (:mod:`basket_insights.recommender`).

The model also keeps ``XᵀX`` (customers who bought both products) for the readable reasons:
"customers who buy X buy this 3.2× more often than others" (:func:`strongest_links`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from basket_insights.blocks import map_ahead
from basket_insights.user_products import UserProducts

#: λ of the grid, as multiples of the mean number of buyers of the model's products.
L2_FACTORS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


@dataclass(frozen=True)
class ItemModel:
    products: np.ndarray  # (N,) product ids of the columns, most buyers first
    weights: np.ndarray  # (N, N) float32: B
    co_buyers: np.ndarray  # (N, N) float32: XᵀX, customers who bought both (diagonal: buyers)
    users: int  # customers the model was fitted on
    l2: float

    @cached_property
    def weights_by_target(self) -> np.ndarray:
        """``Bᵀ`` in row-major order: row ``j`` holds every product's weight towards product ``j``."""
        return np.ascontiguousarray(self.weights.T)

    @property
    def buyers(self) -> np.ndarray:
        return np.diag(self.co_buyers)

    def column_of(self, n_products: int) -> np.ndarray:
        """Product id -> column of the model (``-1`` for products outside it), for ids ``< n_products``."""
        column = np.full(max(n_products, int(self.products.max(initial=-1)) + 1), -1, dtype=np.int64)
        column[self.products] = np.arange(len(self.products))
        return column


def model_products(up: UserProducts, n: int) -> np.ndarray:
    """The ``n`` products with the most distinct buyers (at least two; ties: lower id first)."""
    return most_bought(np.bincount(up.bought.indices, minlength=up.n_products), n)


def most_bought(buyers: np.ndarray, n: int) -> np.ndarray:
    """:func:`model_products` from each product id's count of distinct buyers."""
    order = np.lexsort((np.arange(len(buyers)), -buyers))
    return order[: min(n, int(np.count_nonzero(buyers >= 2)))].astype(np.int64)


def binary_columns(up: UserProducts, products: np.ndarray, rows: np.ndarray | None = None) -> sp.csr_array:
    """``X``: (customers × model products) 1.0 where the customer ever bought the product."""
    bought = up.bought if rows is None else up.bought[rows]
    column = np.full(up.n_products, -1, dtype=np.int64)
    column[products] = np.arange(len(products))
    mapped = column[bought.indices]
    keep = mapped >= 0
    row_of = np.repeat(np.arange(bought.shape[0]), np.diff(bought.indptr))[keep]
    return sp.csr_array(
        (np.ones(int(keep.sum()), dtype=np.float32), (row_of, mapped[keep])), shape=(bought.shape[0], len(products))
    )


#: Slices of customers :func:`co_buyers` sums ``XᵀX`` over (measured at full scale: 4 slices on 2
#: threads 3.4 s, one product 5.3 s; more slices add a dense sum each).
GRAM_SLICES = 4


def co_buyers(up: UserProducts, products: np.ndarray, threads: int = 2) -> np.ndarray:
    """``XᵀX`` in float64: customers who bought both products of each pair.

    Summed over :data:`GRAM_SLICES` slices of customers, ``threads`` at once (scipy's sparse product
    releases the GIL); the counts are whole numbers, so the sum is exact in any order.
    """
    x = binary_columns(up, products)
    bounds = np.linspace(0, x.shape[0], GRAM_SLICES + 1).astype(np.int64)

    def gram(part: int) -> np.ndarray:
        rows = x[bounds[part] : bounds[part + 1]]
        return (rows.T @ rows).toarray()

    total = np.zeros((len(products), len(products)), dtype=np.float64)
    for _, part in map_ahead(gram, range(GRAM_SLICES), threads):
        total += part
    return total


def l2_grid(gram: np.ndarray) -> list[float]:
    """Candidate λ values, scaled to the data: multiples (:data:`L2_FACTORS`) of the mean buyers of a product."""
    scale = float(np.mean(np.diag(gram))) if len(gram) else 1.0
    return [max(scale * f, 1e-3) for f in L2_FACTORS]


def _regularised_inverse(gram: np.ndarray, l2: float) -> np.ndarray:
    """``(G + λI)⁻¹``, symmetric positive definite for λ > 0, from its Cholesky factor (LAPACK
    ``potrf``/``potri``): a third faster than a general inverse at N = 3,000."""
    regularised = gram + l2 * np.eye(len(gram))
    # the transpose of a symmetric C-ordered matrix is the same matrix in Fortran order: no copy
    factor, info = scipy.linalg.lapack.dpotrf(regularised.T, lower=True, overwrite_a=True)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=True, overwrite_c=True)
    if info != 0:  # not positive definite in floating point: the general inverse
        return scipy.linalg.inv(gram + l2 * np.eye(len(gram)), check_finite=False)
    # potri fills the lower triangle of the Fortran-ordered result: the upper one of its C-ordered transpose
    upper = inverse.T
    symmetric = np.triu(upper)
    symmetric += np.triu(upper, 1).T
    return symmetric


def fit_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's closed form for one λ: ``B = I − P · diag(1 / diag(P))`` with ``P = (G + λI)⁻¹``, zero diagonal."""
    if len(gram) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    precision = _regularised_inverse(gram, l2)
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def fit_item_model(
    up: UserProducts,
    n_products: int,
    l2: float | None = None,
    gram: np.ndarray | None = None,
    products: np.ndarray | None = None,
) -> ItemModel:
    """Fit EASE on the ``n_products`` most-bought products of ``up`` (λ: the grid's middle when not given)."""
    products = model_products(up, n_products) if products is None else products
    gram = co_buyers(up, products) if gram is None else gram
    return item_model_of(products, gram, len(up.users), l2)


def item_model_of(products: np.ndarray, gram: np.ndarray, users: int, l2: float | None = None) -> ItemModel:
    """EASE fitted on ``gram`` (:func:`co_buyers` of ``products`` over ``users`` customers: a sum
    over user shards gives that of all of them); λ: the grid's middle when not given."""
    l2 = l2 if l2 is not None else l2_grid(gram)[len(L2_FACTORS) // 2]
    return ItemModel(products, fit_weights(gram, l2), gram.astype(np.float32), users, float(l2))


def user_scores(model: ItemModel, up: UserProducts, rows: np.ndarray) -> np.ndarray:
    """EASE scores ``X_rows · B``: (len(rows), N) float32, products the customer bought set to −inf."""
    x = binary_columns(up, model.products, rows)
    scores = np.asarray(x @ model.weights, dtype=np.float32)
    scores[np.repeat(np.arange(x.shape[0]), np.diff(x.indptr)), x.indices] = -np.inf
    return scores


def candidates(
    model: ItemModel, up: UserProducts, rows: np.ndarray, n: int, scores: np.ndarray | None = None
) -> pd.DataFrame:
    """Each customer's ``n`` best-scored products they never bought (``scores``: :func:`user_scores` of ``rows``).

    Returns ``row, product_id, item_score, item_rank`` (rank 1 = best), products with a positive score only.
    """
    if len(model.products) == 0 or len(rows) == 0:
        return pd.DataFrame({"row": [], "product_id": [], "item_score": [], "item_rank": []})
    scores = user_scores(model, up, rows) if scores is None else scores
    n = min(n, scores.shape[1])
    if n < scores.shape[1]:  # the n largest, without a negated copy of the scores
        top = np.argpartition(scores, scores.shape[1] - n, axis=1)[:, -n:]
    else:
        top = np.tile(np.arange(n), (len(rows), 1))
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    rank = np.tile(np.arange(1, n + 1, dtype=np.int16), (len(rows), 1))
    keep = np.isfinite(top_scores) & (top_scores > 0)
    return pd.DataFrame(
        {
            "row": np.repeat(rows, n).reshape(len(rows), n)[keep],
            "product_id": model.products[top[keep]],
            "item_score": top_scores[keep],
            "item_rank": rank[keep],
        }
    )


def strongest_links(model: ItemModel, up: UserProducts, rows: np.ndarray, products: np.ndarray) -> pd.DataFrame:
    """For each (customer row, recommended product): the customer's product that adds most to its score.

    Returns ``because_product`` (``-1`` when the product is outside the model or nothing links it),
    ``times_bought`` (orders of the customer that held it) and ``ratio``: how many times more often
    customers who bought ``because_product`` bought the recommended one than customers who did not.
    Vectorised over every (recommendation, owned product inside the model) pair; ties go to the
    lower product id.
    """
    rows, products = np.asarray(rows, dtype=np.int64), np.asarray(products, dtype=np.int64)
    because = np.full(len(rows), -1, dtype=np.int64)
    times = np.zeros(len(rows), dtype=np.int64)
    ratio = np.full(len(rows), np.nan)
    column = model.column_of(up.n_products)
    target = np.where(products < len(column), column[np.minimum(products, len(column) - 1)], -1)
    recs = np.flatnonzero(target >= 0)
    customers, customer_of = np.unique(rows[recs], return_inverse=True)
    owned = up.bought[customers]  # each customer's products, in product order
    inside = np.flatnonzero(column[owned.indices] >= 0)  # positions in ``owned`` of products inside the model
    inside_column = column[owned.indices[inside]]
    inside_indptr = np.searchsorted(inside, owned.indptr)
    starts = inside_indptr[:-1][customer_of]
    lengths = np.diff(inside_indptr)[customer_of]
    offsets = np.r_[0, np.cumsum(lengths)]
    pair = np.arange(offsets[-1]) - np.repeat(offsets[:-1] - starts, lengths)  # index into ``inside``
    # B[owned, target] read along row ``target`` of Bᵀ: one recommendation's pairs share a cache-friendly row
    flat = np.repeat(target[recs] * len(model.products), lengths) + inside_column[pair]
    weight = model.weights_by_target.ravel().take(flat)
    # the first largest weight of each recommendation's run of pairs (runs are contiguous, in product order)
    nonempty = lengths > 0
    run_max = np.full(len(recs), -np.inf, dtype=np.float32)
    if nonempty.any():
        run_max[nonempty] = np.maximum.reduceat(weight, offsets[:-1][nonempty])
    at_max = np.flatnonzero(weight == np.repeat(run_max, lengths))
    pair_rec = np.searchsorted(offsets, at_max, side="right") - 1
    firsts = at_max[np.r_[True, pair_rec[1:] != pair_rec[:-1]]] if len(at_max) else at_max
    linked = weight[firsts] > 0
    firsts = firsts[linked]
    rec_of = recs[np.searchsorted(offsets, firsts, side="right") - 1]
    source, dest = inside_column[pair[firsts]], target[rec_of]
    both = model.co_buyers[source, dest].astype(np.float64)
    with_source = model.co_buyers[source, source].astype(np.float64)
    rate_with = both / np.maximum(with_source, 1.0)
    rate_without = (model.co_buyers[dest, dest] - both) / np.maximum(model.users - with_source, 1.0)
    because[rec_of] = owned.indices[inside[pair[firsts]]]
    times[rec_of] = owned.data[inside[pair[firsts]]].astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio[rec_of] = np.where(rate_without > 0, rate_with / rate_without, np.inf)
    return pd.DataFrame({"because_product": because, "times_bought": times, "ratio": ratio})
