"""The synthetic feed: Instacart schema, determinism, calibrated shape and planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights.ingest import READ_TYPES
from basket_insights.lake import Lake
from basket_insights.synth import SHOPPER_TYPES, csv_bytes, feed_chunks, generate, generate_feed, synthetic_catalog


@pytest.fixture(scope="module")
def catalog():
    return synthetic_catalog(seed=3)


@pytest.fixture(scope="module")
def feed(catalog):
    """A year of 6,000 users: enough for the statistics to settle."""
    return generate_feed(catalog, users=6000, days=365, end_date="2026-06-30", seed=11, progress=False)


def test_synthetic_catalog_has_the_real_shape(catalog) -> None:
    assert len(catalog.products) == 49_688
    assert catalog.products["product_id"].tolist() == list(range(1, 49_689))
    assert catalog.products["product_name"].is_unique
    assert len(catalog.aisles) == 134 and catalog.aisles["aisle_id"].is_unique
    assert len(catalog.departments) == 21
    assert set(catalog.products["aisle_id"]) <= set(catalog.aisles["aisle_id"])
    assert catalog.products["aisle_id"].nunique() == 134  # no empty aisle in the synthetic catalog
    assert set(catalog.products["department_id"]) == set(catalog.departments["department_id"])


def test_orders_and_lines_follow_the_instacart_schema(feed) -> None:
    assert list(feed.orders.columns[:7]) == list(READ_TYPES["orders"])
    assert list(feed.lines.columns) == list(READ_TYPES["order_products"])
    assert feed.orders["order_id"].is_unique
    assert not feed.lines.duplicated(["order_id", "product_id"]).any()
    assert feed.lines["order_id"].isin(feed.orders["order_id"]).all()
    assert feed.orders["order_dow"].between(0, 6).all() and feed.orders["order_hour_of_day"].between(0, 23).all()
    first = feed.orders["order_number"] == 1
    assert feed.orders.loc[first, "days_since_prior_order"].isna().all()
    assert feed.orders.loc[~first, "days_since_prior_order"].between(0, 30).all()
    carts = feed.lines.groupby("order_id")["add_to_cart_order"].agg(["min", "max", "size"])
    assert (carts["min"] == 1).all() and (carts["max"] == carts["size"]).all()


def test_same_seed_same_feed_other_seed_other_feed(catalog) -> None:
    a = generate_feed(catalog, users=300, days=30, end_date="2026-06-30", seed=5, progress=False)
    b = generate_feed(catalog, users=300, days=30, end_date="2026-06-30", seed=5, progress=False)
    c = generate_feed(catalog, users=300, days=30, end_date="2026-06-30", seed=6, progress=False)
    pd.testing.assert_frame_equal(a.orders, b.orders)
    pd.testing.assert_frame_equal(a.lines, b.lines)
    assert not a.lines.equals(c.lines)


def test_a_feed_in_chunks_extends_the_feed_of_its_first_chunk(catalog) -> None:
    """Users simulated in chunks (bounded memory): the first chunk is the feed of its users alone, the
    later ones add users and orders with their own ids, the same planted globals and the same habits."""
    whole = generate_feed(catalog, users=900, days=60, end_date="2026-06-30", seed=5, progress=False)
    chunks = list(
        feed_chunks(catalog, users=900, days=60, end_date="2026-06-30", seed=5, progress=False, chunk_users=400)
    )
    assert [len(c.user_types) for c in chunks] == [400, 400, 100]
    first = generate_feed(catalog, users=400, days=60, end_date="2026-06-30", seed=5, progress=False)
    pd.testing.assert_frame_equal(chunks[0].orders, first.orders)
    pd.testing.assert_frame_equal(chunks[0].lines, first.lines)
    chunked = generate_feed(catalog, users=900, days=60, end_date="2026-06-30", seed=5, progress=False, chunk_users=400)
    assert chunked.user_types["user_id"].tolist() == list(range(1, 901))
    assert chunked.orders["order_id"].is_unique
    assert chunked.lines["order_id"].isin(chunked.orders["order_id"]).all()
    assert chunked.orders["user_id"].between(1, 900).all() and chunked.orders["user_id"].max() > 800
    assert all(c.bundles.equals(chunks[0].bundles) and c.interests.equals(chunks[0].interests) for c in chunks)
    later = chunked.lines["order_id"].isin(chunked.orders.loc[chunked.orders["user_id"] > 400, "order_id"])
    assert chunked.lines.loc[later, "reordered"].mean() == pytest.approx(whole.lines["reordered"].mean(), abs=0.05)
    assert len(chunked.lines) / len(chunked.orders) == pytest.approx(len(whole.lines) / len(whole.orders), rel=0.1)


def test_generate_in_chunks_delivers_every_order_once(lake: Lake) -> None:
    summary = generate(lake, users=300, days=15, end_date="2026-02-10", seed=2, chunk_users=120)
    days = lake.landing_dates("orders")
    orders = pd.concat([pd.read_csv(lake.landing_file("orders", d).path) for d in days])
    lines = pd.concat([pd.read_csv(lake.landing_file("order_products", d).path) for d in days])
    feed = generate_feed(
        synthetic_catalog(seed=2), users=300, days=15, end_date="2026-02-10", seed=2, progress=False, chunk_users=120
    )
    assert len(orders) == summary["orders"] == len(feed.orders) and orders["order_id"].is_unique
    assert sorted(orders["order_id"]) == sorted(feed.orders["order_id"])
    assert len(lines) == summary["order_lines"] == len(feed.lines)
    assert lake.read_table("_truth", "user_types").column("user_id").to_pylist() == list(range(1, 301))


def test_calibrated_statistics_match_the_real_samples(feed) -> None:
    """Targets measured on the real samples (docs/data.md); tolerances stated here."""
    sizes = feed.lines.groupby("order_id").size()
    assert sizes.mean() == pytest.approx(10.0, abs=1.0)  # real: 10.0 (first 50,000 prior lines)
    assert sizes.median() in (7, 8, 9)  # real: 8
    assert feed.lines["reordered"].mean() == pytest.approx(0.59, abs=0.04)  # real: 0.590
    gaps = feed.orders["days_since_prior_order"].dropna()
    share = gaps.value_counts(normalize=True)
    assert gaps.mean() == pytest.approx(11.2, abs=1.5)  # real: 11.2
    assert share[30] == pytest.approx(0.114, abs=0.03)  # real: 11.4% at the cap
    assert share[7] > 1.5 * share[[5, 6, 8, 9]].mean()  # the weekly spike
    dow = feed.orders["order_dow"].value_counts(normalize=True).sort_index()
    assert dow.iloc[0] > dow.iloc[3] + 0.03 and dow.iloc[1] > dow.iloc[3] + 0.03  # days 0 and 1 busiest
    hours = feed.orders["order_hour_of_day"].value_counts(normalize=True).sort_index()
    assert hours.loc[9:16].sum() > 0.5 and hours.loc[0:5].sum() < 0.05
    # Zipf-like popularity: the top 1% of products carry a large share, the tail is long.
    counts = feed.lines["product_id"].value_counts()
    assert counts.head(len(counts) // 100).sum() / counts.sum() > 0.2
    assert counts.iloc[0] > 50 * counts.median()


def test_shopper_types_are_planted(feed) -> None:
    orders = feed.orders.merge(feed.user_types, on="user_id")
    gap = orders.groupby("shopper_type")["days_since_prior_order"].mean()
    assert gap["loyal"] < gap["mixed"] < gap["casual"]
    lines = feed.lines.merge(orders[["order_id", "shopper_type"]], on="order_id")
    basket = lines.groupby("shopper_type").size() / orders.groupby("shopper_type").size()
    assert basket["loyal"] > basket["mixed"] > basket["casual"]
    reorder = lines.groupby("shopper_type")["reordered"].mean()
    assert reorder["loyal"] > reorder["casual"] + 0.1
    shares = feed.user_types["shopper_type"].value_counts(normalize=True)
    for shopper in SHOPPER_TYPES:
        assert shares[shopper.name] == pytest.approx(shopper.share, abs=0.03)


def test_bundles_are_planted(feed) -> None:
    baskets = feed.lines.groupby("order_id")["product_id"].apply(set)
    n = len(baskets)
    for row in feed.bundles.head(10).itertuples():
        with_a = baskets[baskets.map(lambda s, a=row.antecedent: a in s)]
        both = with_a.map(lambda s, b=row.consequent: b in s).sum()
        confidence = both / max(len(with_a), 1)
        support_b = baskets.map(lambda s, b=row.consequent: b in s).sum() / n
        assert confidence >= 0.35, row
        assert confidence / support_b > 5, row  # lift: B comes with A far more than by chance


def test_customers_have_stable_personal_interests(feed, catalog) -> None:
    """Each customer leans on a few interests for their whole history: their purchases, early and late,
    over-index on their own interests' products, and most weight sits on two or three interests."""
    truth = feed.user_interests
    assert set(truth["interest_id"]) <= set(feed.interests["interest_id"])
    assert (truth.groupby("user_id")["weight"].sum() <= 1 + 1e-9).all()
    top3 = truth.sort_values("weight", ascending=False).groupby("user_id")["weight"].apply(lambda w: w.head(3).sum())
    assert top3.median() > 0.6  # concentrated (measured 0.73; an even spread would give 3/24)
    assert {"organic", "gluten free"} <= set(feed.interests["interest"])  # named after their keyword
    names = catalog.products.set_index("product_id")["product_name"].str.lower()
    organic = set(names[names.str.contains("organic")].index)
    lines = feed.lines.merge(feed.orders[["order_id", "user_id", "order_number"]], on="order_id")
    lines["organic"] = lines["product_id"].isin(organic)
    organic_id = int(feed.interests.loc[feed.interests["interest"] == "organic", "interest_id"].iloc[0])
    fans = truth[(truth["interest_id"] == organic_id) & (truth["weight"] > 0.5)]["user_id"]
    is_fan = lines["user_id"].isin(fans)
    assert len(fans) > 50
    assert lines.loc[is_fan, "organic"].mean() > 2 * lines.loc[~is_fan, "organic"].mean()
    early = lines["order_number"] <= 3
    assert lines.loc[is_fan & early, "organic"].mean() > 2 * lines.loc[~is_fan & early, "organic"].mean()
    assert lines.loc[is_fan & ~early, "organic"].mean() > 2 * lines.loc[~is_fan & ~early, "organic"].mean()


