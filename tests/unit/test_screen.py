"""The scoring screen: rows that pass get the model's own probability; what must survive does."""

from __future__ import annotations

import numpy as np
import pytest

from basket_insights.boosting import fit_boosted, trees_used
from basket_insights.reorder_model import ReorderSettings
from basket_insights.screen import Screen, fit_screen, screened_probability


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24_000, 4)).astype(np.float32)
    chance = 1 / (1 + np.exp(-(2.5 * x[:, 0] + x[:, 1] - 3.0)))  # most rows unlikely, as buy-again candidates
    y = (rng.random(len(x)) < chance).astype(np.int8)
    train, val = slice(0, 16_000), slice(16_000, None)
    model = fit_boosted(
        x[train], y[train], x[val], y[val], ReorderSettings(max_iter=200), leaves=15, min_rows_per_leaf=50
    )
    return model, x[val]


def test_rows_that_pass_get_exactly_the_models_probability(fitted) -> None:
    model, x = fitted
    full = model.predict_proba(x)[:, 1]
    keep = full >= np.quantile(full, 0.8)
    screen, measured = fit_screen(model, x, full, keep, miss=0.001)
    assert screen is not None and screen.trees < trees_used(model)
    probability, passed = screened_probability(model, x, screen)
    np.testing.assert_allclose(probability[passed], full[passed], rtol=1e-12)
    assert (keep & ~passed).sum() <= 0.001 * keep.sum() + 1  # the lowest kept row sits on the cut
    assert passed.mean() < 0.6  # it screens out a large share of unlikely rows: the point of it
    # screened rows get a calibrated chance near the model's own, not their few trees' raw score
    assert abs(probability[~passed].mean() - full[~passed].mean()) < 0.01
    assert measured["kept"]["cost"] == min(t["cost"] for t in measured["tried"])


def test_no_screen_scores_every_row_with_every_tree(fitted) -> None:
    model, x = fitted
    full = model.predict_proba(x)[:, 1]
    probability, passed = screened_probability(model, x, None)
    np.testing.assert_allclose(probability, full, rtol=1e-12)  # compiled trees: the same sums
    assert passed.all()
    screen, measured = fit_screen(model, x, full, np.zeros(len(x), dtype=bool), miss=0.001)
    assert screen is None and "no row to keep" in measured["kept"]
    # when every row must survive, no screen saves anything
    screen, _ = fit_screen(model, x, full, np.ones(len(x), dtype=bool), miss=0.0)
    assert screen is None


def test_a_screen_on_no_rows_returns_nothing(fitted) -> None:
    model, x = fitted
    screen = Screen(4, 0.0, np.zeros(0), np.zeros(1))
    probability, passed = screened_probability(model, x[:0], screen)
    assert len(probability) == 0 and len(passed) == 0
