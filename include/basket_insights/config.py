"""Settings for Basket Insights, read once from the environment and validated.

Every setting has an environment variable (``BASKET_*``) and a default that works on a
laptop with no server: the lake is a folder under the repository and no connection is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

#: The repository root (``include/basket_insights/config.py`` -> repo).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Airflow settings every deployment runs with (docker-compose.yaml, ``make stack``, the benchmarks).
#: A task's supervisor learns that its process exited when the process's sockets close, or else only
#: when its wait between heartbeats (``[workers] min_heartbeat_interval``, 5 s by default) ends: a
#: large task process still exiting after it closed them held its executor slot up to 5 s longer, and
#: the next task waited (docs/operations.md). 1 s bounds that, for one heartbeat request per running
#: task per second.
AIRFLOW_WORKER_SETTINGS = {"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1"}

#: glibc's allocator, as every deployment's processes run it (read at process start, so set in the
#: environment of the workers the task processes fork from). The tasks allocate and free arrays of
#: hundreds of MB; by default glibc hands each back to the kernel, which zeroes fresh pages again for
#: the next one: up to a third of a task's CPU was the kernel's, and two tasks on two cores slowed each
#: other doing it. With freed memory kept in the process and reused (one arena, so threads reuse it
#: too), the daily run's tasks use about 13 % less CPU at the same peaks (docs/benchmarks.md).
MALLOC_SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_ARENA_MAX": "1",
}


#: The gold tables a daily run publishes (each an Airflow Asset ``<lake>/gold/<table>``).
GOLD_TABLES = (
    "customer_segments",
    "segment_profiles",
    "segment_elbow",
    "product_clusters",
    "product_cluster_summary",
    "user_product_preferences",
    "preference_segments",
    "segment_product_preferences",
    "frequent_itemsets",
    "association_rules",
    "recommendations",
    "evaluation",
    "buy_again",
    "buy_again_evaluation",
    "buy_again_importances",
    "plots",
    "report",
)


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


def _env_number(name: str, default: float, low: float, high: float, kind: type = float) -> float:
    """A numeric setting of type ``kind`` (``int`` or ``float``) within ``[low, high]``."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what}") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside [{low}, {high}]")
    return value


def _env_float(name: str, default: float, low: float, high: float) -> float:
    return _env_number(name, default, low, high, float)


def _env_int(name: str, default: int, low: int, high: int) -> int:
    return int(_env_number(name, default, low, high, int))


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (true/false)")


def default_lake_url() -> str:
    """The embedded default lake: ``file://<repo>/.lake``."""
    return (REPO_ROOT / ".lake").as_uri()


