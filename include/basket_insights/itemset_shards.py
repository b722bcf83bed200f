"""Frequent itemsets counted over the user shards of the history, exactly as from the whole of it.

An order belongs to one customer, so every basket is in exactly one user shard
(:mod:`basket_insights.user_shards`) and the counts of :mod:`basket_insights.rules`' engine add up
over the shards. Three passes, each a map over the shards (:func:`basket_insights.shard_map.map_shards`,
in the task's process or on Dask) and a sum:

1. lines per product (:func:`~basket_insights.rules.item_occurrences`) and baskets: the support
   threshold and the candidate items, as the whole history gives them;
2. exact baskets per candidate and per candidate pair (an ``n × n`` matrix of the candidates);
3. exact baskets per candidate triple of the frequent pairs (:class:`~basket_insights.rules.TriplePlan`).

What meets in one process is the size of the catalog's frequent part, never of the customers. One
shard's baskets are all a process holds at a time: the first pass reads them, and in the task's own
process the later passes find them kept on local disk (:mod:`basket_insights.shard_cache`; on Dask
each pass reads them again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from basket_insights.arrays import padded_sum
from basket_insights.lake import Lake
from basket_insights.rules import (
    Baskets,
    RuleSettings,
    TriplePlan,
    check_itemset_settings,
    coded_groups,
    count_items_and_pairs,
    count_triples,
    first_of_last_days,
    frequent_pairs,
    item_occurrences,
    itemsets_frame,
    no_itemsets,
    plan_triples,
    prior_baskets,
    rules_table,
    support_threshold,
)
from basket_insights.shard_cache import ShardCache, kept_shards
from basket_insights.shard_map import map_shards
from basket_insights.user_shards import read_shard_lines, read_shard_orders

if TYPE_CHECKING:
    from basket_insights.recommend_shards import ShardView

log = logging.getLogger(__name__)


class BasketSource(Protocol):
    """Where each shard's baskets come from (picklable: a Dask worker reads its shard itself)."""

    def read(self, shard: int) -> Baskets: ...


def shard_baskets(lake: Lake, ds: str, shard: int, shards: int, last_days: int) -> Baskets:
    """The prior baskets ``<= ds`` of one user shard (:func:`basket_insights.rules.baskets_as_of`'s)."""
    orders = read_shard_orders(lake, ds, shard, shards, ["order_id", "eval_set"], with_ds=bool(last_days))
    if last_days:  # a line is on its order's date: the lines need no filter of their own
        orders = orders.filter(pc.greater_equal(orders.column("ds"), first_of_last_days(ds, last_days)))
    return prior_baskets(orders, read_shard_lines(lake, ds, shard, shards, ["order_id", "product_id"]))


@dataclass(frozen=True)
class ShardedBaskets:
    """Where a pass's shards read their baskets: by the lake's URL and connection id, so that a Dask
    worker can open the lake itself."""

    lake_url: str
    conn_id: str | None
    ds: str
    shards: int
    last_days: int
    cache: ShardCache = field(default_factory=ShardCache)

    def read(self, shard: int) -> Baskets:
        lake = Lake(self.lake_url, self.conn_id)
        return kept_baskets(
            self.cache,
            f"baskets-shard-{shard}",
            partial(shard_baskets, lake, self.ds, shard, self.shards, self.last_days),
        )


def kept_baskets(cache: ShardCache, key: str, make: Callable[[], Baskets]) -> Baskets:
    """``make()``, kept in ``cache`` under ``key`` between the passes (:mod:`basket_insights.shard_cache`)."""

    def as_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
        baskets = make()
        return pd.DataFrame({"indptr": baskets.indptr}), pd.DataFrame({"items": baskets.items})

    indptr, items = cache.keep(key, as_frames)
    return Baskets(indptr["indptr"].to_numpy(), items["items"].to_numpy())


def _occurrences(source: BasketSource, shard: int) -> dict:
    baskets = source.read(shard)
    return {"occurrences": item_occurrences(baskets), "baskets": baskets.n_baskets, "rows": len(baskets.items)}


