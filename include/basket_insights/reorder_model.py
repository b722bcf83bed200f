"""The buy-again model: a gradient-boosted classifier of "this product is in the customer's next order".

Trained on every run from the data itself (:func:`fit_reorder_model`): the history without each
customer's last order gives the candidates and their features
(:func:`basket_insights.reorder_features.reorder_candidates`), that last order the labels (a
candidate is positive when the order held it again). Customers are split into a training and a
validation part (``validation_share``, by customer); each setting of :attr:`ReorderSettings.grid`
is fitted on the training part with early stopping on the validation part's log loss
(:func:`basket_insights.boosting.fit_boosted`), and each is judged by the mean F1 its expected-F1
sets (:func:`basket_insights.expected_f1.choose_sets`) score on the validation customers' real
next orders. The cheapest setting to score (trees × log2 leaves) within one standard error of the best
mean F1 is kept (:func:`cheapest_within_noise`): every customer of the history is scored with it.
The features' permutation importances (drop in log loss on validation rows when a feature is
shuffled) are kept for the evaluation and people. Deterministic for ``seed``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from basket_insights import boosting
from basket_insights.boosting import fit_boosted, trees_used
from basket_insights.expected_f1 import basket_f1, choose_sets
from basket_insights.reorder_features import FEATURES
from basket_insights.screen import Screen, fit_screen, screened_probability

log = logging.getLogger(__name__)


class NothingToLearn(ValueError):
    """The history has no label order with both a reordered and a not reordered product, or no
    validation customer: the model cannot be fitted (callers fall back to :class:`FrequencyModel`)."""


@dataclass(frozen=True)
class ReorderSettings:
    """``train_users``: customers sampled for training and validation together; ``grid``: the
    (leaves per tree, minimum rows per leaf) settings tried; ``max_iter`` bounds the trees (early
    stopping on the validation loss picks the number); ``max_items``: products per customer the
    expected-F1 search looks at; ``importance_rows``: validation rows the importances are measured on;
    ``block_users``: customers scored at a time, ``threads`` blocks at once; ``screen_miss``: the share
    of the validation customers' chosen products the scoring screen may lose (:mod:`basket_insights.screen`)."""

    train_users: int = 20_000
    validation_share: float = 0.25
    grid: tuple[tuple[int, int], ...] = ((31, 100), (15, 400))
    learning_rate: float = 0.1
    l2_regularization: float = 1.0
    max_iter: int = 300
    max_items: int = 80
    importance_rows: int = 20_000
    block_users: int = 15_000
    threads: int = 2
    screen_miss: float = 0.001
    seed: int = 0


#: Per customer, what the chance of reordering nothing is learned from (:func:`customer_summary`).
NONE_FEATURES = [
    "log_none_if_independent",
    "sum_probability",
    "max_probability",
    "user_orders",
    "user_reorder_ratio",
    "user_mean_basket",
]


