"""The gradient-boosted classifier both learned models use: LightGBM, fitted with early stopping.

The recommendations' ranker (:mod:`basket_insights.ranker`) and the buy-again model
(:mod:`basket_insights.reorder_model`) both learn "this product is in the customer's next order"
from a few hundred thousand to a few million candidate rows, and score millions of rows every run.
`LightGBM <https://lightgbm.readthedocs.io/>`_ fits and predicts the same trees about twice as
fast as scikit-learn's ``HistGradientBoostingClassifier`` on these rows, at the same validation
quality (measured on the full-scale feed, docs/buy_again.md), and handles what the rows need
natively: missing values ("this source did not nominate the product", "bought once: no interval"),
a categorical segment, and monotone constraints.

:func:`fit_boosted` is the one place the model is configured: leaves, minimum rows per leaf, L2 on
the leaf values, the learning rate, early stopping after :data:`PATIENCE` rounds without a better
validation log loss. Deterministic for ``seed`` on a given machine (LightGBM's ``deterministic``
mode, row-wise histograms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

#: Trees without a better validation log loss before the fit stops.
PATIENCE = 20


class BoostingSettings(Protocol):
    """What :func:`fit_boosted` takes from a model's settings (``RankerSettings``, ``ReorderSettings``)."""

    learning_rate: float
    l2_regularization: float
    max_iter: int  # bounds the trees; early stopping picks the number
    seed: int


def fit_boosted(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    settings: BoostingSettings,
    *,
    leaves: int,
    min_rows_per_leaf: int,
    monotone: Sequence[int] | None = None,
    categorical: Sequence[int] = (),
) -> object:
    """A fitted ``lightgbm.LGBMClassifier`` whose predictions use the trees up to the best validation loss.

    ``monotone``: per column ``1`` (the chance only rises with it), ``-1`` or ``0``; ``categorical``:
    the indices of integer-coded categorical columns.
    """
    import lightgbm

    model = lightgbm.LGBMClassifier(
        n_estimators=settings.max_iter,
        learning_rate=settings.learning_rate,
        num_leaves=leaves,
        min_child_samples=min_rows_per_leaf,
        reg_lambda=settings.l2_regularization,
        monotone_constraints=list(monotone) if monotone is not None else None,
        random_state=settings.seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    model.fit(
        x_train,
        y_train,
        eval_X=(x_val,),
        eval_y=(y_val,),
        categorical_feature=list(categorical) if categorical else "auto",
        callbacks=[lightgbm.early_stopping(PATIENCE, verbose=False)],
    )
    return model


def trees_used(model: object) -> int:
    """How many trees the fitted model predicts with (the best iteration of its early stopping)."""
    return int(model.best_iteration_ or model.n_estimators)
