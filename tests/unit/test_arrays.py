"""The array idioms equal the library calls they stand in for, on every kind of id they meet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights.arrays import factorize_ids, select_rows, sorted_unique

RNG = np.random.default_rng(11)
IDS = {
    "dense order ids": RNG.integers(1, 5_000, 20_000),
    "int32 user ids": RNG.integers(1, 300, 1_000).astype(np.int32),
    "sparse ids above the dense table's limit": RNG.integers(0, 2**40, 5_000),
    "negative ids": RNG.integers(-50, 50, 1_000),
    "one id": np.array([7]),
    "no ids": np.array([], dtype=np.int64),
}


@pytest.mark.parametrize("name", list(IDS))
def test_factorize_ids_is_a_sorted_pandas_factorize(name: str) -> None:
    ids = IDS[name]
    codes, uniques = factorize_ids(ids)
    expected_codes, expected_uniques = pd.factorize(ids, sort=True)
    assert codes.tolist() == expected_codes.tolist()
    assert uniques.tolist() == np.asarray(expected_uniques).tolist()
    assert uniques.dtype == ids.dtype


@pytest.mark.parametrize("name", list(IDS))
def test_sorted_unique_is_numpy_unique(name: str) -> None:
    ids = IDS[name].copy()
    assert sorted_unique(ids).tolist() == np.unique(ids).tolist()
    assert ids.tolist() == IDS[name].tolist()  # not sorted in place unless asked
    assert sorted_unique(ids, in_place=True).tolist() == np.unique(IDS[name]).tolist()


@pytest.mark.parametrize("columns", [None, ["product_id", "user_id"]])
def test_select_rows_is_pandas_boolean_indexing_with_a_fresh_index(columns: list[str] | None) -> None:
    lines = pd.DataFrame(
        {"user_id": RNG.integers(1, 50, 300), "order_id": RNG.integers(1, 99, 300).astype(np.int32)},
        index=np.arange(300) * 3,  # a frame selected before: its index is not 0..n-1
    )
    lines["product_id"] = RNG.integers(1, 9, 300)
    for mask in (RNG.random(300) < 0.4, np.zeros(300, bool), np.ones(300, bool)):
        expected = lines.loc[mask, columns if columns else list(lines.columns)].reset_index(drop=True)
        pd.testing.assert_frame_equal(select_rows(lines, mask, columns), expected)


def test_select_rows_takes_other_column_types_through_pandas() -> None:
    frame = pd.DataFrame({"name": pd.Series(["a", "b", None], dtype="string"), "n": [1, 2, 3]})
    selected = select_rows(frame, np.array([True, False, True]))
    assert selected["name"].dtype == "string" and selected["name"].tolist()[0] == "a"
    assert selected.index.tolist() == [0, 1]
