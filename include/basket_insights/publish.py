"""Publishing the day's gold tables to a SQL database, and the reads the UI plugin makes.

The database is PostgreSQL in production and a SQLite file as the embedded default; both are
reached through a :class:`Warehouse` built from an Airflow connection (``BASKET_DB_CONN_ID``).

A publish of ``ds`` is one transaction: delete that date's rows from every table, load the
new ones (PostgreSQL ``COPY`` from CSV that pyarrow writes; SQLite ``executemany``), record the
date in ``published_dates``, commit. A failure anywhere rolls everything back, so a reader sees
the previous publish of the date or the new one, never a mix; re-publishing a date replaces it.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from basket_insights.config import Settings
from basket_insights.lake import Lake, check_ds

log = logging.getLogger(__name__)

#: COPY sends the CSV in pieces of this many rows (bounded memory, progress in the log).
COPY_CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # the type, in words both databases accept


@dataclass(frozen=True)
class TableSpec:
    """One published table: columns (``ds`` first), primary key, extra indexes for the plugin's lookups."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _cols(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return (Column("ds", "DATE"), *(Column(n, t) for n, t in pairs))


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "customer_segments",
            _cols(("user_id", "BIGINT"), ("segment_id", "INTEGER"), ("segment_name", "TEXT"), ("distance", "REAL")),
            ("ds", "user_id"),
        ),
        TableSpec(
            "product_clusters",
            _cols(("product_id", "BIGINT"), ("cluster_id", "INTEGER"), ("cluster_label", "TEXT")),
            ("ds", "product_id"),
        ),
        TableSpec(
            "association_rules",
            _cols(
                ("rule_id", "INTEGER"),
                ("antecedents", "TEXT"),
                ("consequents", "TEXT"),
                ("antecedent_names", "TEXT"),
                ("consequent_names", "TEXT"),
                ("antecedent_support", "DOUBLE PRECISION"),
                ("consequent_support", "DOUBLE PRECISION"),
                ("support", "DOUBLE PRECISION"),
                ("confidence", "DOUBLE PRECISION"),
                ("lift", "DOUBLE PRECISION"),
                ("leverage", "DOUBLE PRECISION"),
                ("conviction", "DOUBLE PRECISION"),
            ),
            ("ds", "rule_id"),
        ),
        # One row per product of a rule's antecedent: "rules whose antecedent contains product P".
        TableSpec(
            "association_rule_antecedents",
            _cols(("product_id", "BIGINT"), ("rule_id", "INTEGER")),
            ("ds", "product_id", "rule_id"),
        ),
        TableSpec(
            "recommendations",
            _cols(
                ("user_id", "BIGINT"),
                ("rank", "SMALLINT"),
                ("product_id", "BIGINT"),
                ("product_name", "TEXT"),
                ("score", "DOUBLE PRECISION"),
                ("source", "TEXT"),
                ("reason", "TEXT"),
            ),
            ("ds", "user_id", "rank"),
        ),
        TableSpec(
            "evaluation",
            _cols(
                ("method", "TEXT"),
                ("k", "INTEGER"),
                ("users_evaluated", "INTEGER"),
                ("hit_rate", "DOUBLE PRECISION"),
                ("precision", "DOUBLE PRECISION"),
                ("recall", "DOUBLE PRECISION"),
                ("coverage", "DOUBLE PRECISION"),
                ("rules", "INTEGER"),
                # added with the leak-free evaluation; older databases gain them (_missing_columns)
                ("ndcg", "DOUBLE PRECISION"),
                ("recall_low", "DOUBLE PRECISION"),
                ("recall_high", "DOUBLE PRECISION"),
                ("hit_rate_low", "DOUBLE PRECISION"),
                ("hit_rate_high", "DOUBLE PRECISION"),
                ("baseline", "TEXT"),
                ("recall_vs_baseline", "DOUBLE PRECISION"),
                ("recall_vs_baseline_low", "DOUBLE PRECISION"),
                ("recall_vs_baseline_high", "DOUBLE PRECISION"),
            ),
            ("ds", "method"),
        ),
        # rank 0 is the customer's None row: product_id NULL, the chance of reordering nothing
        TableSpec(
            "buy_again",
            _cols(
                ("user_id", "BIGINT"),
                ("rank", "SMALLINT"),
                ("product_id", "BIGINT"),
                ("product_name", "TEXT"),
                ("probability", "DOUBLE PRECISION"),
                ("chosen", "BOOLEAN"),
                ("reason", "TEXT"),
            ),
            ("ds", "user_id", "rank"),
        ),
        TableSpec(
            "buy_again_evaluation",
            _cols(
                ("method", "TEXT"),
                ("users_evaluated", "INTEGER"),
                ("mean_f1", "DOUBLE PRECISION"),
                ("mean_set_size", "DOUBLE PRECISION"),
                ("threshold", "DOUBLE PRECISION"),
                ("f1_low", "DOUBLE PRECISION"),
                ("f1_high", "DOUBLE PRECISION"),
                ("baseline", "TEXT"),
                ("f1_vs_baseline", "DOUBLE PRECISION"),
                ("f1_vs_baseline_low", "DOUBLE PRECISION"),
                ("f1_vs_baseline_high", "DOUBLE PRECISION"),
            ),
            ("ds", "method"),
        ),
    )
}
#: One row per published date; the plugin lists dates from here.
PUBLISHED = TableSpec(
    "published_dates",
    (Column("ds", "DATE"), Column("published_at", "TEXT"), Column("run_id", "TEXT"), Column("row_counts", "TEXT")),
    ("ds",),
)


