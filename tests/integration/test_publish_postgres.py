"""Publishing to the real PostgreSQL with COPY: idempotent per date, all or nothing."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import replace

import psycopg
import pyarrow as pa
import pytest

from basket_insights.api import create_app
from basket_insights.publish import (
    TABLES,
    PublishError,
    Warehouse,
    WarehouseUnavailable,
    close_read_pools,
    gold_tables,
    publish_tables,
    published_dates,
    rules_with_antecedent,
    run_publish,
    user_recommendations,
)
from tests.conftest import GOLD_DATES, PG_ADMIN, free_port

pytestmark = pytest.mark.integration


def _warehouse(name: str) -> Warehouse:
    return Warehouse("postgres", PG_ADMIN.replace("dbname=postgres", f"dbname={name}"), f"postgres/{name}")


def _counts(warehouse: Warehouse, ds: str) -> dict[str, int]:
    return {t: warehouse.query(f"SELECT COUNT(*) AS n FROM {t} WHERE ds = ?", (ds,))[0]["n"] for t in TABLES}


def test_publish_to_postgres_replaces_a_date_and_a_failure_changes_nothing(gold_lake, postgres_db: str) -> None:
    warehouse = _warehouse(postgres_db)
    for ds in GOLD_DATES:
        run_publish(gold_lake, warehouse, ds, run_id=f"first-{ds}")
    ds = GOLD_DATES[-1]
    expected = {name: table.num_rows for name, table in gold_tables(gold_lake, ds).items()}
    assert _counts(warehouse, ds) == expected

    run_publish(gold_lake, warehouse, ds, run_id="rerun")  # same date again: no duplicates
    assert _counts(warehouse, ds) == expected
    assert {d["ds"] for d in published_dates(warehouse)} == set(GOLD_DATES)

    # The primary keys and lookup indexes the plugin relies on exist.
    indexes = warehouse.query("SELECT indexdef FROM pg_indexes WHERE tablename = 'association_rule_antecedents'")
    assert any("(ds, product_id, rule_id)" in row["indexdef"] for row in indexes)

    # A failure in the middle of the load (a duplicate key in the last table): all rolled back.
    tables = gold_tables(gold_lake, ds)
    tables["customer_segments"] = tables["customer_segments"].slice(0, 3)
    tables["recommendations"] = pa.concat_tables([tables["recommendations"], tables["recommendations"].slice(0, 1)])
    with pytest.raises(PublishError, match=r"nothing of that date changed.*duplicate key"):
        publish_tables(warehouse, ds, tables, run_id="broken")
    assert _counts(warehouse, ds) == expected
    runs = warehouse.query("SELECT run_id FROM published_dates WHERE ds = ?", (ds,))
    assert runs == [{"run_id": "rerun"}]
    assert _counts(warehouse, GOLD_DATES[0])["recommendations"] > 0
    assert expected["buy_again"] > 0 and expected["buy_again_evaluation"] == 3


def test_the_buy_again_route_serves_a_customers_set_and_their_none_row(gold_lake, postgres_db: str) -> None:
    from fastapi.testclient import TestClient

    warehouse = _warehouse(postgres_db)
    ds = GOLD_DATES[-1]
    run_publish(gold_lake, warehouse, ds)
    again = gold_tables(gold_lake, ds)["buy_again"].to_pandas()
    user = int(again.loc[again["rank"] == 2, "user_id"].iloc[0])
    client = TestClient(create_app(lambda: gold_lake, lambda: warehouse, lambda: None))
    body = client.get(f"/api/users/{user}/buy-again", params={"ds": ds}).json()
    mine = again[again["user_id"] == user].sort_values("rank")
    assert [p["product_id"] for p in body["products"]] == mine["product_id"].dropna().astype(int).tolist()
    assert [p["rank"] for p in body["products"]] == list(range(1, len(body["products"]) + 1))
    assert body["p_none"] == pytest.approx(float(mine["probability"].iloc[0]))
    assert body["none_chosen"] == bool(mine["chosen"].iloc[0]) and "reorder nothing" in body["none_reason"]
    assert client.get("/api/users/999999999/buy-again", params={"ds": ds}).status_code == 404


def test_copy_round_trips_awkward_values(postgres_db: str) -> None:
    warehouse = _warehouse(postgres_db)
    names = ['Tomatoes, "Heirloom"', "", "Crème brûlée\nmulti-line", None]
    recs = pa.table({
        "user_id": pa.array([1, 1, 1, 1], pa.int64()), "rank": pa.array([1, 2, 3, 4], pa.int16()),
        "product_id": pa.array([10, 11, 12, 13], pa.int64()), "product_name": pa.array(names, pa.string()),
        "score": [0.5, float("inf"), 0.0, None], "source": ["rule"] * 4, "reason": ["a → b", "x", "y", "z"],
    })  # fmt: skip
    publish_tables(warehouse, "2026-01-02", {"recommendations": recs})
    rows = user_recommendations(warehouse, "2026-01-02", 1)
    assert [r["product_name"] for r in rows] == names
    assert rows[1]["score"] is None and rows[0]["score"] == 0.5  # infinity is not JSON: served as null
    raw = warehouse.query("SELECT score FROM recommendations WHERE ds = ? AND rank = 2", ("2026-01-02",))
    assert math.isinf(raw[0]["score"])
    assert rules_with_antecedent(warehouse, "2026-01-02", 10, 10, 0)[0] == 0


def test_an_unreachable_database_fails_with_its_address_not_its_password() -> None:
    warehouse = Warehouse(
        "postgres", "host=127.0.0.1 port=1 user=u password=hunter2 connect_timeout=2", "pg://127.0.0.1:1"
    )
    with pytest.raises(PublishError) as caught:
        publish_tables(warehouse, "2026-01-02", {})
    assert "pg://127.0.0.1:1" in str(caught.value) and "hunter2" not in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_pooled_reads_reuse_a_connection_and_recover_from_a_lost_one(gold_lake, postgres_db: str) -> None:
    """The api-server's reads: same answers as a fresh connection each, a connection kept open for
    them, and connections the server dropped (a restart, a failover) replaced without an error."""
    app_name = f"basket_pool_{uuid.uuid4().hex[:8]}"
    plain = replace(_warehouse(postgres_db), target=f"{_warehouse(postgres_db).target} application_name={app_name}")
    pooled = replace(plain, pooled=True)
    ds = GOLD_DATES[-1]
    run_publish(gold_lake, plain, ds)
    user = gold_tables(gold_lake, ds)["recommendations"].column("user_id")[0].as_py()
    try:
        assert user_recommendations(pooled, ds, user) == user_recommendations(plain, ds, user)
        assert published_dates(pooled) == published_dates(plain)
        # one connection, or two when the first read, waiting for the pool's first, made it grow
        assert len({pooled.query("SELECT pg_backend_pid() AS pid")[0]["pid"] for _ in range(20)}) <= 2
        assert len({plain.query("SELECT pg_backend_pid() AS pid")[0]["pid"] for _ in range(3)}) == 3

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app_name,)
            ).fetchall()
        assert killed and all(ok for (ok,) in killed)  # the pool's connections; plain reads left none open
        assert user_recommendations(pooled, ds, user) == user_recommendations(plain, ds, user)
    finally:
        close_read_pools()


def test_the_api_answers_503_when_the_database_is_down(gold_lake) -> None:
    from fastapi.testclient import TestClient

    down = Warehouse("postgres", f"host=127.0.0.1 port={free_port()} user=u password=hunter2", "pg://down", pooled=True)
    client = TestClient(create_app(lambda: gold_lake, lambda: down, lambda: None))
    try:
        started = time.monotonic()
        response = client.get("/api/users/1/recommendations")
        assert time.monotonic() - started < 30
        assert response.status_code == 503 and response.headers["Retry-After"] == "30"
        assert "unavailable" in response.json()["detail"] and "127.0.0.1" not in response.text
        with pytest.raises(WarehouseUnavailable, match="pg://down"):
            replace(down, pooled=False).query("SELECT 1")
    finally:
        close_read_pools()