@dataclass(frozen=True)
class Settings:
    """Validated pipeline settings.

    Attributes
    ----------
    lake_url:
        Base URL of the lake, ``file:///...`` or ``s3://bucket[/prefix]`` (``BASKET_LAKE_URL``).
    lake_conn_id:
        Airflow connection used for a non-local lake (``BASKET_LAKE_CONN_ID``); ``None`` for ``file://``.
    max_bad_row_fraction:
        A drop with more bad rows than this share fails its task (``BASKET_MAX_BAD_ROW_FRACTION``).
    drop_wait_timeout_s / drop_poke_interval_s:
        How long the run waits for a missing landing drop, and how often it looks
        (``BASKET_DROP_WAIT_TIMEOUT``, ``BASKET_DROP_POKE_INTERVAL``).
    max_active_runs / catchup:
        DAG run concurrency and whether the scheduler fills in past dates
        (``BASKET_MAX_ACTIVE_RUNS``, ``BASKET_CATCHUP``).
    start_date:
        First logical date of the schedule, ISO ``YYYY-MM-DD`` (``BASKET_START_DATE``).
    segment_reference_date:
        The date whose segments every later date's segments take their ids and names from
        (``BASKET_SEGMENT_REFERENCE_DATE``; by default ``start_date``; see :mod:`basket_insights.segments`).
    segment_k / segment_k_min / segment_k_max:
        Number of behavioural segments, or ``0`` to let the elbow choose within the range
        (``BASKET_SEGMENT_K``, ``BASKET_SEGMENT_K_MIN``, ``BASKET_SEGMENT_K_MAX``).
    segment_sample_fraction:
        Share of users the segment KMeans is fitted on; everyone is assigned
        (``BASKET_SEGMENT_SAMPLE_FRACTION``; the seed notebook used 0.1).
    product_k / product_min_df:
        Number of product clusters, ``0`` for the elbow; TF-IDF minimum document frequency
        (``BASKET_PRODUCT_K``, ``BASKET_PRODUCT_MIN_DF``).
    rules_*:
        Association-rule thresholds (``BASKET_RULES_MIN_SUPPORT``, ``_MIN_COUNT``, ``_MIN_CONFIDENCE``,
        ``_MIN_LIFT``) and the window of baskets in days, 0 for all (``BASKET_RULES_LAST_DAYS``).
    recommend_*:
        Recommendations per user, recent orders whose products fire rules, and user shards of the
        mapped ``recommend`` task (``BASKET_RECOMMEND_K``, ``_RECENT_ORDERS``, ``_SHARDS``).
    user_shards:
        User shards the order history is also kept in (``silver/orders.shard-K-of-N``,
        :mod:`basket_insights.user_shards`) and that the sharded steps (``build_features``,
        ``mine_rules``, ``link_preferences``) read one at a time (``BASKET_USER_SHARDS``); 1, the
        default, reads bronze whole.
    dask_address:
        The ``dask.distributed`` scheduler (``tcp://host:8786``) the sharded steps submit their shards
        to (``BASKET_DASK_ADDRESS``); ``None``, the default, runs them in the task's own process.
    item_model_products:
        Products of the item-to-item model (EASE's dense N × N solve; ``BASKET_ITEM_MODEL_PRODUCTS``).
    db_conn_id:
        Airflow connection (``postgres`` or ``sqlite``) the ``publish`` task loads the gold tables
        into and the UI plugin reads (``BASKET_DB_CONN_ID``); ``None`` for the embedded default.
    task_retries / retry_delay_s:
        Retries of every task but the sensor, and the first delay between them, doubled each retry up
        to 10 minutes (``BASKET_TASK_RETRIES``, ``BASKET_RETRY_DELAY``).
    deadline_minutes:
        A run not done this many minutes after it was queued raises a deadline alert
        (``BASKET_DEADLINE_MINUTES``; ``BASKET_ALERT_WEBHOOK`` receives it, see ``alerts.py``); 0, the
        default, attaches no deadline: ``airflow dags test`` of Airflow 3.3.2 fails on a DAG that has one.
        The compose file and ``make stack`` set 180.
    db_path:
        The embedded default database, a SQLite file (``BASKET_DB_PATH``; ``<repo>/.warehouse.sqlite``).
    """

    lake_url: str = field(default_factory=default_lake_url)
    lake_conn_id: str | None = None
    max_bad_row_fraction: float = 0.05
    drop_wait_timeout_s: int = 6 * 3600
    drop_poke_interval_s: int = 300
    max_active_runs: int = 1
    catchup: bool = False
    start_date: str = "2026-01-01"
    segment_reference_date: str = "2026-01-01"
    segment_k: int = 0
    segment_k_min: int = 2
    segment_k_max: int = 10
    segment_sample_fraction: float = 1.0
    product_k: int = 0
    product_min_df: int = 3
    rules_min_support: float = 0.001
    rules_min_count: int = 10
    rules_min_confidence: float = 0.1
    rules_min_lift: float = 1.2
    rules_last_days: int = 0
    recommend_k: int = 10
    recommend_recent_orders: int = 3
    recommend_shards: int = 1
    user_shards: int = 1
    dask_address: str | None = None
    item_model_products: int = 3000
    db_conn_id: str | None = None
    deadline_minutes: int = 0
    task_retries: int = 2
    retry_delay_s: int = 30
    db_path: str = str(REPO_ROOT / ".warehouse.sqlite")

    def __post_init__(self) -> None:
        if "://" not in self.lake_url:
            raise SettingsError(
                f"BASKET_LAKE_URL={self.lake_url!r} must be a URL such as file:///data/lake or s3://bucket"
            )
        scheme = self.lake_url.split("://", 1)[0]
        if scheme not in {"file", "s3", "s3a", "gs", "gcs", "abfs", "memory"}:
            raise SettingsError(f"BASKET_LAKE_URL scheme {scheme!r} is not supported")
        for name, value in (("BASKET_START_DATE", self.start_date),
                            ("BASKET_SEGMENT_REFERENCE_DATE", self.segment_reference_date)):  # fmt: skip
            try:
                date.fromisoformat(value)
            except ValueError:
                raise SettingsError(f"{name}={value!r} is not an ISO date (YYYY-MM-DD)") from None
        if self.segment_k_min > self.segment_k_max:
            raise SettingsError(
                f"BASKET_SEGMENT_K_MIN={self.segment_k_min} is above BASKET_SEGMENT_K_MAX={self.segment_k_max}"
            )