class PublishError(RuntimeError):
    """The warehouse could not be used: a publish failed (nothing of that date changed), or a read."""


class WarehouseUnavailable(PublishError):
    """The database could not be reached (down, refusing connections, or every pooled connection busy)."""


#: Read pools of long-lived processes, one per PostgreSQL conninfo (see ``Warehouse.pooled``).
_READ_POOLS: dict[str, Any] = {}
_READ_POOLS_LOCK = threading.Lock()


def _read_pool(conninfo: str) -> Any:
    """The process's pool of open connections to ``conninfo``, opened on first use.

    A new PostgreSQL connection costs ~6 ms here, a pooled read (its check included) under 0.5 ms
    (docs/benchmarks.md). Each connection is checked before it is handed out, so reads recover by
    themselves after the database restarts; idle connections above one close after 5 minutes.
    """
    with _READ_POOLS_LOCK:
        pool = _READ_POOLS.get(conninfo)
        if pool is None:
            from psycopg_pool import ConnectionPool

            pool = ConnectionPool(
                conninfo, min_size=1, max_size=8, max_idle=300, timeout=5, open=True,
                kwargs={"connect_timeout": 5}, check=ConnectionPool.check_connection, name="basket-insights-reads",
            )  # fmt: skip
            _READ_POOLS[conninfo] = pool
        return pool


def close_read_pools() -> None:
    """Close this process's read pools and their connections (reopened by the next pooled read)."""
    with _READ_POOLS_LOCK:
        pools = list(_READ_POOLS.values())
        _READ_POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(close_read_pools)  # at exit, a clean goodbye to the server rather than dropped sockets


