"""Frequent itemsets and rules counted over user shards equal those of the whole history."""

from __future__ import annotations

import pandas as pd
import pytest

from basket_insights.itemset_shards import sharded_itemsets
from basket_insights.lake import Lake
from basket_insights.rules import RuleSettings, baskets_as_of, frequent_itemsets, run_mine_rules
from basket_insights.user_shards import refresh_shards
from tests.unit.conftest import HISTORY_EARLIER, HISTORY_END

#: Low thresholds, so that the small history has frequent pairs and triples to count.
SETTINGS = RuleSettings(min_support=0.004, min_count=3, min_confidence=0.05, min_lift=1.0)


def _gold(lake: Lake, table: str, ds: str) -> pd.DataFrame:
    return lake.read_table("gold", table, dates=[ds]).to_pandas()


@pytest.mark.parametrize("shards", [3, 7])
def test_itemsets_and_rules_from_shards_equal_the_whole_historys(history_lake: Lake, shards: int) -> None:
    lake = history_lake
    refresh_shards(lake, HISTORY_END, shards)
    for ds in (HISTORY_EARLIER, HISTORY_END):  # point in time: the earlier date counts only its baskets
        whole = frequent_itemsets(baskets_as_of(lake, ds), SETTINGS.min_support, 3, SETTINGS.min_count)
        assert (whole["length"] == 3).any(), "the test needs triples to count"
        counted, n_baskets, _ = sharded_itemsets(lake, ds, SETTINGS, shards)
        pd.testing.assert_frame_equal(counted, whole)
        assert n_baskets == baskets_as_of(lake, ds).n_baskets

        run_mine_rules(lake, ds, SETTINGS)
        expected = {t: _gold(lake, t, ds) for t in ("frequent_itemsets", "association_rules")}
        done = run_mine_rules(lake, ds, SETTINGS, shards=shards)
        assert done["shards"] == shards and done["rules"] > 0
        for table, frame in expected.items():
            pd.testing.assert_frame_equal(_gold(lake, table, ds), frame)


def test_itemsets_counted_on_a_dask_cluster_equal_the_whole_historys(history_lake: Lake, dask_cluster) -> None:
    lake, shards = history_lake, 3
    refresh_shards(lake, HISTORY_END, shards)
    whole = frequent_itemsets(baskets_as_of(lake, HISTORY_END), SETTINGS.min_support, 3, SETTINGS.min_count)
    counted, _, _ = sharded_itemsets(lake, HISTORY_END, SETTINGS, shards, dask_address=dask_cluster.scheduler_address)
    pd.testing.assert_frame_equal(counted, whole)


def test_shards_where_nothing_is_frequent_give_no_itemsets_and_no_rules(history_lake: Lake) -> None:
    lake, shards = history_lake, 3
    refresh_shards(lake, HISTORY_END, shards)
    strict = RuleSettings(min_support=0.9, min_count=3)
    counted, n_baskets, _ = sharded_itemsets(lake, HISTORY_END, strict, shards)
    assert counted.empty and n_baskets > 0
    done = run_mine_rules(lake, HISTORY_END, strict, shards=shards)
    assert done["itemsets"] == 0 and done["rules"] == 0
    with pytest.raises(ValueError, match="min_support"):
        sharded_itemsets(lake, HISTORY_END, RuleSettings(min_support=0), shards)
