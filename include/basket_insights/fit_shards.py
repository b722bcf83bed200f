"""``fit_recommender`` over the user shards of the history, as from the whole of it.

The fit holds out each customer's last order (the evaluation's), learns segments without it, and
learns λ and the ranker from the order before it (:mod:`basket_insights.recommender`). Every split
is per customer, so each user shard gives its customers' part; over the shards
(:func:`basket_insights.shard_map.map_shards`, in the task's process or on Dask):

1. each shard's customers' behavioural features without their last order; the held-out segments are
   learned on all of them here (as ``segment_customers`` learns the day's on every customer's);
2. the rules, mined again from every shard's input baskets (the history without the last two
   orders: :func:`basket_insights.itemset_shards.sharded_itemsets`);
3. the popularity counts of the inputs and the sample: the ``RankerSettings.train_users`` customers
   of smallest user hash with a label order
   (:func:`~basket_insights.recommend_shards.shared_counts`), then the item model's ``XᵀX``
   (:func:`~basket_insights.recommend_shards.shared_co_buyers`);
4. each shard's evidence of its sampled customers and their labels; gathered here in user-id order,
   they are what :func:`basket_insights.recommender.fit_on_sample` learns λ and the ranker from.

What meets in one process: the customers' features (one row each, as for ``segment_customers``),
itemset counts, per-product counts, ``XᵀX`` and the sample's evidence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from basket_insights.candidates import Evidence, ProductGroups, gather_evidence
from basket_insights.evaluation import held_out_features, segments_of_features
from basket_insights.features import ORDER_COLUMNS, orders_frame
from basket_insights.itemset_shards import rules_of_view
from basket_insights.lake import Lake
from basket_insights.recommend_shards import ShardView, SharedCounts, shared_co_buyers, shared_counts
from basket_insights.recommender import FitSample, FittedRecommender, RecommenderSettings, fit_on_sample
from basket_insights.rules import RuleSettings
from basket_insights.shard_cache import kept_shards
from basket_insights.shard_map import map_shards
from basket_insights.splits import in_last_orders
from basket_insights.user_shards import read_shard_lines, read_shard_orders, shard_of

log = logging.getLogger(__name__)


def _features(view: ShardView, shard: int) -> dict:
    lake = view.lake()
    history, _, lines_read = ShardView(view.lake_url, view.conn_id, view.ds, view.shards).read(shard)
    held_orders = np.unique(history.lines["order_id"].to_numpy()[in_last_orders(history.lines)])
    del history
    orders = orders_frame(read_shard_orders(lake, view.ds, shard, view.shards, columns=ORDER_COLUMNS, with_ds=True))
    lines = read_shard_lines(lake, view.ds, shard, view.shards, columns=["order_id", "product_id", "reordered"])
    lines = lines.filter(pc.invert(pc.is_in(lines["order_id"], pa.array(held_orders))))
    features = held_out_features(orders, lines.to_pandas(), held_orders, view.ds)
    return {"features": features, "rows": lines_read}


def held_out_segments_from_shards(
    lake: Lake,
    ds: str,
    segment_settings: object,
    shards: int,
    *,
    dask_address: str | None = None,
) -> pd.DataFrame:
    """Step 1 of the module docstring: the segments learned without each customer's last order (the
    day's k, ids and names), as :func:`basket_insights.evaluation.held_out_segments` learns them."""
    view = ShardView(lake.url, lake.conn_id, ds, shards)
    done = map_shards(
        partial(_features, view), shards, label=f"fit_recommender ds={ds} (features)", address=dask_address
    )
    features = pd.concat([d["features"] for d in done], ignore_index=True)
    features = features.sort_values("user_id", kind="stable", ignore_index=True)
    profiles = lake.read_table("gold", "segment_profiles", dates=[ds]).to_pandas()
    return segments_of_features(features, profiles, segment_settings)


def _sample_part(
    view: ShardView, rules: pd.DataFrame, shared: SharedCounts, settings: RecommenderSettings, shard: int
) -> dict:
    inputs, labels, lines_read = view.read(shard)
    candidates = settings.candidates
    ev = gather_evidence(inputs, view.segments_of(shard), rules, shared.groups, candidates, counts=shared.counts)
    del inputs
    mine = shared.sample[shard_of(shared.sample, view.shards) == shard]
    return {
        "ev": ev.subset(ev.up.rows_of(mine)),
        "labels": labels[labels["user_id"].isin(mine)],
        "labelled": int(np.count_nonzero(np.isin(np.unique(labels["user_id"]), ev.up.users))),
        "rows": lines_read,
    }


def fit_from_shards(
    lake: Lake,
    ds: str,
    rule_settings: RuleSettings,
    settings: RecommenderSettings,
    shards: int,
    product_groups: Callable[[int], ProductGroups],
    *,
    segments: tuple[str, str],
    dask_address: str | None = None,
) -> tuple[FittedRecommender, int]:
    """Steps 2 to 4 of the module docstring, with the held-out segments already written at
    ``segments`` (zone, table): the fit :func:`basket_insights.recommender.fit_without_last_orders`
    makes of the whole history, and the order lines read."""
    started = time.monotonic()
    label = f"fit_recommender ds={ds}"
    with kept_shards(dask_address) as cache:
        view = ShardView(lake.url, lake.conn_id, ds, shards, held_out=2, segments=segments, cache=cache)
        rules = rules_of_view(view, rule_settings, label=f"{label} rules", dask_address=dask_address)
        shared = shared_counts(
            view, settings, product_groups, label=label, sample=settings.ranker.train_users, dask_address=dask_address
        )
        products, gram = shared_co_buyers(view, shared, settings.item_products, label=label, dask_address=dask_address)
        log.info(
            "%s: %d rules, %d customers sampled (%.1f s)",
            label,
            len(rules),
            len(shared.sample),
            time.monotonic() - started,
        )
        work = partial(_sample_part, view, rules, shared, settings)
        parts = map_shards(work, shards, label=f"{label} (sample)", address=dask_address)
        labels = pd.concat([d["labels"] for d in parts], ignore_index=True)
        labelled = sum(d["labelled"] for d in parts)
        sample = FitSample(
            Evidence.concat([d["ev"] for d in parts]), labels, products, gram, shared.counts.users, labelled
        )
        del parts
    return fit_on_sample(sample, settings), shared.lines
