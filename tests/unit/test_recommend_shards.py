"""Recommendations and their evaluation computed from user shards equal those from the whole history."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pyarrow as pa
import pytest

from basket_insights.config import load_settings
from basket_insights.evaluation import EvaluationSettings
from basket_insights.lake import Lake
from basket_insights.local_run import run_day
from basket_insights.recommend import (
    HELD_OUT_SEGMENTS,
    MODEL_TABLE,
    recommender_settings,
    run_collect_recommendations,
    run_evaluate,
    run_fit_recommender,
    run_recommend,
    shard_table,
)
from basket_insights.rules import RuleSettings
from basket_insights.segments import SegmentSettings
from basket_insights.user_shards import refresh_shards
from tests.unit.conftest import HISTORY_END

SETTINGS = recommender_settings(load_settings())
#: Rules of a small feed: mined again from the earlier baskets of every shard.
RULES = RuleSettings(min_support=0.002, min_count=3, min_lift=1.0)


def _recommendations(lake: Lake, tasks: int = 1) -> pd.DataFrame:
    parts = [lake.read_table("silver", shard_table(i, tasks), dates=[HISTORY_END]).to_pandas() for i in range(tasks)]
    # each user shard writes its part: compared in one order
    return pd.concat(parts).sort_values(["user_id", "rank"], ignore_index=True)


@pytest.fixture
def fitted_lake(history_lake: Lake) -> tuple[Lake, pd.DataFrame, dict]:
    """The day through fit_recommender, and the whole history's recommendations (and summary)."""
    run_day(history_lake, HISTORY_END, through="fit_recommender", skip=("ingest",))
    done = run_recommend(history_lake, HISTORY_END, SETTINGS)
    return history_lake, _recommendations(history_lake), done


@pytest.mark.parametrize(("user_shards", "tasks"), [(3, 1), (7, 2)])
def test_recommendations_from_shards_equal_the_whole_historys(fitted_lake, user_shards: int, tasks: int) -> None:
    lake, expected, whole = fitted_lake
    assert whole["users"] == expected["user_id"].nunique() > 100
    assert set(expected["source"]) >= {"item_model", "popular"}  # the shared evidence is used
    refresh_shards(lake, HISTORY_END, user_shards)
    done = [run_recommend(lake, HISTORY_END, SETTINGS, task, tasks, user_shards=user_shards) for task in range(tasks)]
    assert sum(d["users"] for d in done) == whole["users"]
    assert sum(d["rows_in"] for d in done) == whole["rows_in"]
    pd.testing.assert_frame_equal(_recommendations(lake, tasks), expected)
    # gold: the tasks' files copied as they are, read in task order
    parts = [lake.read_table("silver", shard_table(i, tasks), dates=[HISTORY_END]) for i in range(tasks)]
    assert run_collect_recommendations(lake, HISTORY_END, tasks)["rows_out"] == len(expected)
    assert lake.read_table("gold", "recommendations", dates=[HISTORY_END]).equals(pa.concat_tables(parts))
    files = [lake.manifest("silver", shard_table(i, tasks), HISTORY_END).files for i in range(tasks)]
    assert len(lake.manifest("gold", "recommendations", HISTORY_END).files) == sum(map(len, files)) == user_shards


def test_recommendations_on_a_dask_cluster_equal_the_whole_historys(fitted_lake, dask_cluster) -> None:
    lake, expected, _ = fitted_lake
    refresh_shards(lake, HISTORY_END, 3)
    address = dask_cluster.scheduler_address
    run_recommend(lake, HISTORY_END, SETTINGS, user_shards=3, dask_address=address)
    pd.testing.assert_frame_equal(_recommendations(lake), expected)


def _evaluation(lake: Lake) -> pd.DataFrame:
    return lake.read_table("gold", "evaluation", dates=[HISTORY_END]).to_pandas()


@pytest.mark.parametrize("shards", [3, 7])
def test_the_evaluation_from_shards_equals_the_whole_historys(fitted_lake, shards: int) -> None:
    lake, _, _ = fitted_lake
    rules = RULES
    whole = run_evaluate(lake, HISTORY_END, rules, SETTINGS)
    expected = _evaluation(lake)
    assert expected["users_evaluated"].gt(100).all() and expected["rules"].gt(0).all()
    refresh_shards(lake, HISTORY_END, shards)
    assert run_evaluate(lake, HISTORY_END, rules, SETTINGS, user_shards=shards) == whole
    pd.testing.assert_frame_equal(_evaluation(lake), expected)


def test_a_sampled_evaluation_on_a_dask_cluster_equals_the_whole_historys(fitted_lake, dask_cluster) -> None:
    lake, _, _ = fitted_lake
    rules = RULES
    evaluation = EvaluationSettings(customers=60, bootstrap=200)
    run_evaluate(lake, HISTORY_END, rules, SETTINGS, evaluation=evaluation)
    expected = _evaluation(lake)
    assert expected["users_evaluated"].eq(60).all()  # fewer than those with a held-out order
    refresh_shards(lake, HISTORY_END, 3)
    address = dask_cluster.scheduler_address
    run_evaluate(lake, HISTORY_END, rules, SETTINGS, user_shards=3, dask_address=address, evaluation=evaluation)
    pd.testing.assert_frame_equal(_evaluation(lake), expected)


def _fit(lake: Lake) -> tuple[dict, pd.DataFrame]:
    fit = json.loads(lake.read_file("silver", MODEL_TABLE, HISTORY_END, "fit.json"))
    segments = lake.read_table("silver", HELD_OUT_SEGMENTS, dates=[HISTORY_END]).to_pandas()
    return fit, segments.sort_values("user_id", ignore_index=True)


@pytest.mark.parametrize("shards", [3, 7])
def test_the_fit_from_shards_equals_the_whole_historys(history_lake: Lake, shards: int) -> None:
    lake = history_lake
    run_day(lake, HISTORY_END, through="mine_rules", skip=("ingest",))
    segment_settings = SegmentSettings.from_settings(load_settings())
    settings = replace(SETTINGS, ranker=replace(SETTINGS.ranker, train_users=50))
    whole = run_fit_recommender(lake, HISTORY_END, RULES, segment_settings, settings)
    expected_fit, expected_segments = _fit(lake)
    # a ranker fitted on a sample smaller than the customers with a label order, with rules
    assert expected_fit["training"]["customers"] == 50 and expected_fit["ranker"]
    refresh_shards(lake, HISTORY_END, shards)
    done = run_fit_recommender(lake, HISTORY_END, RULES, segment_settings, settings, user_shards=shards)
    assert done == whole
    fit, segments = _fit(lake)
    assert fit == expected_fit
    pd.testing.assert_frame_equal(segments, expected_segments)


def test_the_fit_on_a_dask_cluster_equals_the_whole_historys(history_lake: Lake, dask_cluster) -> None:
    lake = history_lake
    run_day(lake, HISTORY_END, through="mine_rules", skip=("ingest",))
    segment_settings = SegmentSettings.from_settings(load_settings())
    run_fit_recommender(lake, HISTORY_END, RULES, segment_settings, SETTINGS)
    expected_fit, expected_segments = _fit(lake)
    refresh_shards(lake, HISTORY_END, 3)
    address = dask_cluster.scheduler_address
    run_fit_recommender(lake, HISTORY_END, RULES, segment_settings, SETTINGS, user_shards=3, dask_address=address)
    fit, segments = _fit(lake)
    assert fit == expected_fit
    pd.testing.assert_frame_equal(segments, expected_segments)
