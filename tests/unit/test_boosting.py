"""Compiled scoring: the fitted trees compiled by lleaves give LightGBM's own predictions."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from basket_insights import boosting
from basket_insights.boosting import fit_boosted, trees_used
from basket_insights.ranker import RankerSettings


@pytest.fixture(scope="module")
def rows():
    """Rows like the ranker's: a missing-value source score, a categorical segment, a one-way feature."""
    rng = np.random.default_rng(5)
    n = 12_000
    x = np.column_stack(
        [
            np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),  # "this source did not nominate it"
            rng.integers(0, 6, size=n),  # segment code
            rng.exponential(size=n),
        ]
    ).astype(np.float32)
    logit = np.nan_to_num(x[:, 0], nan=-1.0) + 0.8 * (x[:, 1] == 2) + 0.5 * x[:, 2] - 2.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return x, y


@pytest.fixture(scope="module")
def model(rows):
    x, y = rows
    return fit_boosted(
        x[:8000],
        y[:8000],
        x[8000:],
        y[8000:],
        RankerSettings(max_iter=120),
        leaves=15,
        min_rows_per_leaf=40,
        monotone=[0, 0, 1],
        categorical=[1],
    )


def test_compiled_probability_is_lightgbms(model, rows) -> None:
    x, _ = rows
    expected = model.predict_proba(x)[:, 1]
    np.testing.assert_allclose(boosting.probability(model, x), expected, rtol=1e-12, atol=1e-15)
    assert np.isnan(x[:, 0]).any() and trees_used(model) > 10  # the cases that could differ are there


def test_column_ordered_float32_rows_score_as_the_same_rows_in_row_order(model, rows) -> None:
    # a frame's to_numpy() is column-ordered: scored after one conversion, to the same values
    x, _ = rows
    by_column = np.asfortranarray(x)
    assert boosting.compiled_input(by_column).flags.c_contiguous
    np.testing.assert_array_equal(boosting.compiled_input(by_column), x.astype(np.float64))
    np.testing.assert_array_equal(boosting.probability(model, by_column), boosting.probability(model, x))
    row_ordered = boosting.compiled_input(x)
    assert boosting.compiled_input(row_ordered) is row_ordered  # no copy when it already is


def test_ranges_of_trees_add_up_to_the_whole_model(model, rows) -> None:
    x, _ = rows
    whole = model.booster_.predict(x, num_iteration=trees_used(model), raw_score=True)
    first = boosting.raw_score(model, x, trees=4)
    np.testing.assert_allclose(first, model.booster_.predict(x, num_iteration=4, raw_score=True), atol=1e-12)
    np.testing.assert_allclose(first + boosting.raw_score(model, x, first=4), whole, atol=1e-12)


def test_a_pickled_model_scores_the_same_and_no_rows_score_nothing(model, rows) -> None:
    x, _ = rows
    again = pickle.loads(pickle.dumps(model))  # what the tasks store; the compiled code is not in it
    np.testing.assert_array_equal(boosting.probability(again, x), boosting.probability(model, x))
    assert len(boosting.probability(model, x[:0])) == 0 and len(boosting.raw_score(model, x[:0])) == 0
