"""The order history kept in user shards, so that a step can read one shard's customers at a time.

Every customer belongs to one of ``shards`` shards (:func:`shard_of`: a fixed hash of the user id,
the same in every process, machine and release). For each shard the silver zone holds the bronze
``orders`` and ``order_products`` of its customers, partitioned by date like bronze:

``silver/orders.shard-K-of-N/ds=D/`` and ``silver/order_products.shard-K-of-N/ds=D/``

(the lines with their order's ``user_id``). :func:`refresh_shards` keeps them in step with bronze:
it splits every date ``<= ds`` whose bronze partitions changed since it was last split (a drop
ingested for the first time, re-ingested or corrected), so point-in-time reads (``up_to=ds``) and
re-runs of one date read the same history as the bronze tables do. A date is split in one pass:
the shards' orders, then their lines, shard by shard; the last lines partition written records
which bronze files it came from, so a pass killed half-way is simply done again by the next run.

A step reads its shard's history several times (once per pass), and a year is hundreds of small
daily files: so :func:`refresh_shards` also keeps each shard's history in two files a date
(:func:`compact_shard`), so that a daily run rewrites about a month of it, not all of it:

- ``silver/orders.shard-K-of-N.history/ds=B/``: every day ``<= B``, where ``B`` is the last date of a
  month (the last daily partition before the next month's first day), grown from the previous
  month's file once a month;
- ``silver/orders.shard-K-of-N.recent/ds=D/``: the days after that month-end file up to ``D``,
  rewritten daily from those days' files;

and the same for ``order_products`` (the orders' files have the date as a ``ds`` column). Each
file's manifest records which daily files it holds, so a reader uses the pair only while they are
still the daily partitions ``<= ds``, and reads the days otherwise.

:func:`read_shard_orders` and :func:`read_shard_lines` read one shard's history ``<= ds``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa

from basket_insights.lake import Lake, Manifest, check_ds

log = logging.getLogger(__name__)

#: The bronze tables kept in shards; the lines are written last (see the module docstring).
SHARDED = ("orders", "order_products")


def shard_table(table: str, shard: int, shards: int) -> str:
    """The silver table of ``table``'s rows of one shard: ``orders.shard-3-of-8``."""
    if table not in SHARDED:
        raise ValueError(f"only {', '.join(SHARDED)} are kept in shards, not {table!r}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not one of 0 .. {shards - 1}")
    return f"{table}.shard-{shard}-of-{shards}"


def history_table(table: str, shard: int, shards: int) -> str:
    """The silver table of one shard's whole history of ``table`` as of the end of a month, in one
    file: ``order_products.shard-3-of-8.history``."""
    return f"{shard_table(table, shard, shards)}.history"


def recent_table(table: str, shard: int, shards: int) -> str:
    """The silver table of one shard's days of ``table`` after the last month-end history file, as of
    each date: ``order_products.shard-3-of-8.recent``."""
    return f"{shard_table(table, shard, shards)}.recent"


def user_hash(user_ids: np.ndarray) -> np.ndarray:
    """A fixed 64-bit hash of each user id: the finaliser of splitmix64 (a bijective mix of the bits).

    It depends on nothing but the id (unlike Python's ``hash``, salted per process), so a shard, or a
    sample of users taken by the smallest hashes, is the same in every process, machine and release.
    """
    z = np.asarray(user_ids).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def smallest_hash_positions(user_ids: np.ndarray, size: int) -> np.ndarray:
    """The positions, ascending, of the ``size`` distinct ``user_ids`` of smallest :func:`user_hash`
    (every position when there are no more). A sample of customers taken this way is the same
    whether it is drawn from all of them at once or from each shard's own sample of the same size."""
    if len(user_ids) <= size:
        return np.arange(len(user_ids))
    return np.sort(np.argpartition(user_hash(user_ids), size - 1)[:size])


