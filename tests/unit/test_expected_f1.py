"""The Instacart F1 of a basket and the expected-F1 choice, against brute force over every subset."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from basket_insights.expected_f1 import basket_f1, choose_sets, expected_f1_table


def brute_force(p: np.ndarray) -> tuple[float, set[int], bool]:
    """The best (expected F1, products, None chosen) over every subset and both None choices, by
    summing the F1 of every outcome of independent products."""
    n = len(p)
    outcomes = list(itertools.product([0, 1], repeat=n))
    weights = np.array([np.prod([q if o else 1 - q for q, o in zip(p, out, strict=True)]) for out in outcomes])
    best = (-1.0, set(), False)
    for size in range(n + 1):
        for chosen in itertools.combinations(range(n), size):
            for none in (False, True):
                if size == 0 and not none:
                    continue
                value = 0.0
                for out, weight in zip(outcomes, weights, strict=True):
                    true = {i for i in range(n) if out[i]}
                    hits = len(true & set(chosen)) + (none and not true)
                    value += weight * 2 * hits / (size + none + max(len(true), 1))
                if value > best[0] + 1e-12:
                    best = (value, set(chosen), none)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_the_chosen_set_is_the_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    p = rng.random(n) ** rng.uniform(0.3, 3.0)  # from all-likely to all-unlikely baskets
    value, chosen, none = brute_force(p)
    rank, per_user = choose_sets(np.zeros(n, dtype=np.int64), p, 1)
    assert per_user["expected_f1"][0] == pytest.approx(value, abs=1e-9)
    assert set(np.flatnonzero(rank)) == chosen and bool(per_user["none_chosen"][0]) == none
    assert sorted(rank[rank > 0]) == list(range(1, len(chosen) + 1))


def test_none_alone_when_nothing_is_likely_and_never_when_something_surely_is() -> None:
    rows = np.array([0, 0, 1, 1, 1])
    rank, per_user = choose_sets(rows, np.array([0.01, 0.02, 0.99, 0.95, 0.9]), 2)
    assert rank[:2].tolist() == [0, 0] and per_user["none_chosen"][0]
    assert rank[2:].tolist() == [1, 2, 3] and not per_user["none_chosen"][1]
    assert per_user["p_none"][0] == pytest.approx(0.99 * 0.98)


def test_a_customer_without_candidates_gets_none_and_blocks_are_independent() -> None:
    rng = np.random.default_rng(3)
    rows = np.repeat(np.array([0, 2, 3, 4]), 5)  # customer 1 has no candidate
    p = rng.random(len(rows))
    rank, per_user = choose_sets(rows, p, 5, block=2)
    whole_rank, whole = choose_sets(rows, p, 5)
    assert per_user["none_chosen"][1] and per_user["chosen"][1] == 0 and per_user["expected_f1"][1] == 1.0
    np.testing.assert_array_equal(rank, whole_rank)
    np.testing.assert_allclose(per_user["expected_f1"], whole["expected_f1"])


def test_a_given_chance_of_nothing_moves_the_choice_towards_none() -> None:
    p = np.array([0.6, 0.5, 0.4])  # independent: nothing reordered 12 % of the time
    _, independent = choose_sets(np.zeros(3, dtype=np.int64), p, 1)
    _, told = choose_sets(np.zeros(3, dtype=np.int64), p, 1, p_none=np.array([0.6]))
    assert not independent["none_chosen"][0] and independent["p_none"][0] == pytest.approx(0.12)
    assert told["none_chosen"][0] and told["p_none"][0] == 0.6


def test_basket_f1_scores_none_as_the_competition_did() -> None:
    # customer 0: chose {1, 2}, bought {2, 3}: F1 0.5; customer 1: chose None, bought nothing: 1;
    # customer 2: chose {4} and None, bought nothing: 2·1/(2+1); customer 3: chose {5}, bought nothing: 0
    rows = np.array([0, 0, 0, 2, 3])
    chosen = np.array([1, 1, 0, 1, 1], bool)
    bought = np.array([0, 1, 1, 0, 0], bool)
    f1 = basket_f1(rows, chosen, bought, np.array([False, True, True, False]), 4)
    np.testing.assert_allclose(f1, [0.5, 1.0, 2 / 3, 0.0])


def test_products_left_out_of_the_table_still_count_as_reorders_past_it() -> None:
    rng = np.random.default_rng(0)
    p = np.sort(rng.beta(0.3, 3, size=(5, 60)), axis=1)[:, ::-1]
    nothing = np.prod(1 - p, axis=1)
    exact, exact_none = expected_f1_table(p, nothing)
    cut, _ = expected_f1_table(p[:, :20], nothing)
    tail, tail_none = expected_f1_table(p[:, :20], nothing, p[:, 20:].sum(axis=1))
    # leaving them out overstates every top-k; a Poisson count of the same mean is within 1e-3
    assert np.abs(exact[:, :21] - cut).max() > 0.02
    np.testing.assert_allclose(tail, exact[:, :21], atol=1e-3)
    np.testing.assert_allclose(tail_none, exact_none[:, :21], atol=1e-3)
