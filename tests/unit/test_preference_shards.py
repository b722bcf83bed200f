"""Customers' product preferences computed over user shards equal those of the whole history."""

from __future__ import annotations

import pandas as pd
import pytest

from basket_insights.lake import Lake
from basket_insights.local_run import run_day
from basket_insights.preferences import run_link_preferences
from basket_insights.segments import SegmentSettings
from basket_insights.user_shards import refresh_shards
from tests.unit.conftest import HISTORY_END

#: Per-customer tables (compared sorted: each user shard writes its part) and the small ones.
PER_USER = {"user_product_preferences": ["user_id", "cluster_id"], "preference_segments": ["user_id"]}
SMALL = ("preference_segment_profiles", "preference_elbow", "segment_product_preferences")


def _tables(lake: Lake) -> dict[str, pd.DataFrame]:
    out = {}
    for table in (*PER_USER, *SMALL):
        frame = lake.read_table("gold", table, dates=[HISTORY_END]).to_pandas()
        keys = PER_USER.get(table)
        out[table] = frame.sort_values(keys, ignore_index=True) if keys else frame
    return out


@pytest.fixture
def clustered_lake(history_lake: Lake) -> Lake:
    """The history with the day's segments and product clusters, as link_preferences reads them."""
    run_day(history_lake, HISTORY_END, through="cluster_products", skip=("ingest",))
    return history_lake


@pytest.mark.parametrize(("shards", "fit_users"), [(3, 100), (7, 50_000)])
def test_preferences_from_shards_equal_the_whole_historys(clustered_lake: Lake, shards: int, fit_users: int) -> None:
    lake, settings = clustered_lake, SegmentSettings()
    whole = run_link_preferences(lake, HISTORY_END, settings, fit_users=fit_users)
    expected = _tables(lake)
    refresh_shards(lake, HISTORY_END, shards)
    done = run_link_preferences(lake, HISTORY_END, settings, shards=shards, fit_users=fit_users)
    assert done["shards"] == shards
    assert {k: v for k, v in done.items() if k != "shards"} == {k: v for k, v in whole.items() if k != "shards"}
    assert len(lake.manifest("gold", "preference_segments", HISTORY_END).files) == shards
    for table, frame in _tables(lake).items():
        pd.testing.assert_frame_equal(frame, expected[table], obj=table)
    # fitted on a sample, every customer is still assigned
    profiles = expected["preference_segment_profiles"]
    assert profiles["size"].sum() == len(expected["preference_segments"]) == done["users"]


def test_preferences_on_a_dask_cluster_equal_the_whole_historys(clustered_lake: Lake, dask_cluster) -> None:
    lake, settings = clustered_lake, SegmentSettings()
    run_link_preferences(lake, HISTORY_END, settings, fit_users=100)
    expected = _tables(lake)
    refresh_shards(lake, HISTORY_END, 3)
    address = dask_cluster.scheduler_address
    run_link_preferences(lake, HISTORY_END, settings, shards=3, dask_address=address, fit_users=100)
    for table, frame in _tables(lake).items():
        pd.testing.assert_frame_equal(frame, expected[table], obj=table)