@dataclass(frozen=True)
class Warehouse:
    """Where published tables live: ``kind`` ``postgres`` (``target`` a libpq conninfo) or ``sqlite`` (a file).

    ``pooled``: reads (:meth:`query`) share the process's pool of open PostgreSQL connections to
    ``target``; for the long-lived api-server. A task's publish always opens its own connection.
    """

    kind: Literal["postgres", "sqlite"]
    target: str
    label: str = ""
    pooled: bool = False

    @classmethod
    def from_connection(cls, conn: Any) -> Warehouse:
        """From an Airflow connection (``conn_type`` ``postgres`` or ``sqlite``; for SQLite ``host`` is the file)."""
        conn_type = (conn.conn_type or "").lower()
        if conn_type in ("postgres", "postgresql"):
            from psycopg.conninfo import make_conninfo

            params = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
                      "dbname": conn.schema}  # fmt: skip
            conninfo = make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})
            label = f"postgresql://{conn.host}:{conn.port or 5432}/{conn.schema or ''}"
            return cls("postgres", conninfo, label)
        if conn_type == "sqlite":
            if not conn.host:
                raise PublishError(f"SQLite connection {conn.conn_id!r} needs the database file as its host")
            return cls("sqlite", conn.host, f"sqlite://{conn.host}")
        raise PublishError(f"connection {conn.conn_id!r} has type {conn_type!r}; use postgres or sqlite")

    @classmethod
    def sqlite(cls, path: str | Path) -> Warehouse:
        return cls("sqlite", str(path), f"sqlite://{path}")

    def __str__(self) -> str:  # never the password
        return self.label or self.kind

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection in one transaction: committed on success, rolled back on any error."""
        if self.kind == "postgres":
            import psycopg

            try:
                conn = psycopg.connect(self.target, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise WarehouseUnavailable(f"cannot connect to {self}: {exc}") from exc
        else:
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.target, timeout=60, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            if self.kind == "sqlite":
                conn.execute("COMMIT")
            else:
                conn.commit()
        except BaseException:
            if self.kind == "sqlite":
                conn.execute("ROLLBACK")
            else:
                conn.rollback()
            raise
        finally:
            conn.close()

    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        """Rows of a read query written with ``?`` placeholders, as dicts."""
        if self.kind == "postgres":
            sql = sql.replace("?", "%s")
        with self._reader() as conn:
            cursor = conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @contextmanager
    def _reader(self) -> Iterator[Any]:
        if not (self.pooled and self.kind == "postgres"):
            with self.connect() as conn:
                yield conn
            return
        from psycopg_pool import PoolTimeout

        try:
            with _read_pool(self.target).connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise WarehouseUnavailable(f"cannot connect to {self}: {exc}") from exc


def _ddl(spec: TableSpec, kind: str) -> list[str]:
    types = {"DATE": "TEXT"} if kind == "sqlite" else {}
    columns = ", ".join(f'"{c.name}" {types.get(c.sql, c.sql)}' for c in spec.columns)
    out = [f"CREATE TABLE IF NOT EXISTS {spec.name} ({columns}, PRIMARY KEY ({', '.join(spec.primary_key)}))"]
    for index in spec.indexes:
        out.append(f"CREATE INDEX IF NOT EXISTS ix_{spec.name}_{'_'.join(index)} ON {spec.name} ({', '.join(index)})")
    return out


def _missing_columns(cursor: Any, spec: TableSpec, kind: str) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` for the columns of ``spec`` an existing table lacks (a database
    created by an earlier version): added at the end, in the spec's order, so positions still match."""
    if kind == "sqlite":
        cursor.execute(f"PRAGMA table_info({spec.name})")
        present = {row[1] for row in cursor.fetchall()}
    else:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = %s AND table_schema = current_schema()",
            (spec.name,),
        )
        present = {row[0] for row in cursor.fetchall()}
    types = {"DATE": "TEXT"} if kind == "sqlite" else {}
    return [
        f'ALTER TABLE {spec.name} ADD COLUMN "{c.name}" {types.get(c.sql, c.sql)}'
        for c in spec.columns
        if c.name not in present
    ]


