"""Replay a Kaggle Instacart snapshot as daily landing drops.

The snapshot has no dates, only each order's ``days_since_prior_order``. Dates are derived so
that they agree with it exactly:

1. For each user, walk their orders by ``order_number`` and add up the gaps
   (``days_since_prior_order``, empty for the first order) to get each order's day offset
   from the user's first order, and the user's span (the last order's offset).
2. The user's last order is placed on ``end_date - (hash(user_id) mod 30)``: users' last orders
   are spread deterministically over the final 30 days (Kaggle's train/test orders are each
   user's latest, taken at different times).
3. Every order's date is ``last_date - (span - offset)``; so consecutive orders of a user are
   exactly ``days_since_prior_order`` days apart.

Each order's lines (``order_products__prior.csv`` and ``__train.csv``) go to the drop of the
order's date. Kaggle's ``test`` orders have no lines. The catalog is delivered on the first date.
Every date from the first order to ``end_date`` gets a drop (header only when empty).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from basket_insights.lake import Lake
from basket_insights.synth import DailyRows, load_catalog, write_daily_drops

log = logging.getLogger(__name__)

SPREAD_DAYS = 30


def _read_csv(path: Path, types: dict[str, pa.DataType]) -> pd.DataFrame:
    skipped: list[str] = []

    def skip(row: pcsv.InvalidRow) -> str:
        skipped.append(row.text)
        return "skip"

    table = pcsv.read_csv(
        path,
        parse_options=pcsv.ParseOptions(invalid_row_handler=skip),
        convert_options=pcsv.ConvertOptions(column_types=types),
    )
    if skipped:
        log.warning("replay: %s: skipped %d malformed row(s), e.g. %r", path, len(skipped), skipped[0])
    return table.to_pandas()


def derive_order_dates(orders: pd.DataFrame, end_date: str, spread_days: int = SPREAD_DAYS) -> pd.Series:
    """Calendar date of every order (see the module docstring); index aligned with ``orders``."""
    frame = orders[["user_id", "order_number", "days_since_prior_order"]].copy()
    frame["gap"] = frame["days_since_prior_order"].fillna(0).astype(np.int64)
    frame = frame.sort_values(["user_id", "order_number"], kind="stable")
    frame["offset"] = frame.groupby("user_id")["gap"].cumsum()
    span = frame.groupby("user_id")["offset"].transform("max")
    user = frame["user_id"].to_numpy(np.uint64)
    # Knuth's multiplicative hash: a fixed, well-spread day for each user's last order.
    shift = ((user * np.uint64(2654435761)) % np.uint64(2**32)) % np.uint64(spread_days)
    back = shift.astype(np.int64) + (span - frame["offset"]).to_numpy(np.int64)
    dates = np.datetime64(end_date, "D") - back.astype("timedelta64[D]")
    return pd.Series(dates, index=frame.index).reindex(orders.index)


def replay(source: str | Path, lake: Lake, *, end_date: str) -> dict:
    """Write the Kaggle files in ``source`` as daily landing drops ending ``end_date``.

    Needs ``orders.csv`` and the catalog files; ``order_products__prior.csv`` and
    ``order_products__train.csv`` are used when present.
    """
    started = time.monotonic()
    source = Path(source)
    if not (source / "orders.csv").is_file():
        raise FileNotFoundError(f"{source}/orders.csv not found: replay needs the Kaggle orders file")
    catalog_dir = source if (source / "products.csv").is_file() else None
    if catalog_dir is None:
        raise FileNotFoundError(f"{source} has no products.csv / aisles.csv / departments.csv")
    catalog = load_catalog(catalog_dir)
    orders = _read_csv(
        source / "orders.csv",
        {"order_id": pa.int64(), "user_id": pa.int64(), "eval_set": pa.string(), "order_number": pa.int64(),
         "order_dow": pa.int64(), "order_hour_of_day": pa.int64(), "days_since_prior_order": pa.float64()},
    )  # fmt: skip
    line_types = {"order_id": pa.int64(), "product_id": pa.int64(), "add_to_cart_order": pa.int64(),
                  "reordered": pa.int64()}  # fmt: skip
    parts = [
        _read_csv(source / name, line_types)
        for name in ("order_products__prior.csv", "order_products__train.csv")
        if (source / name).is_file()
    ]
    lines = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in line_types})
    known = lines["order_id"].isin(orders["order_id"])
    if not known.all():
        log.warning("replay: %d order line(s) refer to orders missing from orders.csv; not delivered", (~known).sum())
        lines = lines[known]
    orders["order_date"] = derive_order_dates(orders, end_date)
    first_date = str(orders["order_date"].min().date()) if len(orders) else end_date
    log.info(
        "replay: %d orders of %d users, %d lines, dates %s..%s (%.1f s)",
        len(orders),
        orders["user_id"].nunique(),
        len(lines),
        first_date,
        end_date,
        time.monotonic() - started,
    )
    days = DailyRows.of(orders, lines, first_date=first_date, last_date=end_date)
    summary = write_daily_drops(lake, [days], catalog, first_date=first_date, last_date=end_date)
    summary["users"] = int(orders["user_id"].nunique())
    summary["last_date"] = end_date
    return summary
