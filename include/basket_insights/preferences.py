"""Customers' product preferences: links the product clusters back to customers and segments.

* ``user_product_preferences``: each user's share of purchases (order lines ``<= ds``) in each
  product cluster they bought from, with the cluster's rank for the user (1 = their top cluster).
* ``preference_segments``: the second customer segmentation of the method: users clustered on
  their preference vectors (shares over all product clusters; KMeans with the segments' elbow),
  named after the product clusters they over-index on most.
* ``segment_product_preferences``: for each behavioural segment, each product cluster's share of
  the segment's purchases and its lift over all customers ("what loyal customers buy more of than
  everyone else").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from basket_insights.arrays import factorize_ids
from basket_insights.lake import Lake
from basket_insights.segments import SegmentSettings, elbow

log = logging.getLogger(__name__)


@dataclass
class PreferenceTables:
    user_preferences: pd.DataFrame  # user_id, cluster_id, purchases, share, rank (1 = top cluster)
    preference_segments: pd.DataFrame  # user_id, pref_segment_id, pref_segment_name
    preference_segment_profiles: pd.DataFrame  # pref_segment_id, pref_segment_name, size, top clusters
    preference_elbow: pd.DataFrame
    segment_preferences: pd.DataFrame  # segment_id, segment_name, cluster_id, cluster_label, share, lift


def preference_counts(
    line_users: np.ndarray, line_products: np.ndarray, product_cluster: pd.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Purchases per (user, cluster) as a dense ``(n_users, n_clusters)`` count matrix.

    Parameters
    ----------
    line_users:
        User id of every order line.
    line_products:
        Product id of every order line (lines of products without a cluster are ignored).
    product_cluster:
        ``product_id -> cluster_id``.

    Returns
    -------
    (users, clusters, counts)
        Sorted user ids, cluster ids, and the count matrix.
    """
    clusters = np.sort(product_cluster.unique())
    size = int(max(product_cluster.index.max(), line_products.max(initial=0))) + 1
    lookup = np.full(size, -1, dtype=np.int32)
    lookup[product_cluster.index.to_numpy()] = np.searchsorted(clusters, product_cluster.to_numpy())
    cluster_code = lookup[line_products]
    keep = cluster_code >= 0
    row_of_line, users = factorize_ids(line_users)
    bins = row_of_line[keep] * len(clusters) + cluster_code[keep]
    counts = np.bincount(bins, minlength=len(users) * len(clusters)).reshape(len(users), len(clusters))
    return users, clusters, counts


def preference_shares(counts: np.ndarray) -> np.ndarray:
    """Each row of a :func:`preference_counts` matrix as shares of the customer's purchases (0 without any)."""
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def preference_table(users: np.ndarray, clusters: np.ndarray, counts: np.ndarray, shares: np.ndarray) -> pd.DataFrame:
    """Long form of a :func:`preference_counts` matrix and its :func:`preference_shares`:
    ``user_id, cluster_id, purchases, share, rank``.

    One row per (user, cluster) with purchases; rank 1 is the user's largest share (ties: lower
    cluster id first). Rows are ordered by user, then cluster.
    """
    order = np.argsort(-counts, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, len(clusters) + 1)[None, :], axis=1)
    nz_user, nz_cluster = np.nonzero(counts)
    return pd.DataFrame(
        {
            "user_id": users[nz_user].astype(np.int32),
            "cluster_id": clusters[nz_cluster].astype(np.int32),
            "purchases": counts[nz_user, nz_cluster].astype(np.int32),
            "share": shares[nz_user, nz_cluster].astype(np.float32),
            "rank": ranks[nz_user, nz_cluster].astype(np.int16),
        }
    )


#: Customers the preference segmentation is fitted on, those with the smallest user hashes
#: (:func:`basket_insights.user_shards.user_hash`): a fixed sample, the same whatever the user shards,
#: so the fit's cost does not grow with customers; every customer is then assigned to its nearest centre.
FIT_USERS = 50_000


