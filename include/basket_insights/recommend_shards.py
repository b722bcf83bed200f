"""Recommendations from the user shards of the history, as from the whole of it.

A customer's candidates and scores come from their own products and a few things every customer
shares: popularity by buyers and lines, overall and per segment, and the item-to-item model (EASE
on ``XᵀX`` of the most-bought products). Those add up over user shards. Three passes, each a map over
the shards (:func:`basket_insights.shard_map.map_shards`, in the task's process or on Dask):

1. each shard's popularity counts (:class:`~basket_insights.popularity.PopularityCounts`), summed
   here; the most-bought products of the sum are the item model's;
2. each shard's ``XᵀX`` of those products, summed here; EASE is refitted on the sum with the λ
   ``fit_recommender`` chose, as :func:`~basket_insights.recommender.serving_evidence` does on the
   whole history;
3. each shard's customers recommended from their own history and the shared evidence, written as a
   part of the recommend task's silver table (committed together).

What meets in one process: per-product and per-segment counts and the item model's ``N × N``
matrices: a fixed size, whatever the customers. A recommend task of ``BASKET_RECOMMEND_SHARDS``
takes the user shards ``k`` with ``k % recommend_shards == its index``.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from basket_insights.candidates import ProductGroups, gather_evidence
from basket_insights.features import History, load_history
from basket_insights.ingest import product_names
from basket_insights.item_model import ItemModel, co_buyers, item_model_of, most_bought
from basket_insights.lake import Lake
from basket_insights.popularity import PopularityCounts, popularity_counts
from basket_insights.recommender import (
    RECOMMENDATIONS_SCHEMA,
    FittedRecommender,
    RecommenderSettings,
    recommend_customers,
    recommendations_table,
)
from basket_insights.shard_map import map_shards
from basket_insights.user_products import user_products
from basket_insights.user_shards import shard_of

log = logging.getLogger(__name__)


def _shard_segments(lake: Lake, ds: str, shard: int, shards: int) -> pd.DataFrame:
    columns = ["user_id", "segment_id", "segment_name"]
    segments = lake.read_table("gold", "customer_segments", dates=[ds], columns=columns)
    return segments.filter(pa.array(shard_of(segments.column("user_id").to_numpy(), shards) == shard)).to_pandas()


def _history(lake: Lake, ds: str, shard: int, shards: int) -> History:
    return load_history(lake, ds, shard=shard, shards=shards)


def _count(lake_url: str, conn_id: str | None, ds: str, shards: int, recent_orders: int, shard: int) -> dict:
    lake = Lake(lake_url, conn_id)
    history = _history(lake, ds, shard, shards)
    up = user_products(history, recent_orders)
    line_products = history.lines["product_id"].to_numpy(np.int64)
    counts = popularity_counts(up, line_products, _shard_segments(lake, ds, shard, shards))
    return {"counts": counts, "n_products": up.n_products, "rows": len(history.lines)}


def _co_buyers(
    lake_url: str, conn_id: str | None, ds: str, shards: int, n_products: int, products: np.ndarray, shard: int
) -> dict:
    history = _history(Lake(lake_url, conn_id), ds, shard, shards)
    up = user_products(history, n_products=n_products)
    return {"gram": co_buyers(up, products), "rows": len(history.lines)}


def _recommend(
    lake_url: str,
    conn_id: str | None,
    ds: str,
    shards: int,
    table: str,
    fitted: FittedRecommender,
    settings: RecommenderSettings,
    shared: tuple[ProductGroups, PopularityCounts, ItemModel | None, pd.DataFrame],
    shard: int,
) -> dict:
    lake = Lake(lake_url, conn_id)
    groups, counts, item, rules = shared
    history = _history(lake, ds, shard, shards)
    segments = _shard_segments(lake, ds, shard, shards)
    ev = gather_evidence(history, segments, rules, groups, settings.candidates, item=item, counts=counts)
    users = np.unique(history.lines["user_id"].to_numpy())
    del history
    recs = recommend_customers(ev, fitted, users, product_names(lake, ds), settings)
    return {
        "part": lake.write_part("silver", table, ds, recommendations_table(recs, ds)),
        "users": len(users),
        "rows_in": int(ev.up.lines.sum()),
        "by_source": recs["source"].value_counts().to_dict(),
        "rows": len(recs),
    }


def shared_evidence(
    lake: Lake,
    ds: str,
    fitted: FittedRecommender,
    settings: RecommenderSettings,
    shards: int,
    product_groups: Callable[[int], ProductGroups],
    *,
    label: str,
    dask_address: str | None = None,
) -> tuple[ProductGroups, PopularityCounts, ItemModel | None]:
    """Passes 1 and 2 of the module docstring: the product groups, popularity counts and item model
    of every user shard together. ``product_groups(n_products)``: the groups over product ids
    ``0 .. n_products - 1`` at least (:func:`basket_insights.recommend.product_groups`)."""
    common = (lake.url, lake.conn_id, ds, shards)
    work = partial(_count, *common, settings.candidates.recent_orders)
    counted = map_shards(work, shards, label=f"{label} (1/3: popularity)", address=dask_address)
    groups = product_groups(max(d["n_products"] for d in counted))
    n_products = len(groups.aisle_of)
    counts = functools.reduce(operator.add, (d["counts"] for d in counted)).widened(n_products)
    if fitted.item_products <= 0:
        return groups, counts, None
    products = most_bought(counts.buyers, fitted.item_products)
    work = partial(_co_buyers, *common, n_products, products)
    grams = map_shards(work, shards, label=f"{label} (2/3: co-buyers)", address=dask_address)
    gram = functools.reduce(operator.add, (d["gram"] for d in grams))
    return groups, counts, item_model_of(products, gram, counts.users, fitted.item_l2)


def recommend_from_shards(
    lake: Lake,
    ds: str,
    fitted: FittedRecommender,
    rules: pd.DataFrame,
    settings: RecommenderSettings,
    shards: int,
    product_groups: Callable[[int], ProductGroups],
    *,
    table: str,
    task: tuple[int, int] = (0, 1),
    dask_address: str | None = None,
    run_id: str = "",
) -> dict:
    """Recommend for the customers of the user shards ``k`` with ``k % tasks == index`` (``task``:
    ``(index, tasks)``, the recommend task's place among ``BASKET_RECOMMEND_SHARDS``) and commit them
    as ``silver/<table>/ds`` (see the module docstring): the rows the whole history gives them."""
    started = time.monotonic()
    index, tasks = task
    label = f"recommend ds={ds} task {index + 1}/{tasks}"
    groups, counts, item = shared_evidence(
        lake, ds, fitted, settings, shards, product_groups, label=label, dask_address=dask_address
    )
    log.info("%s: evidence of %d customers shared (%.1f s)", label, counts.users, time.monotonic() - started)
    mine = [k for k in range(shards) if k % tasks == index]
    work = partial(
        _recommend, lake.url, lake.conn_id, ds, shards, table, fitted, settings, (groups, counts, item, rules)
    )
    done = map_shards(work, shards, label=f"{label} (3/3: recommended)", address=dask_address, only=mine)
    rows = sum(d["rows"] for d in done)
    lake.commit_parts("silver", table, ds, [d["part"] for d in done], rows, RECOMMENDATIONS_SCHEMA, run_id=run_id)
    by_source: dict[str, int] = {}
    for d in done:
        for source, n in d["by_source"].items():
            by_source[source] = by_source.get(source, 0) + n
    log.info("%s: %d recommendations %s (%.1f s)", label, rows, by_source, time.monotonic() - started)
    users = sum(d["users"] for d in done)
    return {"rows_in": sum(d["rows_in"] for d in done), "rows_out": rows, "users": users, "by_source": by_source}
