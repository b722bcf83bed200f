"""A screen in front of a boosted model: score every row with its first trees, the rest only where it matters.

Scoring millions of buy-again candidates is most of what ``predict_reorders`` spends (docs/buy_again.md),
and most candidates are products a customer bought once long ago, whose chance is a few per cent and
which no expected-F1 set picks. A boosted model's raw score is the sum of its trees', so a
:class:`Screen` scores every row with the first ``trees`` trees and adds the remaining trees only for
rows whose partial score reaches ``cut``: those rows get exactly the model's probability, the others
are marked screened out and get the mean probability the whole model gives validation rows of about
their partial score (a few trees' raw score is shrunk towards the prior; the chance of reordering
nothing sums every candidate's chance, so the screened ones need theirs calibrated, not raw).

:func:`fit_screen` learns both from validation rows the model never trained on: for each number of
first trees it tries, the cut is the partial score of the lowest of the rows the caller says must
survive (the products the full model put in a chosen set) once a share ``miss`` of them is allowed
to fall below it, and it keeps the number of trees that scores the fewest trees per row in all.
When no screen is cheaper than the whole model, there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from basket_insights import boosting
from basket_insights.boosting import trees_used

#: Numbers of first trees :func:`fit_screen` tries.
SCREEN_TREES = (4, 8, 16, 32)
#: Quantile bins of the partial score the screened rows' probabilities are calibrated in.
CALIBRATION_BINS = 32


@dataclass(frozen=True)
class Screen:
    """Score every row with the first ``trees`` trees; the rest only where the raw score is ``>= cut``.

    A screened-out row's probability is ``values[i]`` for its partial score in bin ``i`` of ``edges``.
    """

    trees: int
    cut: float
    edges: np.ndarray
    values: np.ndarray

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """The probability of screened-out rows of partial score ``raw``."""
        return self.values[np.searchsorted(self.edges, raw, side="right")]


def screened_probability(model: object, x: np.ndarray, screen: Screen | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's probability and whether it passed ``screen`` (every row with ``screen`` ``None``).

    ``model``: a fitted ``lightgbm.LGBMClassifier`` (:func:`basket_insights.boosting.fit_boosted`).
    Rows that passed have the model's own probability; the others the calibrated chance of their
    partial score (:meth:`Screen.calibrated`).
    """
    if len(x) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    if screen is None:
        return boosting.probability(model, x), np.ones(len(x), dtype=bool)
    x = boosting.compiled_input(x)  # once for both passes
    raw = boosting.raw_score(model, x, trees=screen.trees)
    passed = raw >= screen.cut
    chance = screen.calibrated(raw)
    if passed.any():
        chance[passed] = expit(raw[passed] + boosting.raw_score(model, x[passed], first=screen.trees))
    return chance, passed


def _calibration(raw: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bin edges of ``raw`` and the mean ``probability`` in each bin."""
    if len(raw) == 0:
        return np.zeros(0), np.zeros(1)
    edges = np.unique(np.quantile(raw, np.linspace(0, 1, CALIBRATION_BINS + 1)[1:-1]))
    bins = np.searchsorted(edges, raw, side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    sums = np.bincount(bins, weights=probability, minlength=len(edges) + 1)
    return edges, np.where(counts > 0, sums / np.maximum(counts, 1), probability.mean())


def fit_screen(
    model: object,
    x: np.ndarray,
    probability: np.ndarray,
    keep: np.ndarray,
    miss: float,
    tries: Sequence[int] = SCREEN_TREES,
) -> tuple[Screen | None, dict]:
    """The cheapest :class:`Screen` of ``model`` losing at most a share ``miss`` of the rows in ``keep``.

    ``x``: validation rows; ``probability``: the model's on them; ``keep``: per row, must it survive
    the screen. The cost of a screen is the trees scored per row (``trees + passed share * remaining
    trees``) over the model's trees. Returns the screen (``None``: none is cheaper than the model)
    and what was measured, for ``fit.json``.
    """
    total = trees_used(model)
    keep = np.asarray(keep, dtype=bool)
    measured: dict = {"trees": total, "rows": len(x), "rows_to_keep": int(keep.sum()), "miss": miss, "tried": []}
    best, best_cost, best_raw = None, 1.0, None
    if not keep.any():
        return None, measured | {"kept": "no screen (no row to keep)"}
    for trees in tries:
        if trees >= total:
            break
        raw = model.booster_.predict(x, num_iteration=trees, raw_score=True)
        cut = float(np.quantile(raw[keep], miss, method="lower"))
        passed = float((raw >= cut).mean())
        cost = (trees + passed * (total - trees)) / total
        measured["tried"].append({"trees": trees, "cut": cut, "passed": passed, "cost": cost})
        if cost < best_cost:
            best, best_cost, best_raw = (trees, cut), cost, raw
    if best is None:
        return None, measured | {"kept": "no screen (none is cheaper than the model)"}
    trees, cut = best
    screened = best_raw < cut
    edges, values = _calibration(best_raw[screened], np.asarray(probability, dtype=np.float64)[screened])
    screen = Screen(trees, cut, edges, values)
    return screen, measured | {"kept": {"trees": trees, "cut": cut, "cost": best_cost}}
