"""Buy again computed over user shards equals buy again from the whole history."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from basket_insights.evaluation import EvaluationSettings
from basket_insights.lake import Lake
from basket_insights.reorder_model import ReorderSettings
from basket_insights.reorder_tasks import MODEL_TABLE, run_predict_reorders
from basket_insights.user_shards import refresh_shards
from tests.unit.conftest import HISTORY_END

#: Samples smaller than the customers, so that both are drawn across the shards.
SETTINGS = ReorderSettings(train_users=50, importance_rows=2_000)
EVALUATION = EvaluationSettings(customers=100, bootstrap=200)
TABLES = {"buy_again": ["user_id", "rank"], "buy_again_evaluation": None, "buy_again_importances": None}


def _outputs(lake: Lake) -> dict[str, pd.DataFrame | dict]:
    out: dict[str, pd.DataFrame | dict] = {}
    for table, keys in TABLES.items():
        frame = lake.read_table("gold", table, dates=[HISTORY_END]).to_pandas()
        # each user shard writes its part of buy_again: compared in one order
        out[table] = frame.sort_values(keys, ignore_index=True) if keys else frame
    out["fit"] = json.loads(lake.read_file("silver", MODEL_TABLE, HISTORY_END, "fit.json"))
    return out


def _assert_same(got: dict, expected: dict) -> None:
    assert got["fit"] == expected["fit"]
    for table in TABLES:
        pd.testing.assert_frame_equal(got[table], expected[table], obj=table)


@pytest.fixture
def whole(history_lake: Lake) -> tuple[dict, dict]:
    """The whole history's buy again: the task's summary and its outputs."""
    done = run_predict_reorders(history_lake, HISTORY_END, SETTINGS, evaluation=EVALUATION)
    return done, _outputs(history_lake)


@pytest.mark.parametrize("shards", [3, 7])
def test_buy_again_from_shards_equals_the_whole_historys(history_lake: Lake, whole, shards: int) -> None:
    summary, expected = whole
    # a real fit and a sampled evaluation, not the fallback on everyone
    assert expected["fit"]["params"]
    assert expected["buy_again_evaluation"]["users_evaluated"].eq(EVALUATION.customers).all()
    assert expected["fit"]["training"]["customers"] == SETTINGS.train_users
    refresh_shards(history_lake, HISTORY_END, shards)
    done = run_predict_reorders(history_lake, HISTORY_END, SETTINGS, shards=shards, evaluation=EVALUATION)
    assert done == summary | {"shards": shards}
    assert len(history_lake.manifest("gold", "buy_again", HISTORY_END).files) == shards
    _assert_same(_outputs(history_lake), expected)


def test_buy_again_on_a_dask_cluster_equals_the_whole_historys(history_lake: Lake, whole, dask_cluster) -> None:
    _, expected = whole
    refresh_shards(history_lake, HISTORY_END, 3)
    address = dask_cluster.scheduler_address
    run_predict_reorders(history_lake, HISTORY_END, SETTINGS, shards=3, dask_address=address, evaluation=EVALUATION)
    _assert_same(_outputs(history_lake), expected)
