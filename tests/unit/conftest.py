"""A generated feed with personal taste, shared by the recommender and evaluation tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from basket_insights.candidates import ProductGroups
from basket_insights.features import History, compute_user_features
from basket_insights.recommend import rule_miner
from basket_insights.recommender import RecommenderSettings
from basket_insights.rules import RuleSettings
from basket_insights.segments import segment_users
from basket_insights.synth import Feed, generate_feed, synthetic_catalog

END = "2026-06-30"


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
