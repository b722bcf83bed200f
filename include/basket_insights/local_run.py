"""The DAG's steps for one date in this process, in the DAG's order, without Airflow.

For the tests' small lakes and the quality benchmark: the same functions the DAG's tasks call, with
the settings of the environment, one after another (``recommend`` as one shard).
"""

from __future__ import annotations

import logging
import time

from basket_insights.lake import Lake

log = logging.getLogger(__name__)

#: The steps in the DAG's order; ``run_day(..., through=step)`` stops after ``step``.
STEPS = (
    "ingest",
    "shard_history",
    "build_features",
    "segment_customers",
    "cluster_products",
    "link_preferences",
    "mine_rules",
    "fit_recommender",
    "recommend",
    "evaluate",
    "predict_reorders",
    "report",
)


def run_day(lake: Lake, ds: str, *, through: str = "report", skip: tuple[str, ...] = ()) -> None:
    """Run the steps of :data:`STEPS` for ``ds`` up to ``through``, leaving out those in ``skip``."""
    from basket_insights import ingest
    from basket_insights.config import load_settings
    from basket_insights.features import build_user_features
    from basket_insights.preferences import run_link_preferences
    from basket_insights.products import ProductClusterSettings, run_cluster_products
    from basket_insights.recommend import (
        recommender_settings,
        run_collect_recommendations,
        run_evaluate,
        run_fit_recommender,
        run_recommend,
    )
    from basket_insights.reorder_tasks import reorder_settings, run_predict_reorders
    from basket_insights.report import run_report
    from basket_insights.rules import RuleSettings, run_mine_rules
    from basket_insights.segments import SegmentSettings, run_segment_customers
    from basket_insights.user_shards import refresh_shards

    if through not in STEPS or set(skip) - set(STEPS):
        raise ValueError(f"steps are {', '.join(STEPS)}")
    settings = load_settings()
    rules, segments = RuleSettings.from_settings(settings), SegmentSettings.from_settings(settings)
    recommending = recommender_settings(settings)

    def recommend() -> None:
        user_shards, address = settings.user_shards, settings.dask_address
        run_recommend(lake, ds, recommending, 0, user_shards=user_shards, dask_address=address)
        run_collect_recommendations(lake, ds, 1)

    def ingest_all() -> None:
        for step in (ingest.ingest_catalog, ingest.ingest_orders, ingest.ingest_order_products):
            step(lake, ds, max_bad_fraction=settings.max_bad_row_fraction)

    runs = {
        "ingest": ingest_all,
        "shard_history": lambda: refresh_shards(lake, ds, settings.user_shards),
        "build_features": lambda: build_user_features(
            lake, ds, shards=settings.user_shards, dask_address=settings.dask_address
        ),
        "segment_customers": lambda: run_segment_customers(lake, ds, segments),
        "cluster_products": lambda: run_cluster_products(lake, ds, ProductClusterSettings.from_settings(settings)),
        "link_preferences": lambda: run_link_preferences(
            lake, ds, segments, shards=settings.user_shards, dask_address=settings.dask_address
        ),
        "mine_rules": lambda: run_mine_rules(
            lake, ds, rules, shards=settings.user_shards, dask_address=settings.dask_address
        ),
        "fit_recommender": lambda: run_fit_recommender(
            lake,
            ds,
            rules,
            segments,
            recommending,
            user_shards=settings.user_shards,
            dask_address=settings.dask_address,
        ),
        "recommend": recommend,
        "evaluate": lambda: run_evaluate(
            lake, ds, rules, recommending, user_shards=settings.user_shards, dask_address=settings.dask_address
        ),
        "predict_reorders": lambda: run_predict_reorders(
            lake, ds, reorder_settings(settings), shards=settings.user_shards, dask_address=settings.dask_address
        ),
        "report": lambda: run_report(lake, ds),
    }
    started = time.monotonic()
    for step in STEPS[: STEPS.index(through) + 1]:
        if step not in skip:
            runs[step]()
    log.info("local run ds=%s: steps through %s in %.1f s", ds, through, time.monotonic() - started)
