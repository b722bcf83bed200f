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

:func:`probability` and :func:`raw_score` score rows with the fitted trees compiled to machine code by
`lleaves <https://github.com/siboehm/lleaves>`_ (LLVM): about 6.5× faster than LightGBM's own
prediction on these models (measured on the full-scale feed: 0.14 s against 0.91 s per 540,000 ranker
rows on one core, 0.15 s against 1.03 s per 600,000 buy-again rows), the same values to within 1e-14.
Each model is compiled once per process, on first use (0.4 s for the ranker's 127 trees of 7 leaves,
2.3 s for buy again's 113 trees of 31), and kept beside it, not in its pickle.
"""

from __future__ import annotations

import tempfile
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
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


# model -> {(first tree, trees, raw): compiled lleaves.Model}; compiled on first use, dropped with the model
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COMPILING = threading.Lock()


def _compiled(model: object, first: int, trees: int, raw: bool) -> object:
    with _COMPILING:
        forms = _COMPILED.setdefault(model, {})
        if (first, trees, raw) not in forms:
            import lleaves

            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.txt"
                model.booster_.save_model(str(path), start_iteration=first, num_iteration=trees)
                compiled = lleaves.Model(model_file=str(path))
                compiled.compile(raw_score=raw)
            forms[first, trees, raw] = compiled
        return forms[first, trees, raw]


def compiled_input(x: np.ndarray) -> np.ndarray:
    """``x`` as the compiled trees read it: C-ordered float64 (no copy when it already is).

    lleaves converts anything else itself in two copies (a cast, then a ravel that transposes a
    frame's column-ordered ``to_numpy``), several times slower than this one pass: buy again's
    system CPU fell from 21-24 s to 14 s (docs/benchmarks.md). Convert once when rows are scored twice."""
    return np.ascontiguousarray(x, dtype=np.float64)


def probability(model: object, x: np.ndarray) -> np.ndarray:
    """The positive class's probability of each row of ``x`` under the fitted ``model`` (its best trees)."""
    if len(x) == 0:
        return np.zeros(0)
    return _compiled(model, 0, trees_used(model), raw=False).predict(compiled_input(x))


def raw_score(model: object, x: np.ndarray, *, first: int = 0, trees: int | None = None) -> np.ndarray:
    """The summed leaf values (log-odds) of ``trees`` trees of ``model`` from tree ``first`` (default: the rest
    of its best trees) for each row of ``x``; scores of consecutive ranges add up to the whole model's."""
    trees = trees_used(model) - first if trees is None else trees
    if len(x) == 0:
        return np.zeros(0)
    return _compiled(model, first, trees, raw=True).predict(compiled_input(x))
