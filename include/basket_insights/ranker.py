"""The learned ranker: a gradient-boosted model of "this candidate is in the customer's next order".

Trained on every run from the data itself (:func:`fit_ranker`): each customer's *previous* order
gives the labels (a candidate is positive when that order held it, and the customer had never
bought it before), the history before it gives the candidates and their features
(:mod:`basket_insights.candidates`). Customers are split into a training and a validation part
(``validation_share``, by customer, never by row: a customer's candidates stay together); each
setting of :attr:`RankerSettings.grid` is fitted on the training part with early stopping on the
validation part's log loss, and the one with the best recall@k of the validation customers is
kept — unless one source's own ordering (the item model's score, popularity by buyers overall or in
the segment: :data:`SINGLE_SOURCE_ORDERINGS`) recalls more of the same validation customers, in
which case that ordering ranks (:class:`SourceRanker`; on a few dozen customers a model learns
noise). Every setting is regularised (a minimum of rows per leaf, L2 on the leaf values, optionally
monotone constraints on the sources' scores, :data:`MONOTONE`): a few thousand positive rows are
all a small shop has. Deterministic for ``seed``.

The model is LightGBM's (:mod:`basket_insights.boosting`): it handles the missing values that
mark "this source did not nominate the product", the categorical segment and the monotone
constraints natively.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from basket_insights import boosting
from basket_insights.boosting import fit_boosted, trees_used
from basket_insights.candidates import FEATURES

log = logging.getLogger(__name__)


#: Features whose effect on the chance of a purchase can only go one way (``1`` up, ``-1`` down):
#: constraining them keeps a model fitted on a few thousand positives from learning noise.
MONOTONE = {
    "item_score": 1,
    "item_rank": -1,
    "rule_score": 1,
    "segment_rank": -1,
    "segment_share": 1,
    "popular_rank": -1,
    "buyer_share": 1,
    "user_cluster_share": 1,
    "user_aisle_share": 1,
    "recent_aisle_share": 1,
    "user_department_share": 1,
}


@dataclass(frozen=True)
class RankerSettings:
    """``train_users``: customers sampled for training and validation together (their candidates
    are the rows); ``grid``: the (leaves per tree, minimum rows per leaf, monotone constraints)
    settings tried; ``max_iter`` bounds the trees, early stopping on the validation loss picks the number."""

    train_users: int = 10_000
    validation_share: float = 0.25
    grid: tuple[tuple[int, int, bool], ...] = ((15, 200, False), (7, 50, True))
    learning_rate: float = 0.1
    l2_regularization: float = 1.0
    max_iter: int = 400
    seed: int = 0


@dataclass
class Ranker:
    model: object  # a fitted lightgbm.LGBMClassifier (basket_insights.boosting)
    features: list[str]
    params: dict
    validation: list[dict] = field(default_factory=list)  # one row per grid setting

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of each candidate row being bought next."""
        return boosting.probability(self.model, frame[self.features].to_numpy(np.float32))


#: One-feature orderings the fitted models must beat on validation to be kept (higher is better).
SINGLE_SOURCE_ORDERINGS = ("item_score", "buyer_share", "segment_share")


@dataclass
class SourceRanker:
    """One source's own ordering (a feature, higher first), kept when it beat every fitted model on
    the validation customers: on a history of a few dozen customers a model learns noise."""

    feature: str
    params: dict
    validation: list[dict] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return [self.feature]

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return np.nan_to_num(frame[self.feature].to_numpy(np.float64), nan=-1e9)


@dataclass
class PopularityRanker:
    """The stand-in when a history is too short to learn from (no customer has a previous order with a
    new product): candidates are ranked by their share of buyers, and every reason is popularity."""

    reason: str
    features: list[str] = field(default_factory=lambda: ["buyer_share"])
    params: dict = field(default_factory=lambda: {"fallback": "popularity_by_buyers"})
    validation: list[dict] = field(default_factory=list)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return np.nan_to_num(frame["buyer_share"].to_numpy(np.float64), nan=0.0)


