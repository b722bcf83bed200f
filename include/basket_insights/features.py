"""Per-user behaviour features as of a date, from the bronze orders and order lines ``<= ds``.

Features (one row per user who ordered on or before ``ds``):

==========================  ===========================================================
``total_orders``            orders placed (all eval sets)
``first_order_date``        date of the user's first order in the lake
``last_order_date``         date of the user's latest order ``<= ds``
``days_since_last_order``   ``ds - last_order_date`` in days
``tenure_days``             ``ds - first_order_date + 1``
``orders_per_30_days``      ``total_orders * 30 / max(tenure_days, 30)`` (floored tenure keeps
                            brand-new users from looking hyperactive)
``mean_days_between``       mean of ``days_since_prior_order`` (Instacart caps it at 30);
                            null for a user with a single order
``std_days_between``        population standard deviation of the same; null for < 2 gaps
``total_items``             order lines bought
``mean_basket_size``        order lines per order that has lines
``reorder_ratio``           share of lines that are reorders (``reordered == 1``)
``distinct_products``       distinct products bought
``weekend_share``           share of orders with ``order_dow`` in {0, 1} (Instacart's days
                            0 and 1 are the busiest, taken to be Saturday and Sunday)
``mean_order_hour``         mean ``order_hour_of_day``
==========================  ===========================================================
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from basket_insights.arrays import factorize_ids, select_rows, sorted_unique
from basket_insights.lake import Lake

log = logging.getLogger(__name__)

FEATURE_COLUMNS = [
    "total_orders",
    "days_since_last_order",
    "tenure_days",
    "orders_per_30_days",
    "mean_days_between",
    "std_days_between",
    "total_items",
    "mean_basket_size",
    "reorder_ratio",
    "distinct_products",
    "weekend_share",
    "mean_order_hour",
]


def compute_user_features(orders: pd.DataFrame, lines: pd.DataFrame, ds: str) -> pd.DataFrame:
    """Compute the per-user features.

    Parameters
    ----------
    orders:
        Columns ``order_id, user_id, order_number, order_dow, order_hour_of_day,
        days_since_prior_order, order_date`` (``order_date`` a ``datetime64`` day).
    lines:
        Columns ``order_id, product_id, reordered``; lines of unknown orders are ignored.
    ds:
        The as-of date (ISO).

    Returns
    -------
    pandas.DataFrame
        One row per user, sorted by ``user_id``: ``user_id``, the dates and :data:`FEATURE_COLUMNS`.
    """
    as_of = pd.Timestamp(date.fromisoformat(ds))
    if orders.empty:
        return pd.DataFrame(columns=["user_id", "first_order_date", "last_order_date", *FEATURE_COLUMNS])
    user_codes, users = factorize_ids(orders["user_id"].to_numpy())
    n_users = len(users)
    total_orders = np.bincount(user_codes, minlength=n_users)
    dates = orders["order_date"].to_numpy("datetime64[D]")
    first = pd.Series(dates).groupby(user_codes).min().to_numpy().astype("datetime64[D]")
    last = pd.Series(dates).groupby(user_codes).max().to_numpy().astype("datetime64[D]")
    today = as_of.to_datetime64().astype("datetime64[D]")
    days_since_last = (today - last).astype(np.int64)
    tenure = (today - first).astype(np.int64) + 1
    gaps = orders["days_since_prior_order"].to_numpy(np.float64)
    has_gap = ~np.isnan(gaps)
    gaps_by_user = pd.Series(gaps[has_gap]).groupby(user_codes[has_gap])
    with_gaps = gaps_by_user.size().index.to_numpy()
    mean_gap = np.full(n_users, np.nan)
    std_gap = np.full(n_users, np.nan)
    mean_gap[with_gaps] = gaps_by_user.mean().to_numpy()
    # population std; undefined for fewer than two gaps
    std_gap[with_gaps] = np.where(gaps_by_user.size() >= 2, gaps_by_user.std(ddof=0), np.nan)
    weekend = np.bincount(user_codes, weights=orders["order_dow"].isin([0, 1]).to_numpy(np.float64), minlength=n_users)
    hours = np.bincount(user_codes, weights=orders["order_hour_of_day"].to_numpy(np.float64), minlength=n_users)

    # Map each line to its user through a dense order_id -> user code lookup.
    order_ids = orders["order_id"].to_numpy(np.int64)
    line_orders = lines["order_id"].to_numpy(np.int64)
    lookup = np.full(max(int(order_ids.max()), int(line_orders.max(initial=0))) + 1, -1, dtype=np.int64)
    lookup[order_ids] = user_codes
    line_users = lookup[line_orders]
    products = lines["product_id"].to_numpy(np.int64)
    reordered = lines["reordered"].to_numpy() == 1
    known = line_users >= 0
    if not known.all():  # lines of unknown orders: copies only then
        line_users, line_orders, products, reordered = (
            a[known] for a in (line_users, line_orders, products, reordered)
        )
    items = np.bincount(line_users, minlength=n_users)
    reorders = np.bincount(line_users[reordered], minlength=n_users)
    has_lines = np.zeros(len(lookup), dtype=bool)
    has_lines[line_orders] = True
    orders_with_lines = np.bincount(lookup[has_lines], minlength=n_users)
    pairs = (line_users << 32) | products
    del products, reordered
    distinct = np.bincount(sorted_unique(pairs, in_place=True) >> 32, minlength=n_users)

    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame(
            {
                "user_id": users.astype(np.int32),
                "first_order_date": first,
                "last_order_date": last,
                "total_orders": total_orders.astype(np.int32),
                "days_since_last_order": days_since_last.astype(np.int32),
                "tenure_days": tenure.astype(np.int32),
                "orders_per_30_days": total_orders * 30.0 / np.maximum(tenure, 30),
                "mean_days_between": mean_gap,
                "std_days_between": std_gap,
                "total_items": items.astype(np.int32),
                "mean_basket_size": np.where(orders_with_lines > 0, items / np.maximum(orders_with_lines, 1), np.nan),
                "reorder_ratio": np.where(items > 0, reorders / np.maximum(items, 1), np.nan),
                "distinct_products": distinct.astype(np.int32),
                "weekend_share": weekend / total_orders,
                "mean_order_hour": hours / total_orders,
            }
        )
    return out


#: The ``orders`` columns the features need.
ORDER_COLUMNS = ["order_id", "user_id", "order_number", "order_dow", "order_hour_of_day", "days_since_prior_order"]


def orders_frame(orders: pa.Table) -> pd.DataFrame:
    """Orders read ``with_ds`` as :func:`compute_user_features` takes them (``order_date`` from ``ds``)."""
    frame = orders.to_pandas()
    frame["order_date"] = pd.to_datetime(frame.pop("ds"))
    return frame


def user_features_as_of(lake: Lake, ds: str) -> tuple[pd.DataFrame, int, int]:
    """:func:`compute_user_features` over the bronze orders and lines ``<= ds``; also the rows read."""
    started = time.monotonic()
    orders_tbl = lake.read_table("bronze", "orders", up_to=ds, columns=ORDER_COLUMNS, with_ds=True)
    lines_tbl = lake.read_table("bronze", "order_products", up_to=ds, columns=["order_id", "product_id", "reordered"])
    log.info(
        "features ds=%s: read %d orders and %d order lines in %.1f s",
        ds,
        orders_tbl.num_rows,
        lines_tbl.num_rows,
        time.monotonic() - started,
    )
    features = compute_user_features(orders_frame(orders_tbl), lines_tbl.to_pandas(), ds)
    return features, orders_tbl.num_rows, lines_tbl.num_rows


_INTEGER_FEATURES = {"total_orders", "days_since_last_order", "tenure_days", "total_items", "distinct_products"}
#: The columns and types of ``silver/user_features`` (every shard's part has them, empty or not).
USER_FEATURES_SCHEMA = pa.schema(
    [
        ("user_id", pa.int32()),
        ("first_order_date", pa.date32()),
        ("last_order_date", pa.date32()),
        *((c, pa.int32() if c in _INTEGER_FEATURES else pa.float64()) for c in FEATURE_COLUMNS),
    ]
)


def features_table(features: pd.DataFrame) -> pa.Table:
    """:func:`compute_user_features`'s frame as ``silver/user_features`` stores it (dates as ``date32``)."""
    table = pa.Table.from_pandas(features, preserve_index=False)
    for column in ("first_order_date", "last_order_date"):
        table = table.set_column(
            table.schema.get_field_index(column), column, table.column(column).cast(pa.timestamp("s")).cast(pa.date32())
        )
    return table.cast(USER_FEATURES_SCHEMA)


