"""Product clusters on the real catalog and on awkward catalogs; preferences linked back to customers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from basket_insights.lake import Lake
from basket_insights.preferences import link_preferences
from basket_insights.products import (
    ProductClusterSettings,
    catalog_hash,
    cluster_products,
    department_coherence,
    run_cluster_products,
)
from basket_insights.synth import load_catalog


def test_real_catalog_clusters_are_coherent(instacart: Path) -> None:
    catalog = load_catalog(instacart)
    result = cluster_products(catalog.products, catalog.aisles, catalog.departments, ProductClusterSettings(k=60))
    coherence = department_coherence(result.clusters, catalog.products, result.summary)
    assert coherence >= 0.95, coherence  # measured 0.999 (docs/segments.md)
    assert len(result.clusters) == 49_688 and result.summary["size"].sum() == 49_688
    assert result.summary["cluster_label"].is_unique
    banana = result.clusters.set_index("product_id").loc[24852, "cluster_label"]
    assert "(produce)" in banana
    assert (result.summary["top_terms"].str.len() > 0).all()


def _tiny_catalog() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    products = pd.DataFrame(
        {
            "product_id": range(1, 9),
            "product_name": [
                "Banana",
                "Organic Banana",
                "",
                "Crème Brûlée",
                "日本茶",
                "Tortilla Chips",
                "Sea Salt Chips",
                "the",
            ],
            "aisle_id": [1, 1, 1, 2, 3, 3, 3, 2],
            "department_id": [1, 1, 1, 2, 3, 3, 3, 2],
        }
    )
    aisles = pd.DataFrame({"aisle_id": [1, 2, 3, 4], "aisle": ["fruit", "desserts", "chips", "empty aisle"]})
    departments = pd.DataFrame({"department_id": [1, 2, 3], "department": ["produce", "frozen", "snacks"]})
    return products, aisles, departments


def test_empty_and_non_ascii_names_and_an_empty_aisle() -> None:
    products, aisles, departments = _tiny_catalog()
    result = cluster_products(products, aisles, departments, ProductClusterSettings(k=3))
    assert len(result.clusters) == 8 and result.clusters["cluster_id"].between(0, 2).all()
    by_id = result.clusters.set_index("product_id")["cluster_id"]
    assert by_id[1] == by_id[2] == by_id[3]  # the nameless product sits with its aisle
    assert by_id[6] == by_id[7]
    # more clusters than products: capped, no crash
    assert cluster_products(products.head(2), aisles, departments, ProductClusterSettings(k=10)).summary.shape[0] == 2
    with pytest.raises(ValueError, match="no products"):
        cluster_products(products.iloc[:0], aisles, departments)


def test_same_catalog_same_clusters_and_hash() -> None:
    products, aisles, departments = _tiny_catalog()
    a = cluster_products(products, aisles, departments, ProductClusterSettings(k=3))
    b = cluster_products(products.sample(frac=1, random_state=1).reset_index(drop=True), aisles, departments,
                         ProductClusterSettings(k=3))  # fmt: skip
    pd.testing.assert_frame_equal(
        a.clusters, cluster_products(products, aisles, departments, ProductClusterSettings(k=3)).clusters
    )
    assert catalog_hash(products, aisles, departments) == catalog_hash(
        products.sample(frac=1, random_state=1), aisles, departments
    )
    assert len(b.clusters) == 8
    changed = products.assign(product_name=products["product_name"].replace("Banana", "Plantain"))
    assert catalog_hash(changed, aisles, departments) != catalog_hash(products, aisles, departments)


def test_unchanged_catalog_is_not_clustered_again(lake: Lake) -> None:
    products, aisles, departments = _tiny_catalog()
    for name, frame in (("products", products), ("aisles", aisles), ("departments", departments)):
        lake.write_table("bronze", name, "2026-01-01", pa.Table.from_pandas(frame, preserve_index=False))
    settings = ProductClusterSettings(k=3)
    first = run_cluster_products(lake, "2026-01-01", settings)
    second = run_cluster_products(lake, "2026-01-02", settings)
    assert first["reused_from"] is None and second["reused_from"] == "2026-01-01"
    assert lake.read_table("gold", "product_clusters", dates=["2026-01-02"]).equals(
        lake.read_table("gold", "product_clusters", dates=["2026-01-01"])
    )
    lake.write_table("bronze", "products", "2026-01-03", pa.Table.from_pandas(products.head(6), preserve_index=False))
    assert run_cluster_products(lake, "2026-01-03", settings)["reused_from"] is None


def test_preferences_shares_ranks_and_segment_lift() -> None:
    clusters = pd.DataFrame(
        {"product_id": [1, 2, 3], "cluster_id": [0, 0, 1], "cluster_label": ["fruit", "fruit", "chips"]}
    )
    segments = pd.DataFrame(
        {"user_id": [10, 20, 30], "segment_id": [0, 0, 1], "segment_name": ["loyal", "loyal", "casual"]}
    )
    users = np.array([10, 10, 10, 20, 30, 30, 30, 30])
    products = np.array([1, 2, 3, 1, 3, 3, 3, 99])  # 99 has no cluster: ignored
    result = link_preferences(users, products, clusters, segments)
    prefs = result.user_preferences.set_index(["user_id", "cluster_id"])
    assert prefs.loc[(10, 0), "share"] == pytest.approx(2 / 3) and prefs.loc[(10, 0), "rank"] == 1
    assert prefs.loc[(10, 1), "rank"] == 2 and prefs.loc[(30, 1), "share"] == 1.0
    assert result.user_preferences.groupby("user_id")["share"].sum().round(6).eq(1).all()
    lift = result.segment_preferences.set_index(["segment_name", "cluster_label"])["lift"]
    overall_fruit = 3 / 7
    assert lift[("loyal", "fruit")] == pytest.approx((3 / 4) / overall_fruit)
    assert lift[("casual", "chips")] == pytest.approx(1 / (4 / 7))
    assert set(result.preference_segments["user_id"]) == {10, 20, 30}