def _items_and_pairs(source: BasketSource, candidates: np.ndarray, pairs: bool, shard: int) -> dict:
    baskets = source.read(shard)
    items, pair_counts = count_items_and_pairs(*coded_groups(baskets, candidates), len(candidates), pairs)
    return {"items": items, "pairs": pair_counts, "rows": len(baskets.items)}


def _triples(source: BasketSource, candidates: np.ndarray, plan: TriplePlan, shard: int) -> dict:
    baskets = source.read(shard)
    groups, _ = coded_groups(baskets, candidates)
    return {"triples": count_triples(groups, plan), "rows": len(baskets.items)}


@dataclass(frozen=True)
class ViewBaskets:
    """The baskets of a shard's history as a view sees it
    (:class:`~basket_insights.recommend_shards.ShardView`: without each customer's last order, what the
    evaluation's rules are mined from; without the last two, the fit's)."""

    view: ShardView

    def read(self, shard: int) -> Baskets:
        return kept_baskets(
            self.view.cache, f"baskets-{self.view.held_out}-shard-{shard}", partial(self._baskets, shard)
        )

    def _baskets(self, shard: int) -> Baskets:
        history, _, _ = self.view.read(shard, new_products=False)
        return Baskets.from_pairs(history.lines["order_id"].to_numpy(), history.lines["product_id"].to_numpy())


def rules_of_view(
    view: ShardView, settings: RuleSettings, *, label: str, dask_address: str | None = None
) -> pd.DataFrame:
    """The association rules of the baskets ``view`` sees in every user shard, as
    :func:`basket_insights.rules.mine` gives them for those baskets in one process."""
    itemsets, n_baskets, _ = sharded_itemsets(
        view.lake(), view.ds, settings, view.shards, dask_address=dask_address, source=ViewBaskets(view), label=label
    )
    return rules_table(itemsets, n_baskets, settings)


def sharded_itemsets(
    lake: Lake,
    ds: str,
    settings: RuleSettings,
    shards: int,
    *,
    dask_address: str | None = None,
    source: BasketSource | None = None,
    label: str | None = None,
) -> tuple[pd.DataFrame, int, int]:
    """:func:`basket_insights.rules.frequent_itemsets` of the prior baskets ``<= ds`` (or of ``source``'s),
    counted over the user shards (see the module docstring); also the baskets and the order lines counted."""
    check_itemset_settings(settings.min_support, settings.max_len)
    if source is None:
        with kept_shards(dask_address) as cache:
            source = ShardedBaskets(lake.url, lake.conn_id, ds, shards, settings.last_days, cache)
            return sharded_itemsets(lake, ds, settings, shards, dask_address=dask_address, source=source, label=label)
    started = time.monotonic()
    label = label or f"mine_rules ds={ds}"

    def run(work, what: str) -> list[dict]:
        return map_shards(work, shards, label=f"{label} ({what})", address=dask_address)

    counted = run(partial(_occurrences, source), "1/3: lines per product")
    n_baskets = sum(d["baskets"] for d in counted)
    n_lines = sum(d["rows"] for d in counted)
    threshold = support_threshold(n_baskets, settings.min_support, settings.min_count)
    candidates = np.flatnonzero(padded_sum([d["occurrences"] for d in counted]) >= threshold)
    if n_baskets == 0 or len(candidates) == 0:
        return no_itemsets(), n_baskets, n_lines
    pairs = settings.max_len >= 2
    counted = run(partial(_items_and_pairs, source, candidates, pairs), "2/3: items and pairs")
    item_counts = np.sum([d["items"] for d in counted], axis=0)
    pair_counts = np.sum([d["pairs"] for d in counted], axis=0) if pairs else None
    triples = None
    if settings.max_len >= 3:
        plan = plan_triples(*frequent_pairs(pair_counts, threshold), len(candidates))
        if plan is not None:
            counted = run(partial(_triples, source, candidates, plan), "3/3: triples")
            triples = (plan, np.sum([d["triples"] for d in counted], axis=0))
    itemsets = itemsets_frame(candidates, item_counts, pair_counts, triples, threshold, n_baskets)
    log.info(
        "%s: %d frequent itemsets of %d baskets counted over %d user shards (%.1f s)",
        label,
        len(itemsets),
        n_baskets,
        shards,
        time.monotonic() - started,
    )
    return itemsets, n_baskets, n_lines