def shard_user_features(lake_url: str, conn_id: str | None, ds: str, shards: int, shard: int) -> dict:
    """One user shard's features as of ``ds`` from its history shard
    (:mod:`basket_insights.user_shards`), written as an uncommitted part of ``silver/user_features``.

    Takes the lake's URL and connection id (not a ``Lake``) so that it runs on a Dask worker too.
    """
    from basket_insights.user_shards import read_shard_lines, read_shard_orders

    lake = Lake(lake_url, conn_id)
    orders_tbl = read_shard_orders(lake, ds, shard, shards, columns=ORDER_COLUMNS, with_ds=True)
    lines_tbl = read_shard_lines(lake, ds, shard, shards, columns=["order_id", "product_id", "reordered"])
    features = compute_user_features(orders_frame(orders_tbl), lines_tbl.to_pandas(), ds)
    part = lake.write_part("silver", "user_features", ds, features_table(features))
    return {"part": part, "rows": len(features), "orders": orders_tbl.num_rows, "order_lines": lines_tbl.num_rows}


def build_user_features(
    lake: Lake, ds: str, *, shards: int = 1, dask_address: str | None = None, run_id: str = ""
) -> dict:
    """Compute :func:`compute_user_features` as of ``ds`` and commit ``silver/user_features/ds``.

    With one shard, from the bronze tables in this process; with more, each user shard from its
    history shard (:func:`shard_user_features`, mapped by :func:`basket_insights.shard_map.map_shards`:
    here one after another, or on the Dask scheduler at ``dask_address``), the parts committed
    together. The rows are the same either way; with shards, in shard order (each part by user).

    Returns
    -------
    dict
        ``users``, ``orders``, ``order_lines`` counted and the partition written.
    """
    started = time.monotonic()
    if shards == 1:
        features, n_orders, n_lines = user_features_as_of(lake, ds)
        table = features_table(features)
        lake.write_table("silver", "user_features", ds, table, run_id=run_id)
        users = table.num_rows
    else:
        from functools import partial

        from basket_insights.shard_map import map_shards

        work = partial(shard_user_features, lake.url, lake.conn_id, ds, shards)
        done = map_shards(work, shards, label=f"build_features ds={ds}", address=dask_address)
        users, n_orders, n_lines = (sum(d[k] for d in done) for k in ("rows", "orders", "order_lines"))
        parts = [d["part"] for d in done]
        lake.commit_parts("silver", "user_features", ds, parts, users, USER_FEATURES_SCHEMA, run_id=run_id)
    log.info("build_features ds=%s: %d users with features in %.1f s", ds, users, time.monotonic() - started)
    return {
        "rows_in": n_orders + n_lines,
        "rows_out": users,
        "users": users,
        "orders": n_orders,
        "order_lines": n_lines,
        "shards": shards,
        "partition": lake.display(lake.partition("silver", "user_features", ds)),
    }


