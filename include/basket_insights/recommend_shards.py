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
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from basket_insights.candidates import Evidence, ProductGroups, gather_evidence
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
from basket_insights.shard_cache import ShardCache, kept_shards
from basket_insights.shard_map import map_shards
from basket_insights.splits import split_last_orders, split_off_last_orders
from basket_insights.user_products import user_products
from basket_insights.user_shards import shard_of, smallest_hash_users

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardView:
    """What a shard's work reads, named by the lake's URL and connection id (a Dask worker opens the
    lake itself): a user shard's history ``<= ds`` without each customer's last ``held_out`` orders
    (0: whole; 1: the evaluation's view; 2: the fit's input, the order before the last its labels),
    and the segments its evidence uses (``segments``: zone, table). ``cache``: where the step keeps
    each shard's view between its passes (:mod:`basket_insights.shard_cache`)."""

    lake_url: str
    conn_id: str | None
    ds: str
    shards: int
    held_out: int = 0
    segments: tuple[str, str] = ("gold", "customer_segments")
    cache: ShardCache = field(default_factory=ShardCache)

    def lake(self) -> Lake:
        return Lake(self.lake_url, self.conn_id)

    def read(self, shard: int, *, new_products: bool = True) -> tuple[History, pd.DataFrame | None, int]:
        """The shard's history as this view sees it; the new products of the last order held out
        (``user_id, product_id``: :func:`~basket_insights.splits.split_last_orders`; ``None`` when
        nothing is, or when ``new_products`` is False: finding them sorts the shard's lines); and the
        order lines read. Kept in the view's cache, with the new products, after the first read."""
        make = partial(self._split, shard, new_products or self.cache.keeps)
        lines, new, read = self.cache.keep(f"view-{self.held_out}-shard-{shard}", make)
        return History(lines), new if new_products else None, read

    def _split(self, shard: int, new_products: bool) -> tuple[pd.DataFrame, pd.DataFrame | None, int]:
        history = load_history(self.lake(), self.ds, shard=shard, shards=self.shards)
        lines, new = len(history.lines), None
        for held in range(self.held_out, 0, -1):
            if held == 1 and new_products:
                history, _, new = split_last_orders(history)
            else:
                history, _ = split_off_last_orders(history)
        return history.lines, new, lines

    def segments_of(self, shard: int) -> pd.DataFrame:
        """The shard's customers' ``user_id, segment_id, segment_name``."""
        zone, table = self.segments
        columns = ["user_id", "segment_id", "segment_name"]
        segments = self.lake().read_table(zone, table, dates=[self.ds], columns=columns)
        in_shard = shard_of(segments.column("user_id").to_numpy(), self.shards) == shard
        return segments.filter(pa.array(in_shard)).to_pandas()


def _count(view: ShardView, recent_orders: int, sample: int, shard: int) -> dict:
    history, new, lines = view.read(shard)
    up = user_products(history, recent_orders)
    line_products = history.lines["product_id"].to_numpy(np.int64)
    counts = popularity_counts(up, line_products, view.segments_of(shard))
    judged = np.zeros(0, np.int64) if new is None else smallest_hash_users(np.unique(new["user_id"]), sample)
    return {"counts": counts, "n_products": up.n_products, "judged": judged, "rows": lines}


def _co_buyers(view: ShardView, n_products: int, products: np.ndarray, shard: int) -> dict:
    history, _, lines = view.read(shard, new_products=False)
    up = user_products(history, n_products=n_products)
    return {"gram": co_buyers(up, products), "rows": lines}


def _recommend(
    view: ShardView,
    table: str,
    fitted: FittedRecommender,
    settings: RecommenderSettings,
    shared: SharedEvidence,
    shard: int,
) -> dict:
    lake = view.lake()
    history, _, _ = view.read(shard)
    ev = shared.evidence(history, view.segments_of(shard), settings)
    users = np.unique(history.lines["user_id"].to_numpy())
    del history
    recs = recommend_customers(ev, fitted, users, product_names(lake, view.ds), settings)
    return {
        "part": lake.write_part("silver", table, view.ds, recommendations_table(recs, view.ds)),
        "users": len(users),
        "rows_in": int(ev.up.lines.sum()),
        "by_source": recs["source"].value_counts().to_dict(),
        "rows": len(recs),
    }


