"""A generated feed with personal taste, shared by the recommender and evaluation tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from basket_insights.candidates import ProductGroups
from basket_insights.features import History, compute_user_features
from basket_insights.lake import Lake
from basket_insights.recommend import rule_miner
from basket_insights.recommender import RecommenderSettings
from basket_insights.rules import RuleSettings
from basket_insights.segments import segment_users
from basket_insights.synth import Feed, generate_feed, synthetic_catalog

END = "2026-06-30"


#: The last and an earlier date of :func:`history_lake`.
HISTORY_END, HISTORY_EARLIER = "2026-03-20", "2026-03-12"


@pytest.fixture
def history_lake(tmp_path: Path) -> Lake:
    """300 generated customers over 20 days, ingested to bronze (for the user-shard tests)."""
    from basket_insights.ingest import ingest_catalog, ingest_order_products, ingest_orders
    from basket_insights.synth import generate

    lake = Lake((tmp_path / "lake").as_uri())
    generate(lake, users=300, days=20, end_date=HISTORY_END, seed=5)
    for ingest in (ingest_catalog, ingest_orders, ingest_order_products):
        ingest(lake, HISTORY_END, max_bad_fraction=0.05)
    return lake


@pytest.fixture(scope="session")
def dask_cluster():
    """A real ``dask.distributed`` cluster: a scheduler and two worker processes, each with a nanny."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


@dataclass
class World:
    feed: Feed
    history: History
    segments: pd.DataFrame
    names: pd.Series
    groups: ProductGroups
    settings: RecommenderSettings

    def mine_rules(self, history: History) -> pd.DataFrame:
        return rule_miner(RuleSettings())(history)


@pytest.fixture(scope="session")
def taste_world() -> World:
    """3,000 customers over 120 days, synthetic catalog; aisles stand in for the product clusters."""
    catalog = synthetic_catalog(seed=2)
    feed = generate_feed(catalog, users=3000, days=120, end_date=END, seed=8, progress=False)
    lines = feed.lines.merge(feed.orders[["order_id", "user_id", "order_number"]], on="order_id")
    history = History(lines[["user_id", "order_id", "order_number", "product_id"]].astype(np.int64))
    segments = segment_users(compute_user_features(feed.orders, feed.lines, END)).assignments
    products = catalog.products
    clusters = products[["product_id"]].assign(cluster_id=products["aisle_id"], cluster_label="aisle")
    groups = ProductGroups.from_frames(products, clusters, int(products["product_id"].max()) + 1)
    names = products.set_index("product_id")["product_name"]
    return World(feed, history, segments, names, groups, RecommenderSettings(item_products=1000))