@dataclass
class History:
    """Order lines as of a date: one row per line with ``user_id, order_id, order_number, product_id``."""

    lines: pd.DataFrame


def load_history(
    lake: Lake, ds: str, *, cart_and_day: bool = False, shard: int | None = None, shards: int = 1
) -> History:
    """Every order line ``<= ds`` with its user and order number; with ``cart_and_day`` also its cart
    position (``add_to_cart_order``) and its order's ``day`` (days since 1970-01-01), for buy again.

    With ``shard``, only the lines of that user shard of ``shards``, from its history shard
    (:mod:`basket_insights.user_shards`) instead of the bronze tables.
    """
    order_columns = ["order_id", "user_id", "order_number"]
    line_columns = ["order_id", "product_id", *(["add_to_cart_order"] if cart_and_day else [])]
    if shard is None:
        orders = lake.read_table("bronze", "orders", up_to=ds, with_ds=cart_and_day, columns=order_columns)
        lines = lake.read_table("bronze", "order_products", up_to=ds, columns=line_columns)
    else:
        from basket_insights.user_shards import read_shard_lines, read_shard_orders

        orders = read_shard_orders(lake, ds, shard, shards, columns=order_columns, with_ds=cart_and_day)
        lines = read_shard_lines(lake, ds, shard, shards, columns=line_columns)
    order_ids = orders.column("order_id").to_numpy()
    line_orders = lines.column("order_id").to_numpy()
    size = int(max(order_ids.max(initial=0), line_orders.max(initial=0))) + 1
    user_of = np.full(size, -1, dtype=np.int64)
    number_of = np.zeros(size, dtype=np.int32)
    user_of[order_ids] = orders.column("user_id").to_numpy()
    number_of[order_ids] = orders.column("order_number").to_numpy()
    columns = {
        "user_id": user_of[line_orders],
        "order_id": line_orders,
        "order_number": number_of[line_orders],
        "product_id": lines.column("product_id").to_numpy().astype(np.int64),
    }
    if cart_and_day:
        day_of = np.zeros(size, dtype=np.int32)
        # Arrow parses the ISO dates in C++; date32 is already days since the epoch
        day_of[order_ids] = pc.cast(orders.column("ds"), pa.date32()).cast(pa.int32()).to_numpy()
        columns["add_to_cart_order"] = lines.column("add_to_cart_order").to_numpy().astype(np.int32)
        columns["day"] = day_of[line_orders]
    del orders, lines
    # fresh arrays: a copy would hold the history twice for a moment (~0.9 GB at 1x)
    frame = pd.DataFrame(columns, copy=False)
    orphans = frame["user_id"].to_numpy() < 0
    return History(select_rows(frame, ~orphans) if orphans.any() else frame)
