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


def preference_table(users: np.ndarray, clusters: np.ndarray, counts: np.ndarray) -> pd.DataFrame:
    """Long form of a :func:`preference_counts` matrix: ``user_id, cluster_id, purchases, share, rank``.

    One row per (user, cluster) with purchases; rank 1 is the user's largest share (ties: lower
    cluster id first). Rows are ordered by user, then cluster.
    """
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
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


def link_preferences(
    line_users: np.ndarray,
    line_products: np.ndarray,
    product_clusters: pd.DataFrame,
    segments: pd.DataFrame,
    settings: SegmentSettings | None = None,
) -> PreferenceTables:
    """Compute the three preference tables (see the module docstring)."""
    from sklearn.cluster import KMeans

    settings = settings or SegmentSettings()
    label_of = product_clusters.drop_duplicates("cluster_id").set_index("cluster_id")["cluster_label"]
    users, clusters, counts = preference_counts(
        line_users, line_products, product_clusters.set_index("product_id")["cluster_id"]
    )
    if len(users) == 0:
        raise ValueError("no purchases of clustered products: no preferences to link")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    long = preference_table(users, clusters, counts)

    # Second segmentation: users on their preference vectors.
    overall = counts.sum(axis=0) / max(counts.sum(), 1)
    elbow_table = elbow(shares, replace(settings, elbow_sample=min(settings.elbow_sample, 20_000), n_init=1))
    k = int(elbow_table.loc[elbow_table["chosen"], "k"].iloc[0])
    model = KMeans(n_clusters=k, n_init=settings.n_init, random_state=settings.seed).fit(shares)
    labels = model.labels_
    profile_rows, names = [], []
    for c in range(k):
        center = model.cluster_centers_[c]
        lift = center / np.maximum(overall, 1e-12)
        top = np.argsort(-(lift * (center > 0.01)))[:2]
        name = " + ".join(str(label_of.get(clusters[i], clusters[i])).split(" (")[0] for i in top)
        names.append(name)
        profile_rows.append(
            {
                "pref_segment_id": c,
                "size": int((labels == c).sum()),
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
    pref_segments = pd.DataFrame(
        {
            "user_id": users.astype(np.int32),
            "pref_segment_id": labels.astype(np.int32),
            "pref_segment_name": np.array(names, dtype=object)[labels],
        }
    )

    # Behavioural segment x product cluster: share and lift over all customers.
    seg = segments.set_index("user_id")[["segment_id", "segment_name"]].reindex(users)
    known = seg["segment_id"].notna().to_numpy()
    seg_codes, seg_ids = pd.factorize(seg.loc[known, "segment_id"].astype(int), sort=True)
    known_counts = counts[known]
    seg_counts = np.stack([known_counts[seg_codes == i].sum(axis=0) for i in range(len(seg_ids))])
    seg_shares = seg_counts / np.maximum(seg_counts.sum(axis=1, keepdims=True), 1)
    seg_names = seg.loc[known].drop_duplicates("segment_id").set_index("segment_id")["segment_name"]
    rows = []
    for i, sid in enumerate(seg_ids):
        for j, cid in enumerate(clusters):
            rows.append(
                (int(sid), seg_names[sid], int(cid), label_of.get(cid), float(seg_shares[i, j]),
                 float(seg_shares[i, j] / overall[j]) if overall[j] > 0 else np.nan)
            )  # fmt: skip
    segment_preferences = pd.DataFrame(
        rows, columns=["segment_id", "segment_name", "cluster_id", "cluster_label", "share", "lift"]
    )
    return PreferenceTables(long, pref_segments, profiles, elbow_table, segment_preferences)


def run_link_preferences(lake: Lake, ds: str, settings: SegmentSettings, *, run_id: str = "") -> dict:
    """Read bronze lines and orders ``<= ds`` with the day's clusters and segments; write the preference tables."""
    from basket_insights.features import load_history

    started = time.monotonic()
    lines = load_history(lake, ds).lines
    product_clusters = lake.read_table("gold", "product_clusters", dates=[ds]).to_pandas()
    segments = lake.read_table("gold", "customer_segments", dates=[ds]).to_pandas()
    log.info("link_preferences ds=%s: %d order lines read (%.1f s)", ds, len(lines), time.monotonic() - started)
    result = link_preferences(
        lines["user_id"].to_numpy(), lines["product_id"].to_numpy(), product_clusters, segments, settings
    )
    for table, frame in (
        ("user_product_preferences", result.user_preferences),
        ("preference_segments", result.preference_segments),
        ("preference_segment_profiles", result.preference_segment_profiles),
        ("preference_elbow", result.preference_elbow),
        ("segment_product_preferences", result.segment_preferences),
    ):
        lake.write_table("gold", table, ds, pa.Table.from_pandas(frame, preserve_index=False), run_id=run_id)
    top = (
        result.segment_preferences.sort_values("lift", ascending=False)
        .groupby("segment_name")
        .head(1)[["segment_name", "cluster_label", "lift"]]
    )
    log.info(
        "link_preferences ds=%s: %d users, %d preference segments; top lift per segment %s (%.1f s)",
        ds,
        result.preference_segments.shape[0],
        len(result.preference_segment_profiles),
        top.round(2).to_dict("records"),
        time.monotonic() - started,
    )
    return {
        "rows_in": len(lines),
        "rows_out": int(result.user_preferences.shape[0]),
        "users": int(result.preference_segments.shape[0]),
        "preference_segments": len(result.preference_segment_profiles),
    }
