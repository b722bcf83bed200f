"""DagBag integrity: the DAG file imports cleanly, fast, without live connections or heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from basket_insights.config import GOLD_TABLES
from tests.conftest import REPO

PROBE = textwrap.dedent(
    """
    import json, sys, time
    started = time.monotonic()
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    heavy = sorted(m for m in ("pandas", "pyarrow", "sklearn", "great_expectations", "matplotlib", "mlxtend", "scipy")
                   if m in sys.modules)
    dag = bag.dags.get("basket_insights")
    out = {"import_errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
           "dag_ids": sorted(bag.dag_ids), "heavy_modules": heavy, "seconds": time.monotonic() - started}
    if dag is not None:
        out.update({
            "tags": sorted(dag.tags), "schedule": str(dag.schedule), "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs, "params": sorted(dag.params.keys()), "doc_md": bool(dag.doc_md),
            "tasks": {t.task_id: {"retries": t.retries, "upstream": sorted(t.upstream_task_ids),
                                  "mode": getattr(t, "mode", None), "timeout": getattr(t, "timeout", None),
                                  "outlets": [getattr(o, "uri", str(o)) for o in t.outlets]}
                      for t in dag.tasks},
        })
    print(json.dumps(out, default=str))
    """
)


@pytest.fixture(scope="module")
def dagbag(airflow_home: dict[str, str]) -> dict:
    env = {**airflow_home, "BASKET_LAKE_URL": "s3://not-reachable-bucket", "BASKET_LAKE_CONN_ID": "missing_conn"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_import_errors(dagbag: dict) -> None:
    assert dagbag["import_errors"] == {}
    assert dagbag["dag_ids"] == ["basket_insights"]


def test_dag_file_imports_no_heavy_library(dagbag: dict) -> None:
    assert dagbag["heavy_modules"] == []


def test_schedule_tags_docs_and_params(dagbag: dict) -> None:
    assert dagbag["schedule"] == "@daily"
    assert "basket-insights" in dagbag["tags"]
    assert dagbag["doc_md"]
    assert dagbag["catchup"] is False and dagbag["max_active_runs"] == 1
    assert dagbag["params"] == ["force_reingest", "max_bad_row_fraction"]


def test_every_task_retries_except_the_sensor(dagbag: dict) -> None:
    for task_id, task in dagbag["tasks"].items():
        if task_id == "wait_for_drop":
            assert task["retries"] == 0 and task["mode"] == "reschedule" and task["timeout"]
        else:
            assert task["retries"] >= 1, task_id


def test_task_order(dagbag: dict) -> None:
    tasks = dagbag["tasks"]
    assert tasks["ingest_catalog"]["upstream"] == ["wait_for_drop"]
    assert tasks["ingest_orders"]["upstream"] == ["wait_for_drop"]
    assert tasks["ingest_order_products"]["upstream"] == ["ingest_catalog", "ingest_orders"]
    # the features read the user shards of the history (when BASKET_USER_SHARDS > 1) once they are in step
    assert tasks["shard_history"]["upstream"] == ["ingest_order_products"]
    assert tasks["build_features"]["upstream"] == ["shard_history"]
    assert tasks["mine_rules"]["upstream"] == ["shard_history"]
    assert tasks["build_features"]["outlets"] == ["s3://not-reachable-bucket/silver/user_features"]
    # evaluate judges the model that serves: it runs beside the recommend shards, after the fit
    assert tasks["evaluate"]["upstream"] == ["fit_recommender"]
    # the report and the SQL publish read the same finished gold tables: side by side, not one after the other
    assert tasks["report"]["upstream"] == ["collect_recommendations", "evaluate", "predict_reorders"]
    assert tasks["publish"]["upstream"] == ["collect_recommendations", "evaluate", "predict_reorders"]
    # buy again needs only the order history (its user shards): it runs beside the whole recommendation chain
    assert tasks["predict_reorders"]["upstream"] == ["shard_history"]


def test_each_gold_asset_is_marked_once_it_is_final(dagbag: dict) -> None:
    """The tables when their SQL publish committed, the report's files when the report wrote them."""
    gold = "s3://not-reachable-bucket/gold/"
    emitting = {t for t, task in dagbag["tasks"].items() if any(o.startswith(gold) for o in task["outlets"])}
    assert emitting == {"publish", "report"}
    published = {o.removeprefix(gold) for o in dagbag["tasks"]["publish"]["outlets"]}
    reported = {o.removeprefix(gold) for o in dagbag["tasks"]["report"]["outlets"]}
    assert reported == {"report", "plots"}
    assert published | reported == set(GOLD_TABLES) and not published & reported


def test_the_ui_plugin_loads_with_its_app_and_menu_entry(airflow_home: dict[str, str]) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "plugins", "--output", "json"],
        env=airflow_home, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    plugins = {p["name"]: p for p in json.loads(done.stdout[done.stdout.index("[") :])}
    plugin = plugins["basket_insights"]
    assert "Basket Insights" in json.dumps(plugin["fastapi_apps"]) and "/basket-insights" in json.dumps(plugin)
    assert "basket-insights/report/latest" in json.dumps(plugin["external_views"])


def test_settings_from_the_environment_are_validated(airflow_home: dict[str, str]) -> None:
    env = {**airflow_home, "BASKET_MAX_BAD_ROW_FRACTION": "lots"}
    done = subprocess.run(
        [sys.executable, "-c", "import basket_insights.config as c; c.load_settings()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "BASKET_MAX_BAD_ROW_FRACTION='lots' is not a number" in done.stderr
