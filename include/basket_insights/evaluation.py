"""The offline evaluation, the judge of every method: each customer's last order held out.

Protocol (:func:`evaluate`): for every customer with at least two orders, the last order ``<= ds``
is held out (:func:`basket_insights.splits.split_last_orders`); every method recommends ``k``
products from the history before it, never one the customer already bought, and is scored on the
held-out products the customer had never bought (:mod:`basket_insights.ranking_metrics`).

Leak-free: segments are recomputed from the earlier history (:func:`held_out_segments`, the day's
number of segments, ids matched to the day's), rules are mined from it, and the recommender is
fitted on it (its ranker learns from the order *before* the held-out one). Nothing a method sees
contains a held-out order. The ``fit_recommender`` task fits on this same split and writes the
held-out segments beside the model, so the evaluation scores the very ranker that serves the day's
recommendations, without fitting a second one.

Methods (:data:`METHODS`): the recommender; each candidate source alone (item model, rules,
product-cluster preferences, segment popularity by buyers, popularity by buyers); and popularity
by order lines, the classic baseline.

Up to ``EvaluationSettings.customers`` (50,000) held-out customers are scored, those of smallest
user hash when there are more (the same sample when the history is read in user shards): at full
scale that is a third of them, and the intervals stay within about ±0.001 of recall.

Metrics: hit rate, precision, recall and NDCG at ``k``, catalogue coverage; a 95 % bootstrap interval
over customers for recall and hit rate (``bootstrap`` resamples, one seed), and for every method
the paired difference of its recall to the best of the three baselines (the same resampled
customers for both), with its interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from basket_insights import popularity
from basket_insights.candidates import Evidence, ProductGroups
from basket_insights.features import History
from basket_insights.ranking_metrics import per_user
from basket_insights.recommender import (
    FittedRecommender,
    RecommenderSettings,
    scored_blocks,
    serving_evidence,
    top_k,
)
from basket_insights.splits import split_last_orders
from basket_insights.user_shards import smallest_hash_users

log = logging.getLogger(__name__)

#: Methods of the evaluation table: name -> what it is.
METHODS = {
    "recommender": "the ranker over every source",
    "item_model": "the item-to-item model alone",
    "rules": "association rules alone",
    "cluster_preferences": "the customer's favourite product clusters alone",
    "segment_popularity": "the most-bought products of the customer's segment (distinct buyers)",
    "popularity_by_buyers": "the products bought by the most customers",
    "popularity_by_lines": "the products in the most order lines",
}
BASELINES = ("popularity_by_lines", "popularity_by_buyers", "segment_popularity")

#: (method, the candidate column ranking it, ascending) for the sources read off the candidates.
_SOURCE_RANKINGS = (
    ("item_model", "item_rank", True),
    ("rules", "rule_score", False),
    ("cluster_preferences", "cluster_order", True),
    ("segment_popularity", "segment_rank", True),
    ("popularity_by_buyers", "popular_rank", True),
)


@dataclass(frozen=True)
class EvaluationSettings:
    """``customers``: the held-out customers scored (those of smallest user hash when there are more; the
    intervals say what the sample costs in precision); ``bootstrap``: resamples of the intervals and
    ``seed`` theirs."""

    customers: int = 50_000
    bootstrap: int = 1000
    seed: int = 0


def bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, methods) means of ``values`` (methods × customers) over customers resampled with replacement.

    Every method sees the same resampled customers, so differences between methods are paired. A
    resample's means are its counts of each customer times ``values``: one matrix product, not a gather
    of every method's values per pick.
    """
    n = values.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, values.shape[0]))
    block = max(1, 4_000_000 // max(n, 1))
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        picks = rng.integers(0, n, size=(count, n))
        picks += n * np.arange(count)[:, None]
        times = np.bincount(picks.ravel(), minlength=count * n).reshape(count, n)
        out[start : start + count] = times @ (values.T / n)
    return out


def per_user_scores(recs: dict[str, pd.DataFrame], truth: pd.DataFrame, k: int) -> dict[str, pd.DataFrame]:
    """Each method's :func:`~basket_insights.ranking_metrics.per_user` scores of ``recs`` against ``truth``."""
    return {method: per_user(frame, truth, k) for method, frame in recs.items()}


def score_methods(
    recs: dict[str, pd.DataFrame], truth: pd.DataFrame, k: int, n_products: int, settings: EvaluationSettings
) -> pd.DataFrame:
    """The evaluation table of :data:`METHODS` ``recs`` (``user_id, rank, product_id`` each) against ``truth``."""
    recommended = {method: frame["product_id"].nunique() for method, frame in recs.items()}
    return methods_table(per_user_scores(recs, truth, k), recommended, k, n_products, settings)


def methods_table(
    scores: dict[str, pd.DataFrame],
    recommended: dict[str, int],
    k: int,
    n_products: int,
    settings: EvaluationSettings,
) -> pd.DataFrame:
    """The evaluation table from each method's per-customer ``scores`` (customers in one order for
    every method: the bootstrap pairs them) and its count of distinct products ``recommended``."""
    methods = list(scores)
    users = len(next(iter(scores.values()))) if scores else 0
    recall = np.vstack([scores[m]["recall"].to_numpy() for m in methods])
    hit = np.vstack([scores[m]["hit"].to_numpy() for m in methods])
    rows = []
    if users:
        boot = bootstrap_means(np.vstack([recall, hit]), settings.bootstrap, settings.seed)
        boot_recall, boot_hit = boot[:, : len(methods)], boot[:, len(methods) :]
    baselines = [m for m in BASELINES if m in methods]
    best = max(baselines, key=lambda m: recall[methods.index(m)].mean()) if baselines and users else None
    for i, method in enumerate(methods):
        frame = scores[method]
        row = {
            "method": method,
            "k": k,
            "users_evaluated": users,
            "hit_rate": float(frame["hit"].mean()) if users else 0.0,
            "precision": float(frame["precision"].mean()) if users else 0.0,
            "recall": float(frame["recall"].mean()) if users else 0.0,
            "ndcg": float(frame["ndcg"].mean()) if users else 0.0,
            "coverage": float(recommended[method] / max(n_products, 1)),
        }
        if users:
            row |= {
                "recall_low": float(np.quantile(boot_recall[:, i], 0.025)),
                "recall_high": float(np.quantile(boot_recall[:, i], 0.975)),
                "hit_rate_low": float(np.quantile(boot_hit[:, i], 0.025)),
                "hit_rate_high": float(np.quantile(boot_hit[:, i], 0.975)),
            }
        if best is not None:
            diff = boot_recall[:, i] - boot_recall[:, methods.index(best)]
            row |= {
                "baseline": best,
                "recall_vs_baseline": row["recall"] - float(recall[methods.index(best)].mean()),
                "recall_vs_baseline_low": float(np.quantile(diff, 0.025)),
                "recall_vs_baseline_high": float(np.quantile(diff, 0.975)),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def held_out_segments(
    orders: pd.DataFrame,
    train_lines: pd.DataFrame,
    held_order_ids: np.ndarray,
    ds: str,
    day_profiles: pd.DataFrame | None,
    segment_settings: object,
) -> pd.DataFrame:
    """Segments from the history without the held-out orders (and without anything after them).

    The day's number of segments, ids and names matched to the day's segments (``day_profiles``),
    so the methods use segments exactly as the day's would be, but learned without the held-out orders.
    """
    features = held_out_features(orders, train_lines, held_order_ids, ds)
    return segments_of_features(features, day_profiles, segment_settings)


def held_out_features(
    orders: pd.DataFrame, train_lines: pd.DataFrame, held_order_ids: np.ndarray, ds: str
) -> pd.DataFrame:
    """The customers' behavioural features from their orders before the held-out ones (and without
    anything after them): :func:`basket_insights.features.compute_user_features` of that history."""
    from basket_insights.features import compute_user_features

    held = orders[orders["order_id"].isin(held_order_ids)]
    cut = pd.Series(held["order_number"].to_numpy(), index=held["user_id"].to_numpy())
    limit = cut.reindex(orders["user_id"].to_numpy()).to_numpy()
    earlier = orders[np.isnan(limit) | (orders["order_number"].to_numpy() < np.nan_to_num(limit, nan=np.inf))]
    return compute_user_features(earlier, train_lines, ds)


def segments_of_features(
    features: pd.DataFrame, day_profiles: pd.DataFrame | None, segment_settings: object
) -> pd.DataFrame:
    """The segment assignments of ``features`` with the day's number of segments, ids and names
    (see :func:`held_out_segments`)."""
    from dataclasses import replace

    from basket_insights.segments import segment_users

    settings = segment_settings
    if day_profiles is not None and len(day_profiles):
        # the day's k: no elbow over other values of k to compute and throw away
        k = len(day_profiles)
        settings = replace(segment_settings, k=k, k_min=k, k_max=k)
    return segment_users(features, settings, reference=day_profiles).assignments


def evaluate(
    history: History,
    segments: pd.DataFrame | None,
    mine_rules: Callable[[History], pd.DataFrame],
    fitted: FittedRecommender,
    groups: ProductGroups,
    n_products: int,
    settings: RecommenderSettings,
    evaluation: EvaluationSettings = EvaluationSettings(),
) -> pd.DataFrame:
    """Hold out each customer's last order, run every method on the rest, score them.

    ``segments`` were learned without the held-out orders (:func:`held_out_segments`) and ``fitted``
    on the history without them (the ``fit_recommender`` task fits on exactly this split, so the
    recommender judged here is the one that serves); ``mine_rules`` mines the earlier history's
    rules. The full ``history`` is let go once split (when the caller passed its only reference).
    """
    started = time.monotonic()
    train, held, truth = split_last_orders(history)
    del history, held
    rules = mine_rules(train)
    log.info(
        "evaluate: %d customers with a held-out order, %d new products in them; %d rules (%.1f s)",
        truth["user_id"].nunique(),
        len(truth),
        len(rules),
        time.monotonic() - started,
    )
    ev = serving_evidence(train, segments, rules, groups, fitted, settings)
    del train
    customers = smallest_hash_users(np.unique(truth["user_id"].to_numpy(np.int64)), evaluation.customers)
    truth = truth[truth["user_id"].isin(customers)]
    table = score_methods(
        method_recommendations(ev, fitted, customers, settings), truth, settings.k, n_products, evaluation
    )
    table["rules"] = len(rules)
    log.info("evaluate: %d methods scored (%.1f s)", len(table), time.monotonic() - started)
    return table


def method_recommendations(
    ev: Evidence, fitted: FittedRecommender, customers: np.ndarray, settings: RecommenderSettings
) -> dict[str, pd.DataFrame]:
    """Every method's top ``k`` (``user_id, rank, product_id``) for ``customers`` (ids) from ``ev``."""
    rows = ev.up.rows_of(customers)
    rows = rows[rows >= 0]
    recs: dict[str, list[pd.DataFrame]] = {m: [] for m in METHODS}
    for frame in scored_blocks(ev, fitted, rows, settings):
        recs["recommender"].append(top_k(frame, frame["ranker_score"].to_numpy(), settings.k))
        frame["cluster_order"] = frame["cluster_rank"] * 1_000 - frame["buyer_share"]
        for method, column, ascending in _SOURCE_RANKINGS:
            nominated = frame[frame[column].notna()]
            value = nominated[column].to_numpy(np.float64)
            recs[method].append(top_k(nominated, -value if ascending else value, settings.k))
    by_lines = popularity.global_candidates(ev.up, rows, ev.popularity.lines, settings.k)
    recs["popularity_by_lines"].append(by_lines)
    combined = {}
    for method, parts in recs.items():
        frame = (
            pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"row": [], "rank": [], "product_id": []})
        )
        frame["user_id"] = ev.up.users[frame["row"].to_numpy(np.int64)]
        combined[method] = frame[["user_id", "rank", "product_id"]]
    return combined