def load_settings() -> Settings:
    """Read and validate the settings from the environment (``BASKET_*`` variables)."""
    return Settings(
        lake_url=os.environ.get("BASKET_LAKE_URL") or default_lake_url(),
        lake_conn_id=os.environ.get("BASKET_LAKE_CONN_ID") or None,
        max_bad_row_fraction=_env_float("BASKET_MAX_BAD_ROW_FRACTION", 0.05, 0.0, 1.0),
        drop_wait_timeout_s=_env_int("BASKET_DROP_WAIT_TIMEOUT", 6 * 3600, 0, 7 * 24 * 3600),
        drop_poke_interval_s=_env_int("BASKET_DROP_POKE_INTERVAL", 300, 1, 24 * 3600),
        max_active_runs=_env_int("BASKET_MAX_ACTIVE_RUNS", 1, 1, 64),
        catchup=_env_bool("BASKET_CATCHUP", False),
        start_date=os.environ.get("BASKET_START_DATE") or "2026-01-01",
        segment_reference_date=os.environ.get("BASKET_SEGMENT_REFERENCE_DATE")
        or os.environ.get("BASKET_START_DATE")
        or "2026-01-01",
        segment_k=_env_int("BASKET_SEGMENT_K", 0, 0, 50),
        segment_k_min=_env_int("BASKET_SEGMENT_K_MIN", 2, 2, 50),
        segment_k_max=_env_int("BASKET_SEGMENT_K_MAX", 10, 2, 50),
        segment_sample_fraction=_env_float("BASKET_SEGMENT_SAMPLE_FRACTION", 1.0, 0.001, 1.0),
        product_k=_env_int("BASKET_PRODUCT_K", 0, 0, 1000),
        product_min_df=_env_int("BASKET_PRODUCT_MIN_DF", 3, 1, 1000),
        rules_min_support=_env_float("BASKET_RULES_MIN_SUPPORT", 0.001, 1e-7, 1.0),
        rules_min_count=_env_int("BASKET_RULES_MIN_COUNT", 10, 1, 10**9),
        rules_min_confidence=_env_float("BASKET_RULES_MIN_CONFIDENCE", 0.1, 0.0, 1.0),
        rules_min_lift=_env_float("BASKET_RULES_MIN_LIFT", 1.2, 0.0, 1e6),
        rules_last_days=_env_int("BASKET_RULES_LAST_DAYS", 0, 0, 100_000),
        recommend_k=_env_int("BASKET_RECOMMEND_K", 10, 1, 1000),
        recommend_recent_orders=_env_int("BASKET_RECOMMEND_RECENT_ORDERS", 3, 1, 100),
        recommend_shards=_env_int("BASKET_RECOMMEND_SHARDS", 1, 1, 256),
        user_shards=_env_int("BASKET_USER_SHARDS", 1, 1, 4096),
        dask_address=os.environ.get("BASKET_DASK_ADDRESS") or None,
        item_model_products=_env_int("BASKET_ITEM_MODEL_PRODUCTS", 3000, 0, 20_000),
        db_conn_id=os.environ.get("BASKET_DB_CONN_ID") or None,
        deadline_minutes=_env_int("BASKET_DEADLINE_MINUTES", 0, 0, 7 * 24 * 60),
        task_retries=_env_int("BASKET_TASK_RETRIES", 2, 0, 20),
        retry_delay_s=_env_int("BASKET_RETRY_DELAY", 30, 1, 3600),
        db_path=os.environ.get("BASKET_DB_PATH") or str(REPO_ROOT / ".warehouse.sqlite"),
    )