def smallest_hashes(users: np.ndarray, rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` users of smallest hash and their ``rows``, sorted by user id: the fit sample of
    one shard, and of all shards together when applied to their samples (the smallest of the smallest)."""
    from basket_insights.user_shards import smallest_hash_positions

    keep = smallest_hash_positions(users, size)
    users, rows = users[keep], rows[keep]
    order = np.argsort(users, kind="stable")
    return users[order], rows[order]


@dataclass
class PreferenceModel:
    """The preference segmentation fitted on the sample: its KMeans, elbow, names and profiles."""

    model: object  # a fitted sklearn KMeans over the shares of every product cluster
    elbow: pd.DataFrame
    names: list[str]
    profiles: pd.DataFrame  # pref_segment_id, pref_segment_name, top_clusters, top_cluster_lift (no size yet)


def fit_preference_model(
    sample_shares: np.ndarray, overall: np.ndarray, clusters: np.ndarray, label_of: pd.Series, settings: SegmentSettings
) -> PreferenceModel:
    """The elbow over k and KMeans on the sample's share rows; each segment named after the two product
    clusters it over-indexes on most against ``overall`` (every customer's purchases by cluster)."""
    from sklearn.cluster import KMeans

    elbow_table = elbow(sample_shares, replace(settings, elbow_sample=min(settings.elbow_sample, 20_000), n_init=1))
    k = int(elbow_table.loc[elbow_table["chosen"], "k"].iloc[0])
    model = KMeans(n_clusters=k, n_init=settings.n_init, random_state=settings.seed).fit(sample_shares)
    profile_rows, names = [], []
    for c in range(k):
        center = model.cluster_centers_[c]
        lift = center / np.maximum(overall, 1e-12)
        top = np.argsort(-(lift * (center > 0.01)))[:2]
        names.append(" + ".join(str(label_of.get(clusters[i], clusters[i])).split(" (")[0] for i in top))
        profile_rows.append(
            {
                "pref_segment_id": c,
                "top_clusters": ", ".join(str(label_of.get(clusters[i], clusters[i])) for i in top),
                "top_cluster_lift": float(lift[top[0]]),
            }
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name} {seen[name]}"
    profiles = pd.DataFrame(profile_rows)
    profiles.insert(1, "pref_segment_name", names)
    return PreferenceModel(model, elbow_table, names, profiles)


@dataclass
class AssignedPreferences:
    """One set of customers' rows and what they add to the totals (see :func:`assign_preferences`)."""

    user_preferences: pd.DataFrame
    preference_segments: pd.DataFrame
    segment_sizes: np.ndarray  # customers per preference segment
    segment_counts: dict[int, np.ndarray]  # behavioural segment id -> purchases per product cluster
    segment_names: dict[int, str]


def assign_preferences(
    users: np.ndarray, clusters: np.ndarray, counts: np.ndarray, fitted: PreferenceModel, segments: pd.DataFrame
) -> AssignedPreferences:
    """Customers' preference rows, their preference segments (nearest centre) and their behavioural
    segments' purchases per cluster; over user shards the sizes and purchases add up."""
    shares = preference_shares(counts)
    labels = fitted.model.predict(shares) if len(users) else np.zeros(0, dtype=np.int32)
    pref_segments = pd.DataFrame(
        {
            "user_id": users.astype(np.int32),
            "pref_segment_id": labels.astype(np.int32),
            "pref_segment_name": np.array(fitted.names, dtype=object)[labels],
        }
    )
    seg = segments.set_index("user_id")[["segment_id", "segment_name"]].reindex(users)
    known = seg["segment_id"].notna().to_numpy()
    seg_ids = seg.loc[known, "segment_id"].astype(int).to_numpy()
    known_counts = counts[known]
    segment_counts = {int(sid): known_counts[seg_ids == sid].sum(axis=0) for sid in np.unique(seg_ids)}
    names = seg.loc[known].drop_duplicates("segment_id").set_index("segment_id")["segment_name"]
    return AssignedPreferences(
        preference_table(users, clusters, counts, shares),
        pref_segments,
        np.bincount(labels, minlength=len(fitted.names)),
        segment_counts,
        {int(sid): str(name) for sid, name in names.items()},
    )


def segment_preference_table(
    counts_by_segment: dict[int, np.ndarray],
    names: dict[int, str],
    overall: np.ndarray,
    clusters: np.ndarray,
    label_of: pd.Series,
) -> pd.DataFrame:
    """Behavioural segment × product cluster: the cluster's share of the segment's purchases and its
    lift over every customer's (``overall``)."""
    rows = []
    for sid in sorted(counts_by_segment):
        seg_counts = counts_by_segment[sid]
        seg_shares = seg_counts / max(seg_counts.sum(), 1)
        for j, cid in enumerate(clusters):
            lift = float(seg_shares[j] / overall[j]) if overall[j] > 0 else np.nan
            rows.append((sid, names[sid], int(cid), label_of.get(cid), float(seg_shares[j]), lift))
    return pd.DataFrame(rows, columns=["segment_id", "segment_name", "cluster_id", "cluster_label", "share", "lift"])


def sized_profiles(fitted: PreferenceModel, sizes: np.ndarray) -> pd.DataFrame:
    """The fitted profiles with each segment's number of customers."""
    profiles = fitted.profiles.copy()
    profiles.insert(2, "size", sizes.astype(int))
    return profiles


def link_preferences(
    line_users: np.ndarray,
    line_products: np.ndarray,
    product_clusters: pd.DataFrame,
    segments: pd.DataFrame,
    settings: SegmentSettings | None = None,
    fit_users: int = FIT_USERS,
) -> PreferenceTables:
    """Compute the preference tables (see the module docstring) of all these order lines at once; the
    preference segmentation is fitted on the ``fit_users`` customers of smallest hash."""
    settings = settings or SegmentSettings()
    label_of = cluster_labels(product_clusters)
    users, clusters, counts = preference_counts(
        line_users, line_products, product_clusters.set_index("product_id")["cluster_id"]
    )
    if len(users) == 0:
        raise ValueError("no purchases of clustered products: no preferences to link")
    overall = counts.sum(axis=0) / max(counts.sum(), 1)
    _, sample = smallest_hashes(users, counts, fit_users)
    fitted = fit_preference_model(preference_shares(sample), overall, clusters, label_of, settings)
    done = assign_preferences(users, clusters, counts, fitted, segments)
    return PreferenceTables(
        done.user_preferences,
        done.preference_segments,
        sized_profiles(fitted, done.segment_sizes),
        fitted.elbow,
        segment_preference_table(done.segment_counts, done.segment_names, overall, clusters, label_of),
    )


def cluster_labels(product_clusters: pd.DataFrame) -> pd.Series:
    """``cluster_id -> cluster_label``."""
    return product_clusters.drop_duplicates("cluster_id").set_index("cluster_id")["cluster_label"]


@dataclass
class LinkedPreferences:
    """What a run keeps in memory once the per-customer tables are written: the small tables and counts."""

    profiles: pd.DataFrame
    elbow: pd.DataFrame
    segment_preferences: pd.DataFrame
    users: int
    preference_rows: int
    lines: int


#: The per-customer tables' columns (every user shard's part has them, empty or not).
PER_USER_SCHEMAS = {
    "user_product_preferences": pa.schema(
        {
            "user_id": pa.int32(),
            "cluster_id": pa.int32(),
            "purchases": pa.int32(),
            "share": pa.float32(),
            "rank": pa.int16(),
        }
    ),
    "preference_segments": pa.schema(
        {"user_id": pa.int32(), "pref_segment_id": pa.int32(), "pref_segment_name": pa.string()}
    ),
}


def per_user_table(table: str, frame: pd.DataFrame) -> pa.Table:
    """One of the per-customer tables as written (:data:`PER_USER_SCHEMAS`)."""
    return pa.Table.from_pandas(frame, schema=PER_USER_SCHEMAS[table], preserve_index=False)


def run_link_preferences(
    lake: Lake,
    ds: str,
    settings: SegmentSettings,
    *,
    shards: int = 1,
    dask_address: str | None = None,
    fit_users: int = FIT_USERS,
    run_id: str = "",
) -> dict:
    """Read the order lines ``<= ds`` with the day's clusters and segments; write the preference tables:
    from the bronze history in this process, or over ``shards`` user shards
    (:func:`basket_insights.preference_shards.sharded_preferences`, the same tables)."""
    from basket_insights.features import load_history

    started = time.monotonic()
    if shards > 1:
        from basket_insights.preference_shards import sharded_preferences

        done = sharded_preferences(
            lake, ds, settings, shards, dask_address=dask_address, fit_users=fit_users, run_id=run_id
        )
    else:
        lines = load_history(lake, ds).lines
        product_clusters = lake.read_table("gold", "product_clusters", dates=[ds]).to_pandas()
        segments = lake.read_table("gold", "customer_segments", dates=[ds]).to_pandas()
        log.info("link_preferences ds=%s: %d order lines read (%.1f s)", ds, len(lines), time.monotonic() - started)
        result = link_preferences(
            lines["user_id"].to_numpy(), lines["product_id"].to_numpy(), product_clusters, segments, settings, fit_users
        )
        for table, frame in (
            ("user_product_preferences", result.user_preferences),
            ("preference_segments", result.preference_segments),
        ):
            lake.write_table("gold", table, ds, per_user_table(table, frame), run_id=run_id)
        done = LinkedPreferences(
            result.preference_segment_profiles,
            result.preference_elbow,
            result.segment_preferences,
            users=len(result.preference_segments),
            preference_rows=len(result.user_preferences),
            lines=len(lines),
        )
        del lines, result
    for table, frame in (
        ("preference_segment_profiles", done.profiles),
        ("preference_elbow", done.elbow),
        ("segment_product_preferences", done.segment_preferences),
    ):
        lake.write_table("gold", table, ds, pa.Table.from_pandas(frame, preserve_index=False), run_id=run_id)
    top = (
        done.segment_preferences.sort_values("lift", ascending=False)
        .groupby("segment_name")
        .head(1)[["segment_name", "cluster_label", "lift"]]
    )
    log.info(
        "link_preferences ds=%s: %d users, %d preference segments; top lift per segment %s (%.1f s)",
        ds,
        done.users,
        len(done.profiles),
        top.round(2).to_dict("records"),
        time.monotonic() - started,
    )
    return {
        "rows_in": done.lines,
        "rows_out": done.preference_rows,
        "users": done.users,
        "shards": shards,
        "preference_segments": len(done.profiles),
    }
