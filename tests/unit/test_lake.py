"""The lake: atomic commits, point-in-time reads, re-runs that replace exactly one date."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from basket_insights import lake as lake_module
from basket_insights.lake import MANIFEST, Lake, LakeError, check_ds
from tests.conftest import head_fingerprint


def _table(values: list[int]) -> pa.Table:
    return pa.table({"user_id": pa.array(values, pa.int32())})


def test_committed_partition_is_read_back_with_its_manifest(any_lake: Lake) -> None:
    manifest = any_lake.write_table("silver", "t", "2026-01-02", _table([1, 2, 3]), run_id="run-1", extra={"k": 1})
    assert manifest.rows == 3
    assert any_lake.partitions("silver", "t") == ["2026-01-02"]
    stored = any_lake.manifest("silver", "t", "2026-01-02")
    assert stored is not None and stored.run_id == "run-1" and stored.extra == {"k": 1}
    assert stored.schema == [["user_id", "int32"]]
    assert any_lake.read_table("silver", "t").column("user_id").to_pylist() == [1, 2, 3]


def test_partition_without_manifest_is_invisible(any_lake: Lake) -> None:
    """A writer killed before its commit leaves files that no reader takes."""
    any_lake.write_table("silver", "t", "2026-01-01", _table([1]))
    part = any_lake.partition("silver", "t", "2026-01-02")
    any_lake._ensure_dir(part.path)
    pq.write_table(_table([99]), (part / "part-orphan.parquet").path, filesystem=any_lake.arrow_fs)
    assert any_lake.partitions("silver", "t") == ["2026-01-01"]
    assert any_lake.read_table("silver", "t").column("user_id").to_pylist() == [1]
    with pytest.raises(FileNotFoundError):
        any_lake.read_table("silver", "t", dates=["2026-01-02"])


def test_orphans_in_a_committed_partition_are_ignored_then_removed(any_lake: Lake) -> None:
    any_lake.stale_after_s = 0  # removed at the next commit however young
    any_lake.write_table("silver", "t", "2026-01-01", _table([1]))
    part = any_lake.partition("silver", "t", "2026-01-01")
    pq.write_table(_table([99]), (part / "part-killed.parquet").path, filesystem=any_lake.arrow_fs)
    assert any_lake.read_table("silver", "t").column("user_id").to_pylist() == [1]
    any_lake.write_table("silver", "t", "2026-01-01", _table([2]))
    names = {p.name for p in part.iterdir()}
    assert "part-killed.parquet" not in names and MANIFEST in names and len(names) == 2


def test_two_writers_committing_one_partition_never_lose_a_listed_file(any_lake: Lake) -> None:
    """Two runs ingest the same earlier drop at once: B's file, written but not committed yet, must
    survive A's commit (which used to remove every unlisted file), so B's manifest lists a file
    that exists."""
    part = any_lake.partition("bronze", "orders", "2026-01-01")
    any_lake._ensure_dir(part.path)
    pq.write_table(_table([7]), (part / "part-writer-b.parquet").path, filesystem=any_lake.arrow_fs)
    any_lake.write_table("bronze", "orders", "2026-01-01", _table([7]))  # writer A commits first
    any_lake._commit_manifest(part.path, "2026-01-01", ["part-writer-b.parquet"], 1, _table([7]).schema, "b", None)
    assert any_lake.read_table("bronze", "orders").column("user_id").to_pylist() == [7]
    # once older than stale_after_s, A's superseded file goes at the next commit
    any_lake.stale_after_s = 0
    any_lake.write_table("bronze", "orders", "2026-01-01", _table([8]))
    assert len([p for p in part.iterdir()]) == 2  # the new file and the manifest


def test_point_in_time_reads_only_dates_up_to_ds(any_lake: Lake) -> None:
    for day, value in (("2026-01-01", 1), ("2026-01-02", 2), ("2026-01-03", 3)):
        any_lake.write_table("bronze", "orders", day, _table([value]))
    view = any_lake.read_table("bronze", "orders", up_to="2026-01-02", with_ds=True)
    assert view.column("user_id").to_pylist() == [1, 2]
    assert view.column("ds").to_pylist() == ["2026-01-01", "2026-01-02"]
    assert any_lake.partitions("bronze", "orders", up_to="2025-12-31") == []
    with pytest.raises(FileNotFoundError, match="no committed partition"):
        any_lake.read_table("bronze", "orders", up_to="2025-12-31")


def test_many_partitions_read_in_order_with_the_first_files_types(
    any_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads of many partitions (fetched in batches from S3) keep the dates' order and one schema."""
    monkeypatch.setattr(lake_module, "REMOTE_READ_BATCH", 2)
    days = [f"2026-01-0{d}" for d in range(1, 6)]
    for number, day in enumerate(days, start=1):
        values = pa.array([number, number * 10], pa.int64() if day == "2026-01-04" else pa.int32())
        any_lake.write_table("bronze", "orders", day, pa.table({"user_id": values, "other": ["a", "b"]}))
    whole = any_lake.read_table("bronze", "orders", columns=["user_id"], with_ds=True)
    assert whole.column("user_id").to_pylist() == [1, 10, 2, 20, 3, 30, 4, 40, 5, 50]
    assert whole.column("ds").to_pylist() == [day for day in days for _ in range(2)]
    assert whole.schema.field("user_id").type == pa.int32() and whole.column_names == ["user_id", "ds"]
    picked = any_lake.read_table("bronze", "orders", dates=["2026-01-05", "2026-01-02", "2026-01-05"])
    assert picked.column("user_id").to_pylist() == [5, 50, 2, 20]  # the caller's order, each date once
    assert list(any_lake.manifests("bronze", "orders", up_to="2026-01-03")) == days[:3]
    assert list(any_lake.manifests("bronze", "orders", dates=["2026-01-02", "2026-02-01"])) == ["2026-01-02"]
    with pytest.raises(FileNotFoundError, match="ds=2026-02-01 is not committed"):
        any_lake.read_table("bronze", "orders", dates=["2026-01-02", "2026-02-01"])


