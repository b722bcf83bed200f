"""The benchmark harness end to end at a tiny scale: the DAG through Airflow, metrics, baseline, docs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from basket_insights.bench import bench_pipeline, format_pipeline, update_docs
from basket_insights.config import GOLD_TABLES
from basket_insights.lake import Lake

pytestmark = pytest.mark.integration

#: Gold tables the sharded steps write a part per user shard of, and the keys of their rows.
SHARD_ORDERED = {
    "user_product_preferences": ["user_id", "cluster_id"],
    "preference_segments": ["user_id"],
    "buy_again": ["user_id", "rank"],
    "recommendations": ["user_id", "rank"],
}


def test_bench_pipeline_reports_every_task_and_the_baseline(tmp_path: Path) -> None:
    result = bench_pipeline(users=150, days=8, seed=3, cache=str(tmp_path), baseline_timeout=180)
    json.dumps(result)  # what --json writes
    tasks = {t["task_id"] for t in result["tasks"]}
    assert {"ingest_orders", "build_features", "mine_rules", "recommend", "evaluate", "report", "publish"} <= tasks
    for task in result["tasks"]:
        assert task["seconds"] > 0 and task["cpu_seconds"] >= 0 and task["peak_rss_mb"] > 50, task
    recommend = next(t for t in result["tasks"] if t["task_id"] == "recommend")
    assert (
        recommend["rows_out"]
        == 10 * next(t for t in result["tasks"] if t["task_id"] == "segment_customers")["rows_out"]
    )
    assert result["total_seconds"] >= max(t["seconds"] for t in result["tasks"])
    assert result["baseline"]["status"].startswith("ok:") and result["baseline_seconds"] > 0
    assert result["historical_load"]["ingest_mb_per_s"] > 0
    # a second run reuses the feed and the loaded history, and redoes only the day's work
    again = bench_pipeline(users=150, days=8, seed=3, cache=str(tmp_path), baseline_timeout=180)
    assert again["historical_load"] == result["historical_load"]
    day = {t["task_id"]: t for t in again["tasks"]}
    assert (
        day["ingest_orders"]["rows_in"]
        == next(t for t in result["tasks"] if t["task_id"] == "ingest_orders")["rows_in"]
    )

    # the same day with the history in user shards on a real two-worker Dask cluster: the same gold tables
    lake = Lake(result["lake"])
    tables = [t for t in GOLD_TABLES if t not in ("plots", "report")]
    unsharded = {t: lake.read_table("gold", t, dates=[result["ds"]]) for t in tables}
    sharded = bench_pipeline(
        users=150, days=8, seed=3, cache=str(tmp_path), baseline_timeout=180, user_shards=3, dask_workers=2
    )
    assert sharded["user_shards"] == 3 and sharded["history_split_seconds"] >= 0
    assert len(sharded["dask_worker_peak_rss_mb"]) == 2 and min(sharded["dask_worker_peak_rss_mb"]) > 50
    for table, expected in unsharded.items():
        # floats within 1e-9: KMeans' and the models' sums may run in another order on another thread
        after, before = lake.read_table("gold", table, dates=[result["ds"]]).to_pandas(), expected.to_pandas()
        if table in SHARD_ORDERED:  # one part per user shard: the same rows in another order
            after, before = (f.sort_values(SHARD_ORDERED[table], ignore_index=True) for f in (after, before))
        pd.testing.assert_frame_equal(after, before, check_exact=False, rtol=1e-9, obj=table)
    assert "3 user shards (split beforehand in" in format_pipeline(sharded, "bench pipeline --user-shards 3")

    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nearlier text\n")
    update_docs(format_pipeline(result, "python -m basket_insights bench pipeline --users 150"), docs)
    update_docs(format_pipeline(again, "python -m basket_insights bench pipeline --users 150"), docs)
    text = docs.read_text()
    assert text.count("<!-- bench-pipeline:start -->") == 1 and "earlier text" in text
    assert f"**{again['total_seconds']:.1f} s**" in text and "| evaluate |" in text