def smallest_hash_users(user_ids: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` distinct ``user_ids`` of smallest :func:`user_hash`, sorted by id."""
    return np.sort(np.asarray(user_ids)[smallest_hash_positions(user_ids, size)])


def shard_of(user_ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard (``0 .. shards - 1``) of each user id: :func:`user_hash` modulo ``shards``, so that
    consecutive ids, as shops hand them out, spread evenly over the shards."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return (user_hash(user_ids) % np.uint64(shards)).astype(np.int32)


def split_day(orders: pa.Table, lines: pa.Table, shards: int) -> list[tuple[pa.Table, pa.Table]]:
    """One date's bronze orders and lines as ``(orders, lines)`` per shard; the lines gain ``user_id``.

    A line belongs to its order's customer (an order line refers to an order of the same day's drop,
    :func:`basket_insights.ingest.ingest_order_products`); lines of no order of the day are dropped,
    as :func:`basket_insights.features.load_history` drops them.
    """
    order_ids = orders.column("order_id").to_numpy()
    user_ids = orders.column("user_id").to_numpy()
    order_shard = shard_of(user_ids, shards)
    line_orders = lines.column("order_id").to_numpy()
    size = int(max(order_ids.max(initial=0), line_orders.max(initial=0))) + 1
    row_of = np.full(size, -1, dtype=np.int64)
    row_of[order_ids] = np.arange(len(order_ids))
    line_rows = row_of[line_orders]
    known = line_rows >= 0
    lines = lines.append_column("user_id", pa.array(np.where(known, user_ids[np.maximum(line_rows, 0)], 0)))
    line_shard = np.where(known, order_shard[np.maximum(line_rows, 0)], -1)
    return [(orders.filter(pa.array(order_shard == k)), lines.filter(pa.array(line_shard == k))) for k in range(shards)]


def bronze_files(lake: Lake, ds: str) -> dict[str, dict[str, list[str]]]:
    """Per date ``<= ds`` with both bronze tables committed, the files each table's partition holds."""
    manifests = {table: lake.manifests("bronze", table, up_to=check_ds(ds)) for table in SHARDED}
    dates = sorted(set(manifests["orders"]) & set(manifests["order_products"]))
    return {d: {table: manifests[table][d].files for table in SHARDED} for d in dates}


def stale_dates(lake: Lake, ds: str, shards: int, source: dict[str, dict[str, list[str]]]) -> list[str]:
    """Dates of ``source`` (:func:`bronze_files`) whose shards are missing or were split from other files."""
    last = lake.manifests("silver", shard_table("order_products", shards - 1, shards), up_to=ds)
    return [d for d, files in source.items() if d not in last or last[d].extra.get("source") != files]


def refresh_shards(lake: Lake, ds: str, shards: int, *, run_id: str = "") -> dict:
    """Split every date ``<= ds`` whose bronze partitions changed since (:func:`stale_dates`) into the
    shard tables; the dates and order lines split."""
    if shards == 1:  # the bronze tables are that one shard: nothing to split
        return {"shards": 1, "dates_split": 0, "rows_in": 0, "rows_out": 0}
    started = time.monotonic()
    source = bronze_files(lake, ds)
    dates = stale_dates(lake, ds, shards, source)
    log.info("user shards: %d of %d dates <= %s to split into %d shards", len(dates), len(source), ds, shards)
    rows = 0
    for i, day in enumerate(dates, 1):
        orders = lake.read_table("bronze", "orders", dates=[day])
        lines = lake.read_table("bronze", "order_products", dates=[day])
        pieces = split_day(orders, lines, shards)
        for k, (shard_orders, _) in enumerate(pieces):
            lake.write_table("silver", shard_table("orders", k, shards), day, shard_orders, run_id=run_id)
        for k, (_, shard_lines) in enumerate(pieces):
            # the last partition of the pass records what it was split from (see the module docstring)
            extra = {"source": source[day]} if k == shards - 1 else None
            table = shard_table("order_products", k, shards)
            lake.write_table("silver", table, day, shard_lines, run_id=run_id, extra=extra)
        rows += lines.num_rows
        if i % 30 == 0 or i == len(dates):
            seconds = time.monotonic() - started
            log.info("user shards: %d/%d dates split (%d order lines, %.1f s)", i, len(dates), rows, seconds)
    written = 0
    for k in range(shards):
        written += sum(compact_shard(lake, table, ds, k, shards, run_id=run_id) for table in SHARDED)
    seconds = time.monotonic() - started
    log.info(
        "user shards: histories <= %s in a month-end and a recent file each (%d written, %.1f s)", ds, written, seconds
    )
    return {
        "shards": shards,
        "dates_split": len(dates),
        "histories_written": written,
        "rows_in": rows,
        "rows_out": rows,
    }


def _daily_parts(parts: Mapping[str, Manifest], up_to: str, after: str | None = None) -> str:
    """A digest of which daily partition files there are ``<= up_to`` (and ``> after``): what a history
    file holds."""
    listing = [
        [day, manifest.files]
        for day, manifest in sorted(parts.items())
        if day <= up_to and (after is None or day > after)
    ]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def month_end_before(days: Iterable[str], ds: str) -> str | None:
    """The last of ``days`` before the first day of ``ds``'s month: the date of the history file that
    a read ``<= ds`` starts from (``None``: every day is in ``ds``'s month)."""
    month_start = f"{check_ds(ds)[:8]}01"
    return max((day for day in days if day < month_start), default=None)


def compact_shard(lake: Lake, table: str, ds: str, shard: int, shards: int, *, run_id: str = "") -> int:
    """Keep one shard's history of ``table`` ``<= ds`` in two files: the month-end file of the month
    before ``ds``'s (:func:`history_table`) and the days after it (:func:`recent_table`); how many of
    the two it wrote (none when both are in place).

    The month-end file is grown from the latest earlier month-end file that still holds the daily
    files it names, and the days after it (every day, when there is none). Of the earlier files of
    each table only the latest is kept (a re-run of an earlier date starts from it); those of later
    dates are left as they are.
    """
    daily = shard_table(table, shard, shards)
    parts = lake.manifests("silver", daily, up_to=ds)
    if not parts:
        return 0
    month_end = month_end_before(parts, ds)
    written = 0
    if month_end is not None:
        written += _write_month_end(lake, table, month_end, shard, shards, parts, run_id)
    recent = recent_table(table, shard, shards)
    kept = lake.manifests("silver", recent, up_to=ds)
    holds = _recent_holds(parts, ds, month_end)
    if not _holds(kept.get(ds), **holds):
        days = [day for day in parts if month_end is None or day > month_end]
        # no day of ds's month yet: an empty file with the month end's columns
        data = lake.read_table("silver", daily, dates=days or [month_end], with_ds=table == "orders")
        if not days:
            data = data.slice(0, 0)
        lake.write_table("silver", recent, ds, data, run_id=run_id, extra=holds)
        written += 1
    for day in sorted((day for day in kept if day < ds), reverse=True)[1:]:
        lake.delete_partition("silver", recent, day)
    return written


def _write_month_end(
    lake: Lake, table: str, month_end: str, shard: int, shards: int, parts: Mapping[str, Manifest], run_id: str
) -> int:
    """Write the shard's history file of every day ``<= month_end`` unless it is in place; 1 if written."""
    history = history_table(table, shard, shards)
    kept = lake.manifests("silver", history, up_to=month_end)
    if _holds(kept.get(month_end), daily_parts=_daily_parts(parts, month_end)):
        return 0
    earlier = sorted((day for day in kept if day < month_end), reverse=True)
    base = next((day for day in earlier if _holds(kept[day], daily_parts=_daily_parts(parts, day))), None)
    pieces = [lake.read_table("silver", history, dates=[base])] if base else []
    days = [day for day in parts if day <= month_end and (base is None or day > base)]
    if days:
        daily = shard_table(table, shard, shards)
        pieces.append(lake.read_table("silver", daily, dates=days, with_ds=table == "orders"))
    holds = {"daily_parts": _daily_parts(parts, month_end)}
    lake.write_table("silver", history, month_end, pa.concat_tables(pieces), run_id=run_id, extra=holds)
    for day in earlier[1:]:
        lake.delete_partition("silver", history, day)
    return 1


def _recent_holds(parts: Mapping[str, Manifest], ds: str, month_end: str | None) -> dict[str, str | None]:
    """What the recent file of ``ds`` must hold: the daily files after ``month_end``, up to ``ds``."""
    return {"month_end": month_end, "daily_parts": _daily_parts(parts, ds, after=month_end)}


def _holds(manifest: Manifest | None, **expected: str | None) -> bool:
    """Whether a history file is committed and its manifest names what ``expected`` says it must hold."""
    return manifest is not None and all(manifest.extra.get(key) == value for key, value in expected.items())


def read_shard_orders(
    lake: Lake, ds: str, shard: int, shards: int, columns: list[str], *, with_ds: bool = False
) -> pa.Table:
    """One shard's bronze ``orders`` columns ``<= ds`` (optionally with the partition date ``ds``)."""
    return _read_shard(lake, "orders", ds, shard, shards, columns, with_ds)


def read_shard_lines(lake: Lake, ds: str, shard: int, shards: int, columns: list[str]) -> pa.Table:
    """One shard's bronze ``order_products`` columns (and ``user_id``) ``<= ds``."""
    return _read_shard(lake, "order_products", ds, shard, shards, columns, with_ds=False)


def _read_shard(
    lake: Lake, table: str, ds: str, shard: int, shards: int, columns: list[str], with_ds: bool
) -> pa.Table:
    """The shard's month-end and recent files of ``ds`` when they hold the daily partitions ``<= ds``,
    else those days."""
    daily = shard_table(table, shard, shards)
    parts = lake.manifests("silver", daily, up_to=ds)
    month_end = month_end_before(parts, ds)
    recent, history = recent_table(table, shard, shards), history_table(table, shard, shards)
    recent_holds = _holds(lake.manifest("silver", recent, ds), **_recent_holds(parts, ds, month_end))
    month_end_holds = month_end is None or _holds(
        lake.manifest("silver", history, month_end), daily_parts=_daily_parts(parts, month_end)
    )
    if recent_holds and month_end_holds:
        read = [*columns, *(["ds"] if with_ds else [])]
        try:
            pieces = [lake.read_table("silver", history, dates=[month_end], columns=read)] if month_end else []
            pieces.append(lake.read_table("silver", recent, dates=[ds], columns=read))
            return pa.concat_tables(pieces)
        except FileNotFoundError:
            pass  # removed meanwhile by a run of a later date: the days hold the same rows
    return lake.read_table("silver", daily, up_to=ds, columns=columns, with_ds=with_ds)