def test_a_store_refusing_reads_is_an_error_not_an_empty_lake(seaweedfs: dict[str, str], tmp_path, monkeypatch) -> None:
    """Manifests read in a batch: an unreadable one must fail the read, never count as 'not committed'."""
    Lake(f"s3://lake/{tmp_path.name}", conn_id="lake_s3").write_table("bronze", "orders", "2026-01-01", _table([1]))
    conn = json.loads(seaweedfs["AIRFLOW_CONN_LAKE_S3"])
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_S3_WRONG_KEY", json.dumps({**conn, "password": "not-the-secret"}))
    refused = Lake(f"s3://lake/{tmp_path.name}", conn_id="lake_s3_wrong_key")
    with pytest.raises(LakeError, match="could not read"):
        refused.manifests("bronze", "orders", dates=["2026-01-01"])
    with pytest.raises(LakeError):
        refused.read_table("bronze", "orders", dates=["2026-01-01"])


def test_rerun_replaces_that_date_and_nothing_else(any_lake: Lake) -> None:
    any_lake.stale_after_s = 0
    any_lake.write_table("gold", "t", "2026-01-01", _table([1, 1]))
    any_lake.write_table("gold", "t", "2026-01-02", _table([2, 2]))
    any_lake.write_table("gold", "t", "2026-01-02", _table([5]), run_id="rerun")
    assert any_lake.read_table("gold", "t", dates=["2026-01-01"]).num_rows == 2
    assert any_lake.read_table("gold", "t", dates=["2026-01-02"]).column("user_id").to_pylist() == [5]
    files = [p.name for p in any_lake.partition("gold", "t", "2026-01-02").iterdir()]
    assert sorted(files)[0] == MANIFEST or MANIFEST in files
    assert len(files) == 2, files  # the new parquet file and the manifest; the old file is gone


