"""Customers' product preferences computed over the user shards of the history, as from the whole of it.

A customer's purchases per product cluster come from their own order lines only, so each user shard
(:mod:`basket_insights.user_shards`) gives its customers' rows. Two passes, each a map over the shards
(:func:`basket_insights.shard_map.map_shards`, in the task's process or on Dask):

1. each shard's purchases per cluster (summed: every customer's shares, ``overall``) and its
   ``fit_users`` (:data:`~basket_insights.preferences.FIT_USERS`) customers of smallest hash with their
   purchases; of all shards' samples, the smallest hashes are the fit sample
   :func:`~basket_insights.preferences.link_preferences` takes from all customers at once, and the
   preference segmentation is fitted on its shares here;
2. each shard assigns its customers to the nearest centre and writes its part of
   ``user_product_preferences`` and ``preference_segments``; the segment sizes and the behavioural
   segments' purchases per cluster add up.

What meets in one process is the fit sample and per-cluster totals: a fixed size, whatever the customers.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np
import pyarrow as pa

from basket_insights.lake import Lake
from basket_insights.preferences import (
    FIT_USERS,
    PER_USER_SCHEMAS,
    LinkedPreferences,
    PreferenceModel,
    assign_preferences,
    cluster_labels,
    fit_preference_model,
    per_user_table,
    preference_counts,
    preference_shares,
    segment_preference_table,
    sized_profiles,
    smallest_hashes,
)
from basket_insights.segments import SegmentSettings
from basket_insights.shard_map import map_shards
from basket_insights.user_shards import read_shard_lines, shard_of

log = logging.getLogger(__name__)


def _shard_counts(lake: Lake, ds: str, shards: int, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    lines = read_shard_lines(lake, ds, shard, shards, columns=["user_id", "product_id"])
    product_clusters = lake.read_table("gold", "product_clusters", dates=[ds], columns=["product_id", "cluster_id"])
    product_cluster = product_clusters.to_pandas().set_index("product_id")["cluster_id"]
    users, clusters, counts = preference_counts(
        lines.column("user_id").to_numpy(), lines.column("product_id").to_numpy(), product_cluster
    )
    return users, clusters, counts, lines.num_rows


def _sample_and_totals(lake_url: str, conn_id: str | None, ds: str, shards: int, fit_users: int, shard: int) -> dict:
    users, _, counts, lines = _shard_counts(Lake(lake_url, conn_id), ds, shards, shard)
    sample_users, sample_counts = smallest_hashes(users, counts, fit_users)
    return {
        "sample_users": sample_users,
        "sample_counts": sample_counts,
        "totals": counts.sum(axis=0),
        "users": len(users),
        "rows": lines,
    }


def _assign(lake_url: str, conn_id: str | None, ds: str, shards: int, fitted: PreferenceModel, shard: int) -> dict:
    lake = Lake(lake_url, conn_id)
    users, clusters, counts, lines = _shard_counts(lake, ds, shards, shard)
    segments = lake.read_table(
        "gold", "customer_segments", dates=[ds], columns=["user_id", "segment_id", "segment_name"]
    )
    segments = segments.filter(pa.array(shard_of(segments.column("user_id").to_numpy(), shards) == shard))
    done = assign_preferences(users, clusters, counts, fitted, segments.to_pandas())
    parts = {
        "user_product_preferences": done.user_preferences,
        "preference_segments": done.preference_segments,
    }
    return {
        "parts": {
            table: lake.write_part("gold", table, ds, per_user_table(table, frame)) for table, frame in parts.items()
        },
        "part_rows": {table: len(frame) for table, frame in parts.items()},
        "segment_sizes": done.segment_sizes,
        "segment_counts": done.segment_counts,
        "segment_names": done.segment_names,
        "rows": lines,
    }


def sharded_preferences(
    lake: Lake,
    ds: str,
    settings: SegmentSettings,
    shards: int,
    *,
    dask_address: str | None = None,
    fit_users: int = FIT_USERS,
    run_id: str = "",
) -> LinkedPreferences:
    """Write ``user_product_preferences`` and ``preference_segments`` for ``ds`` from the user shards
    (committed together once every shard wrote its part) and return the small tables (see the module
    docstring); the same tables as :func:`basket_insights.preferences.link_preferences`."""
    started = time.monotonic()
    common = (lake.url, lake.conn_id, ds, shards)
    label = f"link_preferences ds={ds}"
    work = partial(_sample_and_totals, *common, fit_users)
    counted = map_shards(work, shards, label=f"{label} (1/2: purchases per cluster)", address=dask_address)
    users = sum(d["users"] for d in counted)
    if users == 0:
        raise ValueError("no purchases of clustered products: no preferences to link")
    totals = np.sum([d["totals"] for d in counted], axis=0)
    overall = totals / max(totals.sum(), 1)
    _, sample = smallest_hashes(
        np.concatenate([d["sample_users"] for d in counted]),
        np.concatenate([d["sample_counts"] for d in counted]),
        fit_users,
    )
    product_clusters = lake.read_table("gold", "product_clusters", dates=[ds]).to_pandas()
    clusters = np.sort(product_clusters["cluster_id"].unique())
    label_of = cluster_labels(product_clusters)
    fitted = fit_preference_model(preference_shares(sample), overall, clusters, label_of, settings)
    seconds = time.monotonic() - started
    log.info(
        "%s: %d preference segments fitted on %d customers (%.1f s)", label, len(fitted.names), len(sample), seconds
    )
    work = partial(_assign, *common, fitted)
    assigned = map_shards(work, shards, label=f"{label} (2/2: customers assigned)", address=dask_address)
    for table, schema in PER_USER_SCHEMAS.items():
        parts = [d["parts"][table] for d in assigned]
        rows = sum(d["part_rows"][table] for d in assigned)
        lake.commit_parts("gold", table, ds, parts, rows, schema, run_id=run_id)
    counts_by_segment: dict[int, np.ndarray] = {}
    names: dict[int, str] = {}
    for d in assigned:
        for sid, seg_counts in d["segment_counts"].items():
            counts_by_segment[sid] = counts_by_segment.get(sid, 0) + seg_counts
        names |= d["segment_names"]
    return LinkedPreferences(
        sized_profiles(fitted, np.sum([d["segment_sizes"] for d in assigned], axis=0)),
        fitted.elbow,
        segment_preference_table(counts_by_segment, names, overall, clusters, label_of),
        users=users,
        preference_rows=sum(d["part_rows"]["user_product_preferences"] for d in assigned),
        lines=sum(d["rows"] for d in counted),
    )