@dataclass(frozen=True)
class SharedEvidence:
    """What every customer's candidates share, from all user shards of a view (passes 1 and 2), and,
    with the evaluation's view, the customers it judges."""

    groups: ProductGroups
    counts: PopularityCounts
    item: ItemModel | None
    rules: pd.DataFrame
    judged: np.ndarray  # sorted ids: the customers of smallest hash with new products held out
    lines: int  # order lines of every shard's history read

    def evidence(self, history: History, segments: pd.DataFrame, settings: RecommenderSettings) -> Evidence:
        """The :class:`~basket_insights.candidates.Evidence` of one shard's ``history`` with the shared parts."""
        groups, candidates = self.groups, settings.candidates
        return gather_evidence(history, segments, self.rules, groups, candidates, item=self.item, counts=self.counts)


@dataclass(frozen=True)
class SharedCounts:
    """Pass 1 over every user shard of a view: the product groups, the popularity counts, the
    customers of smallest hash with new products in the last order held out, the lines read."""

    groups: ProductGroups
    counts: PopularityCounts
    sample: np.ndarray  # sorted ids
    lines: int


def shared_counts(
    view: ShardView,
    settings: RecommenderSettings,
    product_groups: Callable[[int], ProductGroups],
    *,
    label: str,
    sample: int = 0,
    dask_address: str | None = None,
) -> SharedCounts:
    """Pass 1 of the module docstring over every user shard of ``view``; ``sample``: how many customers
    with new products held out to pick (those of smallest user hash). ``product_groups(n_products)``:
    the groups over product ids ``0 .. n_products - 1`` at least
    (:func:`basket_insights.recommend.product_groups`)."""
    work = partial(_count, view, settings.candidates.recent_orders, sample)
    counted = map_shards(work, view.shards, label=f"{label} (popularity)", address=dask_address)
    groups = product_groups(max(d["n_products"] for d in counted))
    counts = functools.reduce(operator.add, (d["counts"] for d in counted)).widened(len(groups.aisle_of))
    picked = smallest_hash_users(np.concatenate([d["judged"] for d in counted]), sample)
    return SharedCounts(groups, counts, picked, sum(d["rows"] for d in counted))


def shared_co_buyers(
    view: ShardView, shared: SharedCounts, n: int, *, label: str, dask_address: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2: the item model's ``n`` most-bought products of ``shared``'s counts and their ``XᵀX``
    summed over every user shard of ``view``."""
    products = most_bought(shared.counts.buyers, n)
    work = partial(_co_buyers, view, len(shared.groups.aisle_of), products)
    grams = map_shards(work, view.shards, label=f"{label} (co-buyers)", address=dask_address)
    return products, functools.reduce(operator.add, (d["gram"] for d in grams))


def shared_evidence(
    view: ShardView,
    fitted: FittedRecommender,
    rules: pd.DataFrame,
    settings: RecommenderSettings,
    product_groups: Callable[[int], ProductGroups],
    *,
    label: str,
    dask_address: str | None = None,
    judged: int = 0,
) -> SharedEvidence:
    """Passes 1 and 2 of the module docstring over every user shard of ``view``: the product groups,
    popularity counts and item model (refitted with ``fitted``'s λ), with ``rules``; with a view that
    holds out orders, also the ``judged`` customers of smallest hash among those with new products
    held out (see :func:`shared_counts`)."""
    shared = shared_counts(view, settings, product_groups, label=label, sample=judged, dask_address=dask_address)
    item = None
    if fitted.item_products > 0:
        products, gram = shared_co_buyers(view, shared, fitted.item_products, label=label, dask_address=dask_address)
        item = item_model_of(products, gram, shared.counts.users, fitted.item_l2)
    return SharedEvidence(shared.groups, shared.counts, item, rules, shared.sample, shared.lines)


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
    label = f"recommend ds={ds} shard {index + 1}/{tasks}"
    with kept_shards(dask_address) as cache:
        view = ShardView(lake.url, lake.conn_id, ds, shards, cache=cache)
        shared = shared_evidence(view, fitted, rules, settings, product_groups, label=label, dask_address=dask_address)
        log.info("%s: evidence of %d customers shared (%.1f s)", label, shared.counts.users, time.monotonic() - started)
        mine = [k for k in range(shards) if k % tasks == index]
        work = partial(_recommend, view, table, fitted, settings, shared)
        done = map_shards(work, shards, label=f"{label} (recommended)", address=dask_address, only=mine)
    rows = sum(d["rows"] for d in done)
    lake.commit_parts("silver", table, ds, [d["part"] for d in done], rows, RECOMMENDATIONS_SCHEMA, run_id=run_id)
    by_source: dict[str, int] = {}
    for d in done:
        for source, n in d["by_source"].items():
            by_source[source] = by_source.get(source, 0) + n
    log.info("%s: %d recommendations %s (%.1f s)", label, rows, by_source, time.monotonic() - started)
    users = sum(d["users"] for d in done)
    return {"rows_in": sum(d["rows_in"] for d in done), "rows_out": rows, "users": users, "by_source": by_source}