def _json_lists(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([json.dumps(v) for v in column.to_pylist()], pa.string())


def shape_for(table: pa.Table, name: str) -> pa.Table:
    """``table``'s columns in the order of the published table ``name`` (without ``ds``); a column the
    partition lacks (written before the column existed) is published as NULL."""
    for column in TABLES[name].columns[1:]:
        if column.name not in table.column_names:
            kind = pa.string() if column.sql == "TEXT" else pa.float64()
            table = table.append_column(column.name, pa.nulls(table.num_rows, kind))
    return table.select(TABLES[name].column_names[1:])


@dataclass(frozen=True)
class Scanned:
    """A published table read a piece at a time (:meth:`basket_insights.lake.Lake.scan_table`), never
    whole: its rows, as its partition's manifest counts them, and its pieces in order."""

    num_rows: int
    pieces: Callable[[], Iterator[pa.Table]]

    def read_all(self) -> pa.Table:
        return pa.concat_tables(list(self.pieces()))


#: The tables that grow with the customers: published a piece at a time.
SCANNED = ("buy_again", "recommendations")


def gold_tables(lake: Lake, ds: str) -> dict[str, pa.Table]:
    """The day's gold partitions shaped as the published tables (without ``ds``; lists as JSON text),
    every one whole."""
    return {
        name: table.read_all() if isinstance(table, Scanned) else table
        for name, table in gold_sources(lake, ds).items()
    }


def gold_sources(lake: Lake, ds: str) -> dict[str, pa.Table | Scanned]:
    """:func:`gold_tables`, with the tables of :data:`SCANNED` to be read a piece at a time."""

    def scanned(name: str) -> Scanned:
        manifest = lake.committed("gold", name, ds)

        def pieces() -> Iterator[pa.Table]:
            return (shape_for(piece, name) for piece in lake.scan_table("gold", name, ds))

        return Scanned(manifest.rows, pieces)

    def gold(table: str) -> pa.Table:
        return lake.read_table("gold", table, dates=[ds])

    rules = gold("association_rules")
    rule_ids = pa.array(np.arange(rules.num_rows, dtype=np.int32))
    rules = rules.append_column("rule_id", rule_ids)
    lengths = pc.list_value_length(rules["antecedents"]).to_numpy(zero_copy_only=False)
    antecedents = pa.table(
        {
            "product_id": pc.list_flatten(rules["antecedents"]).cast(pa.int64()),
            "rule_id": pa.array(np.repeat(np.arange(rules.num_rows, dtype=np.int32), lengths)),
        }
    )
    for name in ("antecedents", "consequents", "antecedent_names", "consequent_names"):
        rules = rules.set_column(rules.column_names.index(name), name, _json_lists(rules[name]))
    return {
        "customer_segments": shape_for(gold("customer_segments"), "customer_segments"),
        "product_clusters": shape_for(gold("product_clusters"), "product_clusters"),
        "association_rules": shape_for(rules, "association_rules"),
        "association_rule_antecedents": shape_for(antecedents, "association_rule_antecedents"),
        "evaluation": shape_for(gold("evaluation"), "evaluation"),
        **{
            # a date run before buy again existed publishes without it
            name: scanned(name) if name in SCANNED else shape_for(gold(name), name)
            for name in ("buy_again_evaluation", "buy_again")
            if lake.manifest("gold", name, ds)
        },
        # Last: the largest table, and the one a reader looks up first.
        "recommendations": scanned("recommendations"),
    }


def _copy(cursor: Any, spec: TableSpec, table: pa.Table, progress: Callable[[int], None]) -> None:
    columns = ", ".join(f'"{n}"' for n in spec.column_names)
    with cursor.copy(f"COPY {spec.name} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
        for start in range(0, table.num_rows, COPY_CHUNK_ROWS):
            buffer = io.BytesIO()
            chunk = table.slice(start, COPY_CHUNK_ROWS)
            pacsv.write_csv(chunk, buffer, pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getbuffer())
            progress(start + chunk.num_rows)


def _insert_sqlite(conn: sqlite3.Connection, spec: TableSpec, table: pa.Table, progress: Callable[[int], None]) -> None:
    placeholders = ", ".join("?" * len(spec.columns))
    columns = ", ".join(f'"{n}"' for n in spec.column_names)
    sql = f"INSERT INTO {spec.name} ({columns}) VALUES ({placeholders})"
    for start in range(0, table.num_rows, COPY_CHUNK_ROWS):
        chunk = table.slice(start, COPY_CHUNK_ROWS)
        conn.executemany(sql, zip(*(chunk.column(i).to_pylist() for i in range(chunk.num_columns)), strict=True))
        progress(start + chunk.num_rows)


def publish_tables(
    warehouse: Warehouse, ds: str, tables: Mapping[str, pa.Table | Scanned], *, run_id: str = ""
) -> dict[str, int]:
    """Replace ``ds``'s rows of every table with ``tables`` in one transaction; return rows per table.

    ``tables`` maps names of :data:`TABLES` to their columns without ``ds`` (which this adds), whole or
    :class:`Scanned` (loaded a piece at a time).

    Raises
    ------
    PublishError
        Anything failed; the transaction was rolled back and the date's published rows are as before.
    """
    check_ds(ds)
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"not publishable tables: {sorted(unknown)}")
    counts = {name: table.num_rows for name, table in tables.items()}
    started = time.monotonic()
    try:
        with warehouse.connect() as conn:
            cursor = conn.cursor()
            if warehouse.kind == "postgres":
                # One publisher at a time: concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL.
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('basket_insights.publish'))")
            for spec in (*TABLES.values(), PUBLISHED):
                for statement in _ddl(spec, warehouse.kind):
                    cursor.execute(statement)
                for statement in _missing_columns(cursor, spec, warehouse.kind):
                    log.info("publish: %s (the table predates the column)", statement)
                    cursor.execute(statement)
            placeholder = "%s" if warehouse.kind == "postgres" else "?"
            for name, table in tables.items():
                spec = TABLES[name]
                cursor.execute(f"DELETE FROM {spec.name} WHERE ds = {placeholder}", (ds,))
                loaded = 0
                for piece in table.pieces() if isinstance(table, Scanned) else [table]:
                    if piece.column_names != spec.column_names[1:]:
                        raise PublishError(f"{name} has columns {piece.column_names}, expected {spec.column_names[1:]}")
                    piece = piece.add_column(0, "ds", pa.array([ds] * piece.num_rows, pa.string()))

                    def progress(
                        done: int, name: str = name, before: int = loaded, total: int = table.num_rows
                    ) -> None:
                        seconds = time.monotonic() - started
                        log.info("publish ds=%s: %s %d/%d rows (%.1f s)", ds, name, before + done, total, seconds)

                    if warehouse.kind == "postgres":
                        _copy(cursor, spec, piece, progress)
                    else:
                        _insert_sqlite(conn, spec, piece, progress)
                    loaded += piece.num_rows
                if loaded != table.num_rows:
                    raise PublishError(f"{name}: {loaded} rows read, its partition's manifest counts {table.num_rows}")
            cursor.execute(f"DELETE FROM {PUBLISHED.name} WHERE ds = {placeholder}", (ds,))
            cursor.execute(
                f"INSERT INTO {PUBLISHED.name} VALUES ({', '.join([placeholder] * 4)})",
                (ds, datetime.now(UTC).isoformat(timespec="seconds"), run_id, json.dumps(counts)),
            )
    except PublishError:
        raise
    except Exception as exc:
        raise PublishError(f"publishing ds={ds} to {warehouse} failed, nothing of that date changed: {exc}") from exc
    log.info("publish ds=%s: committed %s to %s (%.1f s)", ds, counts, warehouse, time.monotonic() - started)
    return counts


