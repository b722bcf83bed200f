"""The order history in user shards, and steps mapped over them in-process and on a real Dask cluster."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from basket_insights.features import build_user_features, shard_user_features
from basket_insights.ingest import ingest_order_products
from basket_insights.lake import Lake
from basket_insights.shard_map import DaskUnreachable, map_shards
from basket_insights.user_shards import (
    history_table,
    read_shard_lines,
    read_shard_orders,
    recent_table,
    refresh_shards,
    shard_of,
    shard_table,
    smallest_hash_users,
    split_day,
)
from tests.unit.conftest import HISTORY_EARLIER as EARLIER
from tests.unit.conftest import HISTORY_END as END


def _sorted(table: pa.Table, *keys: str) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def _features(lake: Lake, ds: str) -> pa.Table:
    return _sorted(lake.read_table("silver", "user_features", dates=[ds]), "user_id")


def _splitmix64(x: int) -> int:
    """The reference finaliser in plain Python integers (Steele, Lea and Flood's SplitMix64)."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_the_shard_of_a_user_never_changes_and_shards_are_even() -> None:
    # written out: the shard tables of every lake depend on these staying what they are
    assert shard_of(np.array([1, 2, 3, 4, 5, 206209]), 8).tolist() == [1, 6, 5, 2, 2, 5]
    ids = np.arange(1, 2000)
    assert shard_of(ids, 13).tolist() == [_splitmix64(int(i)) % 13 for i in ids]
    counts = np.bincount(shard_of(np.arange(1, 100_001), 7), minlength=7)
    assert counts.min() > 0.97 * 100_000 / 7 and counts.max() < 1.03 * 100_000 / 7
    assert (shard_of(np.arange(1, 1000), 1) == 0).all()
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(np.array([1]), 0)


def test_a_sample_by_smallest_hash_is_the_same_drawn_from_the_shards_samples() -> None:
    users = np.arange(1, 5_001)
    sample = smallest_hash_users(users, 300)
    assert len(sample) == 300 and (np.diff(sample) > 0).all()
    assert sample.tolist() == sorted(users[np.argsort([_splitmix64(int(u)) for u in users])[:300]].tolist())
    shards = shard_of(users, 7)
    per_shard = np.concatenate([smallest_hash_users(users[shards == k], 300) for k in range(7)])
    np.testing.assert_array_equal(smallest_hash_users(per_shard, 300), sample)
    np.testing.assert_array_equal(smallest_hash_users(users[:10], 300), users[:10])  # fewer: all of them


def test_a_day_splits_into_shards_that_add_up_to_it() -> None:
    orders = pa.table({"order_id": pa.array([10, 11, 12], pa.int32()), "user_id": pa.array([1, 2, 3], pa.int32())})
    lines = pa.table({"order_id": pa.array([10, 10, 11, 12, 99], pa.int32()), "product_id": pa.array([5, 6, 5, 7, 8])})
    pieces = split_day(orders, lines, 3)
    shard_of_user = dict(zip([1, 2, 3], shard_of(np.array([1, 2, 3]), 3).tolist(), strict=True))
    user_of_order = {10: 1, 11: 2, 12: 3}
    for k, (shard_orders, shard_lines) in enumerate(pieces):
        assert all(shard_of_user[user] == k for user in shard_orders.column("user_id").to_pylist())
        for line in shard_lines.to_pylist():
            assert line["user_id"] == user_of_order[line["order_id"]]
    assert sum(o.num_rows for o, _ in pieces) == 3
    assert sum(line.num_rows for _, line in pieces) == 4  # the line of no order of the day is dropped


def test_the_shards_hold_bronze_exactly_and_only_changed_dates_are_split_again(history_lake: Lake) -> None:
    lake, shards = history_lake, 3
    first = refresh_shards(lake, END, shards)
    assert first["dates_split"] == 20
    bronze_lines = lake.read_table("bronze", "order_products", up_to=END)
    sharded = pa.concat_tables(
        read_shard_lines(lake, END, k, shards, ["order_id", "product_id", "add_to_cart_order", "reordered"])
        for k in range(shards)
    )
    assert _sorted(sharded, "order_id", "product_id").equals(_sorted(bronze_lines, "order_id", "product_id"))
    users = [set(read_shard_orders(lake, END, k, shards, ["user_id"]).column("user_id").to_pylist()) for k in range(3)]
    assert not (users[0] & users[1]) and not (users[1] & users[2]) and not (users[0] & users[2])
    assert refresh_shards(lake, END, shards)["dates_split"] == 0

    # a corrected drop for one date: that date alone is split again, and the shards hold the correction
    landing = lake.landing_file("order_products", EARLIER)
    kept = landing.read_bytes().decode().splitlines()[:-5]
    lake.put_landing("order_products", EARLIER, ("\n".join(kept) + "\n").encode())
    ingest_order_products(lake, EARLIER, max_bad_fraction=0.05)
    assert refresh_shards(lake, END, shards)["dates_split"] == 1
    day = pa.concat_tables(
        lake.read_table("silver", shard_table("order_products", k, shards), dates=[EARLIER]) for k in range(shards)
    )
    assert day.num_rows == lake.read_table("bronze", "order_products", dates=[EARLIER]).num_rows == len(kept) - 1


def test_a_shard_pass_killed_half_way_is_done_again(history_lake: Lake) -> None:
    lake, shards = history_lake, 4
    refresh_shards(lake, END, shards)
    # as if a pass died after the first shard's lines: the last shard's partition still names old files
    last = shard_table("order_products", shards - 1, shards)
    old = lake.manifest("silver", last, EARLIER)
    stale = lake.read_table("silver", last, dates=[EARLIER])
    lake.write_table("silver", last, EARLIER, stale, extra={"source": {"orders": ["gone"]}})
    assert old is not None
    assert refresh_shards(lake, END, shards)["dates_split"] == 1


@pytest.mark.parametrize("shards", [3, 7])
def test_features_from_shards_equal_the_unsharded_features_at_every_date(history_lake: Lake, shards: int) -> None:
    lake = history_lake
    refresh_shards(lake, END, shards)
    for ds in (EARLIER, END):  # point in time: the earlier date reads only its own history
        build_user_features(lake, ds)
        whole = _features(lake, ds)
        done = build_user_features(lake, ds, shards=shards)
        assert done["users"] == whole.num_rows and done["shards"] == shards
        assert len(lake.manifest("silver", "user_features", ds).files) == shards
        assert _features(lake, ds).equals(whole)
    assert pc.max(_features(lake, EARLIER).column("last_order_date")).as_py().isoformat() <= EARLIER


def test_a_shard_without_customers_writes_an_empty_part(history_lake: Lake) -> None:
    lake = history_lake
    shards = 400  # more shards than customers: some are empty
    refresh_shards(lake, EARLIER, shards)
    empty = next(k for k in range(shards) if read_shard_orders(lake, EARLIER, k, shards, ["user_id"]).num_rows == 0)
    done = shard_user_features(lake.url, None, EARLIER, shards, empty)
    assert done["rows"] == 0 and done["orders"] == 0


def test_features_on_a_dask_cluster_equal_the_in_process_features(history_lake: Lake, dask_cluster) -> None:
    lake, shards = history_lake, 3
    refresh_shards(lake, END, shards)
    build_user_features(lake, END, shards=shards)
    in_process = _features(lake, END)
    done = build_user_features(lake, END, shards=shards, dask_address=dask_cluster.scheduler_address)
    assert done["users"] == in_process.num_rows
    assert _features(lake, END).equals(in_process)


def _dies_once(flag: str, work, shard: int) -> dict:
    """``work(shard)``, except that the first worker to run shard 1 is killed (SIGKILL) on the spot."""
    if shard == 1 and not os.path.exists(flag):
        Path(flag).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return work(shard)


def test_a_worker_killed_in_the_middle_of_a_step_changes_nothing(history_lake: Lake, dask_cluster, tmp_path) -> None:
    lake, shards = history_lake, 3
    refresh_shards(lake, END, shards)
    build_user_features(lake, END, shards=shards)
    expected = _features(lake, END)
    work = partial(_dies_once, str(tmp_path / "killed"), partial(shard_user_features, lake.url, None, END, shards))
    done = map_shards(work, shards, label="features", address=dask_cluster.scheduler_address)
    assert (tmp_path / "killed").exists()  # a worker did die
    parts = [d["part"] for d in done]
    lake.commit_parts("silver", "user_features", END, parts, sum(d["rows"] for d in done), expected.schema)
    assert _features(lake, END).equals(expected)


def test_an_unreachable_scheduler_fails_with_its_address() -> None:
    from tests.conftest import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(DaskUnreachable, match=address.replace(".", r"\.")):
        map_shards(lambda shard: {}, 2, label="features", address=address, connect_timeout_s=2)


def test_shards_run_in_order_in_process_and_bad_counts_are_refused() -> None:
    assert map_shards(lambda shard: {"rows": shard}, 4, label="t") == [{"rows": k} for k in range(4)]
    with pytest.raises(ValueError, match="at least 1"):
        map_shards(lambda shard: {}, 0, label="t")
    with pytest.raises(ValueError, match=r"shard 3 is not one of 0 \.\. 2"):
        shard_table("orders", 3, 3)


def test_a_rerun_of_an_earlier_date_changes_nothing_of_later_dates(history_lake: Lake) -> None:
    lake, shards = history_lake, 3
    refresh_shards(lake, END, shards)
    build_user_features(lake, END, shards=shards)
    later = {
        table: lake.manifest("silver", table, END)
        for table in (
            "user_features",
            *(shard_table(t, k, shards) for t in ("orders", "order_products") for k in range(3)),
            *(history_table(t, k, shards) for t in ("orders", "order_products") for k in range(3)),
            *(recent_table(t, k, shards) for t in ("orders", "order_products") for k in range(3)),
        )
    }
    # the earlier date re-ingested and re-run (a backfill), after the later date ran
    ingest_order_products(lake, EARLIER, max_bad_fraction=0.05, force=True)
    # every drop up to the earlier date was ingested again (force): each of those dates, and no other, is split
    redone = len(lake.partitions("bronze", "order_products", up_to=EARLIER))
    assert refresh_shards(lake, EARLIER, shards)["dates_split"] == redone < len(lake.partitions("bronze", "orders"))
    build_user_features(lake, EARLIER, shards=shards)
    assert {table: lake.manifest("silver", table, END) for table in later} == later


def _days(lake: Lake, table: str, ds: str, shard: int, shards: int, **read) -> pa.Table:
    return lake.read_table("silver", shard_table(table, shard, shards), up_to=ds, **read)


@pytest.fixture(scope="module")
def month_lake(tmp_path_factory) -> Lake:
    """120 generated customers over the 20 days up to 2026-04-08 (a month's end inside), ingested."""
    from basket_insights.ingest import ingest_catalog, ingest_orders
    from basket_insights.synth import generate

    lake = Lake((tmp_path_factory.mktemp("month") / "lake").as_uri())
    generate(lake, users=120, days=20, end_date="2026-04-08", seed=6)
    for ingest in (ingest_catalog, ingest_orders, ingest_order_products):
        ingest(lake, "2026-04-08", max_bad_fraction=0.05)
    return lake


def test_each_shard_history_is_a_month_end_file_and_the_days_after_it(month_lake: Lake) -> None:
    """A step reads its shard's history in every pass: from two files per shard and date (the month
    before's end, the month's days), never from files that no longer hold the daily partitions (a
    corrected day, a lost refresh); a daily run rewrites the month's days, not the whole history."""
    lake, shards, end, month_end = month_lake, 3, "2026-04-08", "2026-03-31"
    first, second = "2026-04-06", "2026-04-07"
    assert refresh_shards(lake, first, shards)["histories_written"] == 2 * 2 * shards  # month end and days
    for day in (second, end):  # daily runs: the month end is in place, the month's days rewritten
        assert refresh_shards(lake, day, shards)["histories_written"] == 2 * shards
    assert refresh_shards(lake, end, shards)["histories_written"] == 0  # a re-run finds them in place
    columns = ["order_id", "user_id", "order_number"]
    for ds in (end, month_end):  # on the month end itself every day is in its month
        for k in range(shards):
            orders = read_shard_orders(lake, ds, k, shards, columns, with_ds=True)
            assert orders.equals(_days(lake, "orders", ds, k, shards, columns=columns, with_ds=True))
            lines = read_shard_lines(lake, ds, k, shards, ["order_id", "product_id", "user_id"])
            assert lines.equals(
                _days(lake, "order_products", ds, k, shards, columns=["order_id", "product_id", "user_id"])
            )
    for k in range(shards):
        history, recent = history_table("order_products", k, shards), recent_table("order_products", k, shards)
        assert lake.partitions("silver", history) == [month_end]
        assert len(lake.manifest("silver", history, month_end).files) == 1
        assert lake.partitions("silver", recent) == [second, end]  # the one a re-run of the day before reads, kept
        days_after = lake.read_table("silver", recent, dates=[end]).num_rows
        assert days_after == _days(lake, "order_products", end, k, shards).num_rows - (
            _days(lake, "order_products", month_end, k, shards).num_rows
        )

    # a corrected drop of a day of the month before: until the shards are refreshed the files are not used
    day = "2026-03-25"
    landing = lake.landing_file("order_products", day)
    kept = landing.read_bytes().decode().splitlines()[:-5]
    lake.put_landing("order_products", day, ("\n".join(kept) + "\n").encode())
    ingest_order_products(lake, day, max_bad_fraction=0.05)
    lake.write_table("silver", shard_table("order_products", 0, shards), day, pa.table({"order_id": [1]}))
    assert (
        read_shard_lines(lake, end, 0, shards, ["order_id"]).num_rows
        == _days(lake, "order_products", end, 0, shards, columns=["order_id"]).num_rows
    )
    assert refresh_shards(lake, end, shards)["histories_written"] >= 2  # the month end of the corrected lines again
    sharded = pa.concat_tables(read_shard_lines(lake, end, k, shards, ["order_id", "product_id"]) for k in range(3))
    bronze = lake.read_table("bronze", "order_products", up_to=end, columns=["order_id", "product_id"])
    assert _sorted(sharded, "order_id", "product_id").equals(_sorted(bronze, "order_id", "product_id"))
