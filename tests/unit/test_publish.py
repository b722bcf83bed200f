"""Publishing the gold tables to SQL (the embedded SQLite default) and the plugin's reads."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from basket_insights.publish import (
    TABLES,
    PublishError,
    Scanned,
    Warehouse,
    gold_sources,
    gold_tables,
    publish_tables,
    published_dates,
    rules_with_antecedent,
    run_publish,
    shape_for,
    user_recommendations,
    user_segment,
)
from tests.conftest import GOLD_DATES


def _count(path: Path, table: str, ds: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE ds = ?", (ds,)).fetchone()[0]


def test_publish_is_idempotent_per_date_and_reads_match_the_lake(gold_lake, tmp_path: Path) -> None:
    path = tmp_path / "warehouse.sqlite"
    warehouse = Warehouse.sqlite(path)
    for ds in GOLD_DATES:
        run_publish(gold_lake, warehouse, ds)
    first = run_publish(gold_lake, warehouse, GOLD_DATES[-1])  # re-run of a date
    ds = GOLD_DATES[-1]
    recs = gold_lake.read_table("gold", "recommendations", dates=[ds]).to_pandas()
    assert first["rows"]["recommendations"] == len(recs) == _count(path, "recommendations", ds)
    assert _count(path, "recommendations", GOLD_DATES[0]) > 0  # the other date is untouched
    assert [d["ds"] for d in published_dates(warehouse)] == [GOLD_DATES[1], GOLD_DATES[0]]

    user = int(recs["user_id"].iloc[0])
    mine = recs[recs["user_id"] == user].sort_values("rank")
    served = user_recommendations(warehouse, ds, user)
    assert [r["product_id"] for r in served] == mine["product_id"].tolist()
    assert [r["reason"] for r in served] == mine["reason"].tolist()
    segments = gold_lake.read_table("gold", "customer_segments", dates=[ds]).to_pandas().set_index("user_id")
    assert user_segment(warehouse, ds, user)["segment_name"] == segments.loc[user, "segment_name"]
    assert user_segment(warehouse, ds, 10**9) is None

    rules = gold_lake.read_table("gold", "association_rules", dates=[ds]).to_pandas()
    product = int(rules["antecedents"].explode().value_counts().index[0])
    expected = rules[rules["antecedents"].apply(lambda items: product in list(items))]
    total, page_one = rules_with_antecedent(warehouse, ds, product, limit=1, offset=0)
    _, rest = rules_with_antecedent(warehouse, ds, product, limit=500, offset=1)
    assert total == len(expected) == len(page_one) + len(rest)
    assert all(product in r["antecedents"] for r in page_one + rest)
    lifts = [r["lift"] for r in page_one + rest]
    assert lifts == sorted(lifts, reverse=True)


def test_a_failure_in_the_middle_publishes_nothing_of_that_date(gold_lake, tmp_path: Path) -> None:
    path = tmp_path / "warehouse.sqlite"
    warehouse = Warehouse.sqlite(path)
    ds = GOLD_DATES[-1]
    run_publish(gold_lake, warehouse, ds)
    before = {t: _count(path, t, ds) for t in ("customer_segments", "association_rules", "recommendations")}
    tables = gold_tables(gold_lake, ds)
    # A duplicate primary key in the last table loaded: the earlier tables were already replaced.
    recs = tables["recommendations"]
    tables["recommendations"] = pa.concat_tables([recs, recs.slice(0, 1)])
    tables["customer_segments"] = tables["customer_segments"].slice(0, 5)
    with pytest.raises(PublishError, match="nothing of that date changed"):
        publish_tables(warehouse, ds, tables, run_id="broken")
    after = {t: _count(path, t, ds) for t in before}
    assert after == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT run_id FROM published_dates WHERE ds = ?", (ds,)).fetchone()[0] == ""


def test_bad_input_is_refused_with_a_clear_message(gold_lake, tmp_path: Path) -> None:
    warehouse = Warehouse.sqlite(tmp_path / "w.sqlite")
    tables = gold_tables(gold_lake, GOLD_DATES[-1])
    with pytest.raises(PublishError, match="recommendations has columns"):
        publish_tables(
            warehouse, GOLD_DATES[-1], {"recommendations": tables["recommendations"].drop_columns(["reason"])}
        )
    with pytest.raises(ValueError, match="not publishable"):
        publish_tables(warehouse, GOLD_DATES[-1], {"bronze_orders": tables["evaluation"]})
    with pytest.raises(ValueError, match="ISO date"):
        publish_tables(warehouse, "31/05/2026", tables)
    assert published_dates(warehouse) == []


class _Conn:
    def __init__(self, **fields) -> None:
        self.conn_id = "basket_db"
        for name in ("conn_type", "host", "port", "login", "password", "schema"):
            setattr(self, name, fields.get(name))


def test_warehouse_from_an_airflow_connection_never_shows_the_password() -> None:
    pg = Warehouse.from_connection(
        _Conn(conn_type="postgres", host="db", port=5432, login="u", password="pw!", schema="x")
    )
    assert pg.kind == "postgres" and "password=pw!" in pg.target and "pw!" not in str(pg)
    assert Warehouse.from_connection(_Conn(conn_type="sqlite", host="/tmp/a.db")).target == "/tmp/a.db"
    with pytest.raises(PublishError, match="use postgres or sqlite"):
        Warehouse.from_connection(_Conn(conn_type="mysql"))
    assert json.dumps(str(pg))  # printable in logs


def test_a_database_from_before_the_new_evaluation_columns_gains_them(gold_lake, tmp_path: Path) -> None:
    """An evaluation table created by the earlier version (8 columns) is extended, not broken, and an
    evaluation partition written before the columns existed publishes them as NULL."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE evaluation (ds TEXT, method TEXT, k INTEGER, users_evaluated INTEGER, hit_rate DOUBLE "
            "PRECISION, precision DOUBLE PRECISION, recall DOUBLE PRECISION, coverage DOUBLE PRECISION, rules "
            "INTEGER, PRIMARY KEY (ds, method))"
        )
        conn.execute("INSERT INTO evaluation VALUES ('2026-01-01', 'global_popularity', 10, 5, 0.2, 0.02, 0.1, 0.0, 3)")
    warehouse = Warehouse.sqlite(path)
    ds = GOLD_DATES[-1]
    run_publish(gold_lake, warehouse, ds)
    rows = {r["method"]: r for r in warehouse.query("SELECT * FROM evaluation WHERE ds = ?", (ds,))}
    lake_table = gold_lake.read_table("gold", "evaluation", dates=[ds]).to_pandas().set_index("method")
    assert set(rows) == set(lake_table.index)
    assert rows["recommender"]["recall_low"] == pytest.approx(lake_table.loc["recommender", "recall_low"])
    old = warehouse.query("SELECT * FROM evaluation WHERE ds = '2026-01-01'")
    assert old[0]["method"] == "global_popularity" and old[0]["ndcg"] is None

    old_partition = pa.table(
        {
            "method": ["global_popularity"],
            "k": [10],
            "users_evaluated": [5],
            "hit_rate": [0.2],
            "precision": [0.02],
            "recall": [0.1],
            "coverage": [0.0],
            "rules": [3],
            "ds": [ds],
        }
    )
    shaped = shape_for(old_partition, "evaluation")
    assert shaped.column_names == TABLES["evaluation"].column_names[1:]
    assert shaped.column("ndcg").null_count == 1 and shaped.column("baseline").type == pa.string()
    publish_tables(warehouse, "2026-01-02", {"evaluation": shaped})
    assert warehouse.query("SELECT recall, ndcg FROM evaluation WHERE ds = '2026-01-02'") == [
        {"recall": 0.1, "ndcg": None}
    ]