def run_publish(lake: Lake, warehouse: Warehouse, ds: str, *, run_id: str = "") -> dict:
    """Read the day's gold tables from the lake and publish them (see :func:`publish_tables`); the
    tables that grow with the customers are read a piece at a time as they are loaded."""
    started = time.monotonic()
    tables = gold_sources(lake, ds)
    rows = {k: v.num_rows for k, v in tables.items()}
    log.info("publish ds=%s: gold tables to load %s (%.1f s)", ds, rows, time.monotonic() - started)
    counts = publish_tables(warehouse, ds, tables, run_id=run_id)
    total = sum(counts.values())
    return {"rows_in": total, "rows_out": total, "database": str(warehouse), "rows": counts,
            "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


# -- reads for the plugin's API ------------------------------------------------------------------


def _clean(row: dict) -> dict:
    """JSON-safe values: dates as ISO text, non-finite floats as None, JSON list columns decoded."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
        elif key in ("antecedents", "consequents", "antecedent_names", "consequent_names") and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


def published_dates(warehouse: Warehouse) -> list[dict]:
    """Published dates, newest first, with their row counts."""
    try:
        rows = warehouse.query(f"SELECT ds, published_at, row_counts FROM {PUBLISHED.name} ORDER BY ds DESC")
    except Exception as exc:  # no publish yet: the table does not exist
        if "published_dates" in str(exc):
            return []
        raise
    return [{**_clean(r), "row_counts": json.loads(r["row_counts"])} for r in rows]


def user_segment(warehouse: Warehouse, ds: str, user_id: int) -> dict | None:
    rows = warehouse.query(
        "SELECT ds, user_id, segment_id, segment_name, distance FROM customer_segments WHERE ds = ? AND user_id = ?",
        (ds, user_id),
    )
    return _clean(rows[0]) if rows else None


def user_recommendations(warehouse: Warehouse, ds: str, user_id: int) -> list[dict]:
    rows = warehouse.query(
        "SELECT rank, product_id, product_name, score, source, reason FROM recommendations "
        "WHERE ds = ? AND user_id = ? ORDER BY rank",
        (ds, user_id),
    )
    return [_clean(r) for r in rows]


def user_buy_again(warehouse: Warehouse, ds: str, user_id: int) -> dict | None:
    """The customer's buy-again set of ``ds``: the chosen products by rank, and the ``None`` row."""
    rows = warehouse.query(
        "SELECT rank, product_id, product_name, probability, chosen, reason FROM buy_again "
        "WHERE ds = ? AND user_id = ? ORDER BY rank",
        (ds, user_id),
    )
    if not rows:
        return None
    rows = [_clean(r) for r in rows]
    nothing = next((r for r in rows if r["rank"] == 0), None)
    return {
        "products": [r for r in rows if r["rank"] > 0],
        "p_none": nothing["probability"] if nothing else None,
        "none_chosen": bool(nothing["chosen"]) if nothing else False,
        "none_reason": nothing["reason"] if nothing else None,
    }


def rules_with_antecedent(warehouse: Warehouse, ds: str, product_id: int, limit: int, offset: int) -> tuple[int, list]:
    """Rules of ``ds`` whose antecedent contains ``product_id``, by lift; ``(total, page)``."""
    total = warehouse.query(
        "SELECT COUNT(*) AS n FROM association_rule_antecedents WHERE ds = ? AND product_id = ?", (ds, product_id)
    )[0]["n"]
    rows = warehouse.query(
        "SELECT r.rule_id, r.antecedents, r.consequents, r.antecedent_names, r.consequent_names, r.support, "
        "r.confidence, r.lift FROM association_rule_antecedents a JOIN association_rules r "
        "ON r.ds = a.ds AND r.rule_id = a.rule_id WHERE a.ds = ? AND a.product_id = ? "
        "ORDER BY r.lift DESC, r.rule_id LIMIT ? OFFSET ?",
        (ds, product_id, limit, offset),
    )
    return int(total), [_clean(r) for r in rows]


def warehouse_for(settings: Settings, get_connection: Callable[[str], Any], *, pooled: bool = False) -> Warehouse:
    """The warehouse of ``settings``: the Airflow connection ``db_conn_id`` (looked up with
    ``get_connection``, which differs between a task and the api-server), else the SQLite file ``db_path``.
    ``pooled``: see :class:`Warehouse`."""
    if settings.db_conn_id:
        return replace(Warehouse.from_connection(get_connection(settings.db_conn_id)), pooled=pooled)
    return Warehouse.sqlite(settings.db_path)
