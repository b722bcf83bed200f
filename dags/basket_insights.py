"""
# Basket Insights

Turns the Instacart-shaped daily order feed into validated tables, customer segments, product
clusters, association rules and personalised recommendations, one run per logical date `ds`,
and publishes them to the lake (gold zone), a SQL database and a daily HTML report.

```
wait_for_drop ─> ingest_catalog ─┬──────────────────────────────────────────> cluster_products ─────┐
              └> ingest_orders  ─┴> ingest_order_products ─> shard_history ─┬> build_features       │
                                                                            │ └> segment_customers ─┴> link_preferences
                                                                            └> mine_rules
mine_rules + link_preferences ─> fit_recommender ─┬> recommend[shards] ─> collect_recommendations ─┐
                                                  └> evaluate ──────────────────────────────────────┼─> report
shard_history ─> predict_reorders ─────────────────────────────────────────────────────────────────┴─> publish
```
(`report` and `publish` each start once all three are done, and run side by side.)

* **wait_for_drop** waits (reschedule mode) for the day's `orders` and `order_products`
  landing drops, and fails with the missing file named after `BASKET_DROP_WAIT_TIMEOUT`.
* **ingest_*** parse each pending drop with an explicit schema, validate it with Great
  Expectations, write good rows to `bronze/`, bad rows with a reason each to `quarantine/`,
  and the validation results (JSON and Data Docs HTML) to `validation/`. A run ingests `ds`'s
  drop and every earlier drop that is new or changed since it was ingested; each ingest task runs
  for one date at a time, so concurrent dates do not ingest the same earlier drops twice.
* **shard_history** keeps the order history also in `BASKET_USER_SHARDS` user shards
  (`silver/orders.shard-K-of-N`, `silver/order_products.shard-K-of-N`), splitting every date whose
  bronze partitions changed; with one shard (the default) it has nothing to do.
* **build_features** writes per-user features as of `ds` to `silver/user_features/ds=...`. With user
  shards it and every other task that reads the history (**mine_rules**, **link_preferences**,
  **fit_recommender**, **recommend**, **evaluate**, **predict_reorders**) read it one shard at a
  time, in the task's own process or on the Dask scheduler of `BASKET_DASK_ADDRESS` (the same
  outputs either way).
* **segment_customers** clusters users on their behaviour (scaling, elbow, KMeans) into named
  segments with ids stable across days: `gold/customer_segments`, `segment_profiles`, `segment_elbow`.
* **cluster_products** clusters the catalog (TF-IDF of names + one-hot aisle and department);
  skipped when the catalog has not changed: `gold/product_clusters`, `product_cluster_summary`.
* **mine_rules** counts frequent itemsets (exact, vectorised) in the prior baskets `<= ds` and
  derives association rules with mlxtend's metrics: `gold/frequent_itemsets`, `association_rules`.
* **fit_recommender** learns from the history itself, without each customer's last order (the
  evaluation's hold-out): segments learned without it, the item-to-item model's regularisation and a
  gradient-boosted ranker trained on the order before it (`silver/recommender_model`).
* **recommend** (mapped over `BASKET_RECOMMEND_SHARDS` user shards) gathers candidates from the
  association rules, the item-to-item model, the customer's product clusters and popularity by
  buyers (overall and per segment), ranks them with the fitted ranker and writes each pick with
  its source and a reason; **collect_recommendations** publishes `gold/recommendations`;
  **evaluate** applies the same model to the history without each customer's last order and
  scores every method on it (hit rate, precision, recall, NDCG, coverage, bootstrap intervals):
  `gold/evaluation`.
* **predict_reorders** (buy again) fits a gradient-boosted model of which previously bought products
  each customer's next order holds, on the history without each customer's last order, and writes
  every customer's expected-F1-optimal set (possibly `None`) with probabilities and reasons
  (`gold/buy_again`), judged on the held-out last orders beside two baselines by the Instacart
  competition's mean F1 (`gold/buy_again_evaluation`, `gold/buy_again_importances`).
* **report** draws the day's plots (`gold/plots/ds=.../*.png`) and writes a self-contained HTML
  report (`gold/report/ds=.../index.html`), also served by the "Basket Insights" UI plugin; it emits
  the `plots` and `report` Assets.
* **publish** loads the gold tables into the SQL database of `BASKET_DB_CONN_ID` (PostgreSQL `COPY`;
  SQLite by default), replacing the date's rows in one transaction, beside `report` (neither needs
  the other); it emits every other gold Asset, so a DAG scheduled on them starts only once the day is
  fully published.
* **link_preferences** links both: each user's and each segment's product-cluster preferences,
  and a second customer segmentation on those preferences (fitted on a fixed sample of 50,000
  customers, every customer assigned).

A run for `ds` reads only partitions `<= ds`; re-running a date replaces that date's outputs.
Settings come from `BASKET_*` environment variables (see `include/basket_insights/config.py`);
the Params below override some of them for a manual run.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import (
    Asset,
    AsyncCallback,
    DeadlineAlert,
    DeadlineReference,
    Param,
    PokeReturnValue,
    cross_downstream,
    dag,
    task,
)

from basket_insights.config import GOLD_TABLES, load_settings
from basket_insights.metrics import task_finished, task_started

SETTINGS = load_settings()


def _asset(zone: str, table: str) -> Asset:
    # Named by its URI: one Airflow can then serve several lakes (e.g. staging and production).
    return Asset(uri=f"{SETTINGS.lake_url.rstrip('/')}/{zone}/{table}", group="basket_insights")


BRONZE = {t: _asset("bronze", t) for t in ("departments", "aisles", "products", "orders", "order_products")}
USER_FEATURES = _asset("silver", "user_features")
GOLD = {t: _asset("gold", t) for t in GOLD_TABLES}
#: Files in the lake, final when `report` writes them; `publish` marks every other gold table.
REPORTED = ("plots", "report")


def _lake():
    from basket_insights.lake import Lake

    return Lake(SETTINGS.lake_url, conn_id=SETTINGS.lake_conn_id)


@dag(
    dag_id="basket_insights",
    schedule="@daily",
    start_date=pendulum.parse(SETTINGS.start_date, tz="UTC"),
    catchup=SETTINGS.catchup,
    max_active_runs=SETTINGS.max_active_runs,
    doc_md=__doc__,
    # Airflow 3's replacement for SLAs: alert when a run is not done in time (basket_insights.alerts).
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=SETTINGS.deadline_minutes),
        callback=AsyncCallback(
            "basket_insights.alerts.deadline_missed",
            kwargs={"dag_id": "basket_insights", "deadline_minutes": SETTINGS.deadline_minutes},
        ),
    )
    if SETTINGS.deadline_minutes
    else None,
    tags=["basket-insights", "instacart"],
    default_args={
        "owner": "basket-insights",
        "retries": SETTINGS.task_retries,
        "retry_delay": timedelta(seconds=SETTINGS.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        # "task metrics: wall, CPU, peak memory, rows" in every task log (basket_insights.metrics)
        "on_execute_callback": task_started,
        "on_success_callback": task_finished,
    },
    params={
        "force_reingest": Param(False, type="boolean", description="Re-ingest every drop up to ds, changed or not."),
        "max_bad_row_fraction": Param(
            SETTINGS.max_bad_row_fraction,
            type="number",
            minimum=0,
            maximum=1,
            description="A drop with a larger share of bad rows fails its task.",
        ),
    },
)
def basket_insights() -> None:
    @task.sensor(
        poke_interval=SETTINGS.drop_poke_interval_s,
        timeout=SETTINGS.drop_wait_timeout_s,
        mode="reschedule",
        retries=0,
    )
    def wait_for_drop(ds: str | None = None, ti=None) -> PokeReturnValue:
        from airflow.sdk import get_current_context, timezone
        from airflow.sdk.exceptions import AirflowFailException

        from basket_insights.ingest import missing_drops

        missing = missing_drops(_lake(), ds)
        if missing:
            # Fail one look before Airflow's generic timeout, with the files named.
            first = ti.get_first_reschedule_date(get_current_context()) or timezone.utcnow()
            waited = (timezone.utcnow() - first).total_seconds()
            if waited + SETTINGS.drop_poke_interval_s > SETTINGS.drop_wait_timeout_s:
                raise AirflowFailException(
                    f"landing drop(s) for ds={ds} not delivered after waiting {waited:.0f} s "
                    f"(BASKET_DROP_WAIT_TIMEOUT={SETTINGS.drop_wait_timeout_s}): {', '.join(missing)}. "
                    "Deliver them and clear this task to run the day."
                )
        return PokeReturnValue(is_done=not missing)

    # One ingest of a table at a time across runs: concurrent dates (backfills, catch-up) would each
    # ingest the same pending earlier drops; one at a time, the next run finds them committed.
    @task(outlets=[BRONZE["departments"], BRONZE["aisles"], BRONZE["products"]], max_active_tis_per_dag=1)
    def ingest_catalog(ds: str | None = None, params: dict | None = None, run_id: str | None = None) -> dict:
        from basket_insights.ingest import ingest_catalog as run

        return run(
            _lake(), ds, max_bad_fraction=params["max_bad_row_fraction"], run_id=run_id, force=params["force_reingest"]
        )

    @task(outlets=[BRONZE["orders"]], max_active_tis_per_dag=1)
    def ingest_orders(ds: str | None = None, params: dict | None = None, run_id: str | None = None) -> dict:
        from basket_insights.ingest import ingest_orders as run

        return run(
            _lake(), ds, max_bad_fraction=params["max_bad_row_fraction"], run_id=run_id, force=params["force_reingest"]
        )

    @task(outlets=[BRONZE["order_products"]], max_active_tis_per_dag=1)
    def ingest_order_products(ds: str | None = None, params: dict | None = None, run_id: str | None = None) -> dict:
        from basket_insights.ingest import ingest_order_products as run

        return run(
            _lake(), ds, max_bad_fraction=params["max_bad_row_fraction"], run_id=run_id, force=params["force_reingest"]
        )

    # Splits the dates it finds changed: one at a time across runs, like the ingests it follows.
    @task(max_active_tis_per_dag=1)
    def shard_history(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.user_shards import refresh_shards

        return refresh_shards(_lake(), ds, SETTINGS.user_shards, run_id=run_id)

    @task(outlets=[USER_FEATURES])
    def build_features(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.features import build_user_features

        shards, address = SETTINGS.user_shards, SETTINGS.dask_address
        return build_user_features(_lake(), ds, shards=shards, dask_address=address, run_id=run_id)

    @task
    def segment_customers(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.segments import SegmentSettings, run_segment_customers

        return run_segment_customers(_lake(), ds, SegmentSettings.from_settings(SETTINGS), run_id=run_id)

    @task
    def cluster_products(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.products import ProductClusterSettings, run_cluster_products

        return run_cluster_products(_lake(), ds, ProductClusterSettings.from_settings(SETTINGS), run_id=run_id)

    @task
    def link_preferences(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.preferences import run_link_preferences
        from basket_insights.segments import SegmentSettings

        settings, shards, address = SegmentSettings.from_settings(SETTINGS), SETTINGS.user_shards, SETTINGS.dask_address
        return run_link_preferences(_lake(), ds, settings, shards=shards, dask_address=address, run_id=run_id)

    @task
    def mine_rules(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.rules import RuleSettings, run_mine_rules

        settings, shards, address = RuleSettings.from_settings(SETTINGS), SETTINGS.user_shards, SETTINGS.dask_address
        return run_mine_rules(_lake(), ds, settings, shards=shards, dask_address=address, run_id=run_id)

    @task
    def fit_recommender(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.recommend import recommender_settings, run_fit_recommender
        from basket_insights.rules import RuleSettings
        from basket_insights.segments import SegmentSettings

        return run_fit_recommender(
            _lake(),
            ds,
            RuleSettings.from_settings(SETTINGS),
            SegmentSettings.from_settings(SETTINGS),
            recommender_settings(SETTINGS),
            user_shards=SETTINGS.user_shards,
            dask_address=SETTINGS.dask_address,
            run_id=run_id,
        )

    @task
    def recommend(shard: int, ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.recommend import recommender_settings, run_recommend

        settings, shards = recommender_settings(SETTINGS), SETTINGS.recommend_shards
        user_shards, address = SETTINGS.user_shards, SETTINGS.dask_address
        return run_recommend(
            _lake(), ds, settings, shard, shards, user_shards=user_shards, dask_address=address, run_id=run_id
        )

    @task
    def collect_recommendations(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.recommend import run_collect_recommendations

        return run_collect_recommendations(_lake(), ds, SETTINGS.recommend_shards, run_id=run_id)

    @task
    def evaluate(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.recommend import recommender_settings, run_evaluate
        from basket_insights.rules import RuleSettings

        rules, settings = RuleSettings.from_settings(SETTINGS), recommender_settings(SETTINGS)
        user_shards, address = SETTINGS.user_shards, SETTINGS.dask_address
        return run_evaluate(_lake(), ds, rules, settings, user_shards=user_shards, dask_address=address, run_id=run_id)

    @task
    def predict_reorders(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.reorder_tasks import reorder_settings, run_predict_reorders

        settings, shards, address = reorder_settings(SETTINGS), SETTINGS.user_shards, SETTINGS.dask_address
        return run_predict_reorders(_lake(), ds, settings, shards=shards, dask_address=address, run_id=run_id)

    @task(outlets=[GOLD[t] for t in REPORTED])
    def report(ds: str | None = None, run_id: str | None = None) -> dict:
        from basket_insights.report import run_report

        return run_report(_lake(), ds, run_id=run_id)

    # Marks the day's gold tables as published: after every table committed.
    @task(outlets=[asset for table, asset in GOLD.items() if table not in REPORTED])
    def publish(ds: str | None = None, run_id: str | None = None) -> dict:
        from airflow.sdk import Connection

        from basket_insights.publish import run_publish, warehouse_for

        return run_publish(_lake(), warehouse_for(SETTINGS, Connection.get), ds, run_id=run_id)

    drop = wait_for_drop()
    catalog = ingest_catalog()
    orders = ingest_orders()
    drop >> [catalog, orders]
    features = build_features()
    order_lines = ingest_order_products()
    history = shard_history()
    rules = mine_rules()
    [catalog, orders] >> order_lines >> history >> [features, rules]
    preferences = link_preferences()
    segments_and_clusters = [features >> segment_customers(), catalog >> cluster_products()]
    segments_and_clusters >> preferences
    model = fit_recommender()
    shards = recommend.expand(shard=list(range(SETTINGS.recommend_shards)))
    # the one model serves (recommend) and is judged on the hold-out it was fitted without (evaluate)
    evaluation = evaluate()
    # The fit reads no preference: it waits for them so that link_preferences, ready long before a slot
    # frees, does not take the slot recommend or evaluate needs when the fit ends (docs/benchmarks.md).
    [rules, preferences] >> model >> [shards, evaluation]
    day = [shards >> collect_recommendations(), evaluation, history >> predict_reorders()]
    # the report and the SQL tables are written from the same gold tables, side by side
    cross_downstream(day, [report(), publish()])


basket_insights()