def test_the_benchmark_unpublishes_the_date_it_runs_again_and_nothing_else(gold_lake, tmp_path: Path) -> None:
    from basket_insights.bench import _unpublish_date

    path = tmp_path / "warehouse.sqlite"
    warehouse = Warehouse.sqlite(path)
    for ds in GOLD_DATES:
        run_publish(gold_lake, warehouse, ds)
    again, other = GOLD_DATES[-1], GOLD_DATES[0]
    _unpublish_date(path, again)
    assert all(_count(path, table, again) == 0 for table in TABLES)
    assert _count(path, "recommendations", other) > 0 and _count(path, "customer_segments", other) > 0
    assert [d["ds"] for d in published_dates(warehouse)] == [other]
    _unpublish_date(tmp_path / "absent.sqlite", again)  # no warehouse yet: nothing to do
    assert not (tmp_path / "absent.sqlite").exists()


def test_the_largest_tables_are_loaded_a_piece_at_a_time(gold_lake, tmp_path: Path) -> None:
    """Recommendations and buy again grow with the customers: published from the lake a row group at a
    time, the rows the same as the whole table's, and a piece short of the manifest's count refused."""
    ds = GOLD_DATES[-1]
    whole = gold_lake.read_table("gold", "recommendations", dates=[ds])
    pieces = list(gold_lake.scan_table("gold", "recommendations", ds, batch_rows=100))
    assert len(pieces) > 1 and max(p.num_rows for p in pieces) <= 100
    assert pa.concat_tables(pieces).equals(whole)

    scanned, warehouse = Warehouse.sqlite(tmp_path / "pieces.sqlite"), Warehouse.sqlite(tmp_path / "whole.sqlite")
    run_publish(gold_lake, scanned, ds)
    publish_tables(warehouse, ds, gold_tables(gold_lake, ds))
    query = "SELECT * FROM recommendations ORDER BY user_id, rank"
    assert scanned.query(query) == warehouse.query(query)

    short = gold_sources(gold_lake, ds)["recommendations"]
    with pytest.raises(PublishError, match="manifest counts"):
        publish_tables(scanned, ds, {"recommendations": Scanned(short.num_rows + 1, short.pieces)})
    assert len(scanned.query(query)) == whole.num_rows  # rolled back
