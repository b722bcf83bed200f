"""The vectorised screen in front of Great Expectations gives exactly GX's findings on every row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights.validation import SCREEN_SAMPLE_ROWS, KnownKeys, _in_set, _isin, validate_frame

ROWS = 5 * SCREEN_SAMPLE_ROWS  # well above the sample, so the screen does the work
DAYS = (740_000, 740_001)  # two drops in one batch


def _clean(table: str, rng: np.random.Generator) -> tuple[pd.DataFrame, KnownKeys]:
    n = ROWS
    day = np.repeat(np.array(DAYS, dtype=np.int64), [n // 2, n - n // 2])
    ids = np.arange(1, n + 1, dtype=np.int64)
    if table == "orders":
        number = rng.integers(1, 40, n)
        frame = {
            "order_id": ids,
            "user_id": rng.integers(1, 500, n),
            "eval_set": rng.choice(["prior", "train", "test"], n).astype(object),
            "order_number": number,
            "order_dow": rng.integers(0, 7, n),
            "order_hour_of_day": rng.integers(0, 24, n),
            "days_since_prior_order": np.where(number == 1, np.nan, rng.integers(0, 31, n).astype(float)),
        }
        known = KnownKeys()
    elif table == "order_products":
        orders = np.sort(rng.integers(1, 400, n))  # lines come grouped by order, as in real drops
        frame = {
            "order_id": orders,
            "product_id": ids,  # (order, product) unique
            "add_to_cart_order": rng.integers(1, 30, n),
            "reordered": rng.integers(0, 2, n),
        }
        known = KnownKeys(
            order_ids=np.concatenate([(d << 32) | np.arange(1, 400, dtype=np.int64) for d in DAYS]),
            product_ids=ids,
        )
    else:  # products
        frame = {
            "product_id": ids,
            "product_name": np.array([f"product {i}" for i in ids], dtype=object),
            "aisle_id": rng.integers(1, 50, n),
            "department_id": rng.integers(1, 10, n),
        }
        known = KnownKeys(aisle_ids=np.arange(1, 50), department_ids=np.arange(1, 10))
    df = pd.DataFrame({"line": np.arange(n, dtype=np.int64), **frame, "drop_day": day})
    return df, known


def _corrupt(table: str, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Break ~3% of rows, each in one of the ways the suite of ``table`` catches (and a few it allows)."""
    df = df.copy()
    columns = [c for c in df.columns if c not in ("line", "drop_day")]
    for row in rng.choice(len(df), len(df) // 30, replace=False):
        column = columns[rng.integers(len(columns))]
        numeric = df[column].dtype.kind in "iuf"
        how = rng.integers(4)
        if how == 0:  # null
            if df[column].dtype.kind in "iu":
                df[column] = df[column].astype(float)
            df.loc[row, column] = np.nan if numeric else None
        elif how == 1 and numeric:  # out of range (or unknown key)
            df.loc[row, column] = rng.choice([-1, 0, 7, 24, 31, 99, 10**6])
        elif how == 2:  # a duplicate key: copy an earlier row's value (same drop or the other one)
            df.loc[row, column] = df.loc[rng.integers(len(df)), column]
        elif not numeric:
            df.loc[row, column] = rng.choice(["PRIOR", "", "x"])
    return df


@pytest.mark.parametrize("table", ["orders", "order_products", "products"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screened_validation_finds_exactly_what_gx_finds_on_every_row(table: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    df, known = _clean(table, rng)
    df = _corrupt(table, df, rng)
    everything = validate_frame(table, df, known, screen=False)
    screened = validate_frame(table, df, known, screen=True)
    assert everything.rows_gx == len(df) and screened.rows_gx < len(df) / 2
    assert len(everything.bad_reasons) > len(df) // 200  # the corruption was caught at all
    assert screened.bad_reasons == everything.bad_reasons
    assert screened.table_failures == everything.table_failures == []


def test_keys_need_only_be_unique_within_their_drop() -> None:
    df, known = _clean("orders", np.random.default_rng(0))
    first = df["drop_day"] == DAYS[0]
    df.loc[~first, "order_id"] = df.loc[first, "order_id"].to_numpy()[: int((~first).sum())]
    outcome = validate_frame("orders", df, known)
    assert outcome.bad_reasons == {}
    one_drop = validate_frame("orders", df.drop(columns="drop_day"), known)
    assert len(one_drop.bad_reasons) == int((~first).sum())
    assert all("order_id_is_unique" in why for why in one_drop.bad_reasons.values())


@pytest.mark.parametrize(
    ("values", "value_set"),
    [
        (pd.Series([True, False, True]), [True]),
        (pd.Series([True, False, True]), [False]),
        (pd.Series([True, False, True]), [True, False]),
        (pd.Series([True, False, True]), []),
        (pd.Series([0, 1, 2, -1, 1]), [0, 1]),
        (pd.Series([0, 1, 2, -1, 1]), [7]),
        (pd.Series([0, 1, 2, -1, 1]), [1.0]),
        (pd.Series([0, 1, 2, -1, 1]), []),
        (pd.Series([0.0, 1.0, 2.5]), [0, 1]),
        (pd.Series(["prior", "train", "x"]), ["prior", "train", "test"]),
    ],
)
def test_in_set_screen_is_pandas_isin(values: pd.Series, value_set: list) -> None:
    assert _in_set(values, value_set).tolist() == values.isin(value_set).tolist()


def test_key_lookup_is_pandas_isin_with_and_without_runs() -> None:
    rng = np.random.default_rng(3)
    allowed = rng.integers(0, 60, 30)
    for values in (np.sort(rng.integers(0, 80, 2_000)), rng.integers(0, 80, 2_000), np.array([5]), np.array([], int)):
        series = pd.Series(values)
        assert _isin(series, allowed).tolist() == series.isin(allowed).tolist()
    assert not _isin(pd.Series([1, 1, 2]), None).any()