def test_generate_writes_a_drop_every_day_and_the_truth(lake: Lake) -> None:
    summary = generate(lake, users=200, days=20, end_date="2026-02-10", seed=2)
    assert summary["days"] == 20
    days = lake.landing_dates("orders")
    assert days[0] == "2026-01-22" and days[-1] == "2026-02-10" and len(days) == 20
    assert lake.landing_dates("order_products") == days
    assert lake.landing_dates("products") == ["2026-01-22"]
    assert lake.read_table("_truth", "user_types").num_rows == 200
    assert lake.read_table("_truth", "bundles").num_rows > 0
    assert lake.read_table("_truth", "interests").num_rows == 24
    assert set(lake.read_table("_truth", "user_interests").column("user_id").to_pylist()) == set(range(1, 201))
    total = sum(len(lake.fs.cat_file(lake.landing_file("orders", d).path).splitlines()) - 1 for d in days)
    assert total == summary["orders"]


def test_days_without_orders_get_a_header_only_drop(lake: Lake) -> None:
    generate(lake, users=1, days=40, end_date="2026-02-10", seed=1)
    sizes = [
        len(lake.fs.cat_file(lake.landing_file("orders", d).path).splitlines()) for d in lake.landing_dates("orders")
    ]
    assert len(sizes) == 40 and min(sizes) == 1  # header only on quiet days


def test_csv_bytes_quotes_only_when_needed() -> None:
    plain = csv_bytes(pd.DataFrame({"a": [1], "b": ["prior"]}))
    assert plain == b"a,b\n1,prior\n"
    quoted = csv_bytes(pd.DataFrame({"a": [1], "b": ["x, y"]}))
    assert b'"x, y"' in quoted and quoted.startswith(b"a,b\n")


def test_real_catalog_is_used_when_given(instacart, lake: Lake) -> None:
    generate(lake, users=50, days=10, end_date="2026-02-10", seed=1, catalog_dir=instacart)
    products = lake.fs.cat_file(lake.landing_file("products", "2026-02-01").path)
    assert products.count(b"\n") == 49_689
    assert np.isin([24852, 21137], pd.read_csv(lake.landing_file("products", "2026-02-01").path)["product_id"]).all()