def top_k_recall(rows: np.ndarray, scores: np.ndarray, labels: np.ndarray, relevant: pd.Series, k: int) -> float:
    """Mean over the customers of ``relevant`` (row -> new products bought) of hits in their top ``k`` / relevant."""
    order = np.lexsort((-scores, rows))
    rows_sorted = rows[order]
    starts = np.r_[0, np.flatnonzero(rows_sorted[1:] != rows_sorted[:-1]) + 1]
    position = np.arange(len(rows_sorted)) - np.repeat(starts, np.diff(np.r_[starts, len(rows_sorted)]))
    top = position < k
    hits = pd.Series(labels[order][top].astype(np.float64)).groupby(rows_sorted[top]).sum()
    return float((hits.reindex(relevant.index, fill_value=0.0) / relevant).mean()) if len(relevant) else 0.0


def fit_ranker(
    frame: pd.DataFrame, labels: np.ndarray, relevant: pd.Series, k: int, settings: RankerSettings
) -> Ranker:
    """Fit the grid on ``frame`` (:data:`FEATURES` and ``row``) with 0/1 ``labels``; keep the best on validation.

    ``relevant`` maps each customer row to the number of new products of their label order (candidates
    or not: a product no source nominated is a miss that recall must count).
    """
    rows = frame["row"].to_numpy(np.int64)
    customers = np.unique(rows)
    rng = np.random.default_rng(settings.seed)
    validation = rng.random(len(customers)) < settings.validation_share
    is_validation = np.isin(rows, customers[validation])
    # a feature no candidate has (no clusters, no rules on this day) carries nothing: left out
    features = [f for f in FEATURES if frame[f].notna().any() and frame[f].nunique(dropna=True) > 1]
    x = frame[features].to_numpy(np.float32)
    y = np.asarray(labels, dtype=np.int8)
    train, val = ~is_validation, is_validation
    if y[train].min(initial=1) == y[train].max(initial=0) or not val.any():
        raise ValueError("the ranker needs positive and negative candidates and validation customers")
    categorical = [i for i, f in enumerate(features) if f == "segment"]
    results, best = [], None
    val_relevant = relevant[relevant.index.isin(customers[validation])]
    for leaves, min_leaf, monotone in settings.grid:
        model = fit_boosted(
            x[train],
            y[train],
            x[val],
            y[val],
            settings,
            leaves=leaves,
            min_rows_per_leaf=min_leaf,
            monotone=[MONOTONE.get(f, 0) for f in features] if monotone else None,
            categorical=categorical,
        )
        recall = top_k_recall(rows[val], model.predict_proba(x[val])[:, 1], y[val], val_relevant, k)
        row = {
            "max_leaf_nodes": leaves,
            "min_samples_leaf": min_leaf,
            "monotone": monotone,
            "trees": trees_used(model),
            "validation_recall": recall,
        }
        results.append(row)
        log.info("ranker: %s", row)
        if best is None or recall > best[0]:
            best = (recall, model, row)
    # a fitted model is kept only if no source's own ordering does better on the same customers
    for feature in SINGLE_SOURCE_ORDERINGS:
        if feature not in features:
            continue
        ordering = np.nan_to_num(frame[feature].to_numpy(np.float64)[val], nan=-1e9)
        recall = top_k_recall(rows[val], ordering, y[val], val_relevant, k)
        row = {"ordering": feature, "validation_recall": recall}
        results.append(row)
        log.info("ranker: %s", row)
        if recall > best[0]:
            best = (recall, None, row)
    if best[1] is None:
        log.warning("ranker: %s alone beat every fitted model on validation; it ranks today", best[2]["ordering"])
        return SourceRanker(best[2]["ordering"], best[2], results)
    return Ranker(best[1], features, best[2], results)