def customer_summary(candidates: pd.DataFrame, probability: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """(customers, :data:`NONE_FEATURES`) from each customer's candidate probabilities and features."""
    probability = np.clip(probability, 0.0, 1.0 - 1e-9)
    first = np.zeros(n_rows, dtype=np.int64)
    present, first_index = np.unique(rows, return_index=True)
    first[present] = first_index
    maximum = np.zeros(n_rows)
    np.maximum.at(maximum, rows, probability)
    return np.column_stack(
        [
            np.bincount(rows, weights=np.log1p(-probability), minlength=n_rows),
            np.bincount(rows, weights=probability, minlength=n_rows),
            maximum,
            *(candidates[c].to_numpy(np.float64)[first] for c in NONE_FEATURES[3:]),
        ]
    )


@dataclass
class ReorderModel:
    """A fitted classifier, the model of the chance of no reorder, and what their fitting measured."""

    model: object  # a fitted lightgbm.LGBMClassifier (basket_insights.boosting)
    features: list[str]
    params: dict
    validation: list[dict] = field(default_factory=list)  # one row per grid setting
    importances: list[dict] = field(default_factory=list)  # feature, importance, importance_std
    training: dict = field(default_factory=dict)
    none_model: object | None = None  # a logistic regression on NONE_FEATURES; None: independence
    screen: Screen | None = None  # scores most candidates with the first trees only

    def probability(self, candidates: pd.DataFrame) -> np.ndarray:
        """Chance of each candidate row being in the customer's next order (every tree for every row)."""
        return boosting.probability(self.model, candidates[self.features].to_numpy(np.float32))

    def screened_probability(self, candidates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's chance and whether it passed :attr:`screen` (only those can be chosen)."""
        return screened_probability(self.model, candidates[self.features].to_numpy(np.float32), self.screen)

    def p_none(self, candidates: pd.DataFrame, probability: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
        """Each customer row's chance of reordering nothing (``None``: as if the products were independent)."""
        if self.none_model is None or n_rows == 0:
            return np.exp(np.bincount(rows, weights=np.log1p(-np.clip(probability, 0, 1 - 1e-9)), minlength=n_rows))
        return self.none_model.predict_proba(customer_summary(candidates, probability, rows, n_rows))[:, 1]


@dataclass
class FrequencyModel:
    """The stand-in when a history is too short to learn from (no customer has a label order with
    both a reorder and a product not reordered): each product's share of the customer's orders."""

    reason: str
    features: list[str] = field(default_factory=lambda: ["up_share"])
    params: dict = field(default_factory=lambda: {"fallback": "share_of_orders"})
    validation: list[dict] = field(default_factory=list)
    importances: list[dict] = field(default_factory=list)
    training: dict = field(default_factory=dict)

    def probability(self, candidates: pd.DataFrame) -> np.ndarray:
        return candidates["up_share"].to_numpy(np.float64)

    def screened_probability(self, candidates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.probability(candidates), np.ones(len(candidates), dtype=bool)

    def p_none(self, candidates: pd.DataFrame, probability: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
        return np.exp(np.bincount(rows, weights=np.log1p(-np.clip(probability, 0, 1 - 1e-9)), minlength=n_rows))


def customer_f1(
    rows: np.ndarray,
    probability: np.ndarray,
    labels: np.ndarray,
    max_items: int,
    p_none: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Per customer of ``rows`` (in the order of ``np.unique(rows)``): the F1 of their expected-F1 set
    (of the ``eligible`` candidates) against ``labels``."""
    codes, dense = np.unique(rows, return_inverse=True)
    rank, per_user = choose_sets(dense, probability, len(codes), max_items, p_none, eligible=eligible)
    return basket_f1(dense, rank > 0, labels, per_user["none_chosen"].to_numpy(), len(codes))


def cheapest_within_noise(f1: list[np.ndarray], cost: list[float]) -> int:
    """The index of the cheapest setting whose mean F1 is within one standard error of the best's
    (the paired difference over the same customers): a costlier model is kept only for a gain the
    validation customers can tell from noise (the "one standard error" rule of model selection)."""
    means = [float(v.mean()) for v in f1]
    best = int(np.argmax(means))
    level = []
    for v in f1:
        diff = f1[best] - v
        level.append(means[best] - float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else means[best])
    close = [i for i in range(len(f1)) if means[i] >= level[i]]
    return min(close, key=lambda i: (cost[i], -means[i]))


def fit_none_model(
    candidates: pd.DataFrame, probability: np.ndarray, labels: np.ndarray, seed: int
) -> tuple[object | None, dict]:
    """A logistic regression of "the customer reorders nothing" on :data:`NONE_FEATURES`, fitted on the
    validation customers (their probabilities come from a model that never trained on them).

    ``None`` (independence) when those customers are all of one kind, or when the fitted chances score
    a worse log loss than independence on them (measured, not assumed: both are in the result).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    codes, rows = np.unique(candidates["row"].to_numpy(np.int64), return_inverse=True)
    x = customer_summary(candidates, probability, rows, len(codes))
    nothing = np.bincount(rows, weights=labels, minlength=len(codes)) == 0
    independent = np.clip(np.exp(x[:, 0]), 1e-9, 1 - 1e-9)
    measured = {"customers": len(codes), "reordered_nothing": int(nothing.sum())}
    if nothing.all() or not nothing.any():
        return None, measured | {"kept": "independence (the customers are all of one kind)"}
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, random_state=seed))
    model.fit(x, nothing)
    # in-sample for the regression, out of sample for the classifier's probabilities it summarises
    fitted = log_loss(nothing, model.predict_proba(x)[:, 1], labels=[False, True])
    plain = log_loss(nothing, independent, labels=[False, True])
    measured |= {"log_loss_model": fitted, "log_loss_independence": plain}
    if fitted >= plain:
        return None, measured | {"kept": "independence"}
    return model, measured | {"kept": "logistic regression"}


def fit_reorder_model(candidates: pd.DataFrame, labels: np.ndarray, settings: ReorderSettings) -> ReorderModel:
    """Fit the grid on ``candidates`` (:data:`FEATURES` and ``row``) with 0/1 ``labels``; keep the cheapest of the best.

    Raises :class:`NothingToLearn` when there is nothing to learn from: no positive or no negative
    candidate among the training customers, or no validation customer.
    """
    from sklearn.inspection import permutation_importance

    started = time.monotonic()
    rows = candidates["row"].to_numpy(np.int64)
    customers = np.unique(rows)
    rng = np.random.default_rng(settings.seed)
    validation = rng.random(len(customers)) < settings.validation_share
    val = np.isin(rows, customers[validation])
    train = ~val
    y = np.asarray(labels, dtype=np.int8)
    if y[train].min(initial=1) == y[train].max(initial=0) or not val.any():
        raise NothingToLearn("the buy-again model needs reordered and not reordered products and validation customers")
    # a feature without two distinct values (no customer with two orders yet, a tiny feed) carries nothing
    features = [f for f in FEATURES if candidates[f].nunique(dropna=True) > 1]
    if not features:
        raise NothingToLearn("no buy-again feature varies over the candidates")
    x = candidates[features].to_numpy(np.float32)
    x_train, x_val = x[train], x[val]
    results, models, scores, val_probabilities = [], [], [], []
    for leaves, min_leaf in settings.grid:
        model = fit_boosted(
            x_train,
            y[train],
            x_val,
            y[val],
            settings,
            leaves=leaves,
            min_rows_per_leaf=min_leaf,
        )
        val_probabilities.append(model.predict_proba(x_val)[:, 1])
        f1 = customer_f1(rows[val], val_probabilities[-1], y[val], settings.max_items)
        row = {
            "max_leaf_nodes": leaves,
            "min_samples_leaf": min_leaf,
            "trees": trees_used(model),
            "validation_f1": float(f1.mean()),
        }
        results.append(row)
        models.append(model)
        scores.append(f1)
        log.info("buy-again model: %s (%.1f s)", row, time.monotonic() - started)
    # the scoring cost of a model: its trees times the length of a path through one (the depth of a
    # balanced tree of that many leaves)
    cost = [r["trees"] * np.log2(r["max_leaf_nodes"]) for r in results]
    kept = cheapest_within_noise(scores, cost)
    model, params = models[kept], results[kept]
    # the screen keeps what the whole model would choose for the validation customers
    codes, dense = np.unique(rows[val], return_inverse=True)
    full_probability = val_probabilities[kept]
    full_rank, _ = choose_sets(dense, full_probability, len(codes), settings.max_items)
    screen, screen_fit = fit_screen(model, x_val, full_probability, full_rank > 0, settings.screen_miss)
    validation_probability, passed = screened_probability(model, x_val, screen)
    none_model, none_fit = fit_none_model(candidates[val], validation_probability, y[val], settings.seed)
    if screen is not None:
        screen_fit["validation_f1"] = float(
            customer_f1(rows[val], validation_probability, y[val], settings.max_items, eligible=passed).mean()
        )
    params = params | {"none_model": none_fit, "screen": screen_fit}
    log.info("buy-again model: chance of no reorder: %s; screen: %s", none_fit, screen_fit)
    shown = np.flatnonzero(val)
    if len(shown) > settings.importance_rows:
        shown = np.sort(rng.choice(shown, settings.importance_rows, replace=False))
    measured = permutation_importance(
        model, x[shown], y[shown], scoring="neg_log_loss", n_repeats=3, random_state=settings.seed
    )
    importances = [
        {"feature": f, "importance": float(m), "importance_std": float(s)}
        for f, m, s in zip(features, measured.importances_mean, measured.importances_std, strict=True)
    ]
    importances.sort(key=lambda r: -r["importance"])
    training = {
        "customers": len(customers),
        "candidates": len(candidates),
        "positives": int(y.sum()),
        "validation_customers": int(validation.sum()),
    }
    log.info("buy-again model: kept %s; %s (%.1f s)", params, training, time.monotonic() - started)
    return ReorderModel(model, features, params, results, importances, training, none_model, screen)