def test_named_files_keep_their_names(any_lake: Lake) -> None:
    any_lake.write_files("validation", "orders", "2026-01-01", {"results.json": b"{}", "data_docs.html": b"<html>"})
    assert any_lake.read_file("validation", "orders", "2026-01-01", "results.json") == b"{}"
    any_lake.write_files("validation", "orders", "2026-01-01", {"results.json": b'{"v": 2}'})
    assert any_lake.read_file("validation", "orders", "2026-01-01", "results.json") == b'{"v": 2}'
    with pytest.raises(FileNotFoundError):
        any_lake.read_file("validation", "orders", "2026-01-01", "data_docs.html")


def test_landing_drops_and_fingerprints(any_lake: Lake) -> None:
    any_lake.put_landing("orders", "2026-01-02", b"a\n1\n")
    any_lake.put_landing("orders", "2026-01-01", b"a\n")
    assert any_lake.landing_dates("orders") == ["2026-01-01", "2026-01-02"]
    assert any_lake.landing_dates("orders", up_to="2026-01-01") == ["2026-01-01"]
    listed = any_lake.landing_fingerprints("orders")
    # the listing's markers are the ones a HEAD of each file gives (what manifests have stored)
    assert listed == {day: head_fingerprint(any_lake, any_lake.landing_file("orders", day)) for day in listed}
    assert list(listed) == ["2026-01-01", "2026-01-02"]
    before = listed["2026-01-02"]
    any_lake.put_landing("orders", "2026-01-02", b"a\n1\n2\n")
    assert head_fingerprint(any_lake, any_lake.landing_file("orders", "2026-01-02")) != before
    assert any_lake.landing_fingerprints("orders", up_to="2026-01-02")["2026-01-02"] != before
    # only ds=<date>/<table>.csv is a drop
    for stray in (
        any_lake.landing_file("orders", "2026-01-03").path + ".tmp",
        any_lake.table_path("landing", "orders").path + "/notes/orders.csv",
    ):
        any_lake._ensure_dir(stray.rsplit("/", 1)[0])
        any_lake.fs.pipe_file(stray, b"a\n")
    assert list(any_lake.landing_fingerprints("orders")) == ["2026-01-01", "2026-01-02"]


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-1-1", "../etc", "2026-01-01/../../x", "", "20260101"])
def test_dates_and_names_cannot_steer_paths(lake: Lake, bad: str) -> None:
    with pytest.raises(ValueError):
        check_ds(bad)
    with pytest.raises(ValueError):
        lake.partition("gold", "t", bad)


@pytest.mark.parametrize("table", ["../x", "a/b", "..", ""])
def test_table_names_are_plain(lake: Lake, table: str) -> None:
    with pytest.raises(ValueError):
        lake.table_path("gold", table)
    with pytest.raises(ValueError, match="unknown zone"):
        lake.table_path("nowhere", "t")


def test_partitions_written_before_a_column_existed_read_it_as_null(any_lake) -> None:
    """gold/evaluation gained columns: a report reading a month of it spans both layouts."""
    import pyarrow as pa

    lake = any_lake
    lake.write_table("gold", "evaluation", "2026-01-01", pa.table({"method": ["global_popularity"], "recall": [0.1]}))
    lake.write_table(
        "gold", "evaluation", "2026-01-02", pa.table({"method": ["recommender"], "recall": [0.2], "ndcg": [0.3]})
    )
    both = lake.read_table("gold", "evaluation", dates=["2026-01-01", "2026-01-02"], with_ds=True)
    assert both.num_rows == 2 and both.column("ds").to_pylist() == ["2026-01-01", "2026-01-02"]
    assert both.column("recall").to_pylist() == [0.1, 0.2]
    if "ndcg" in both.column_names:  # the object store's reader keeps the newer column, nulls for the old day
        assert both.column("ndcg").to_pylist() == [None, 0.3]
