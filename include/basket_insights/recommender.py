"""The recommender: fitted on the data a run sees, then applied to every customer.

**Fitting** (:func:`fit_recommender`), on every run, from the history alone; the DAG fits on the
history without each customer's last order (:func:`fit_without_last_orders`), so that the one model
which serves is also the one the evaluation judges on those orders:

1. Each customer's last order becomes the labels, the history before it the input
   (:func:`basket_insights.splits.split_last_orders`). Association rules are mined again from the
   input only (``mine_rules``), so no label basket is evidence for its own label.
2. EASE's λ (:mod:`basket_insights.item_model`): each value of :func:`~basket_insights.item_model.l2_grid`
   is fitted on the input and scored by the recall@k of its candidates alone on a sample of
   customers' label orders; the best is kept.
3. The ranker (:mod:`basket_insights.ranker`): the candidates of a sample of customers
   (``RankerSettings.train_users``) with their features, labelled by the label orders, train the
   gradient-boosted model; its settings are chosen on a validation part of those customers.

**Applying** (:func:`recommend_customers`): the same evidence is computed from the whole history
(EASE refitted with the chosen λ), every customer's candidates are scored by the ranker, block by
block (``block_users`` customers at a time: memory stays bounded whatever the customers), and the
top ``k`` get a ``source`` and a ``reason`` (:mod:`basket_insights.reasons`). Nothing depends on
which other customers are in a block or shard: shards together equal one run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from basket_insights import item_model
from basket_insights.blocks import blocks_of, map_ahead
from basket_insights.candidates import CandidateSettings, Evidence, ProductGroups, candidate_features, gather_evidence
from basket_insights.features import History
from basket_insights.ranker import PopularityRanker, Ranker, RankerSettings, SourceRanker, fit_ranker
from basket_insights.ranking_metrics import mean_recall
from basket_insights.reasons import deciding_source, sentences
from basket_insights.splits import split_last_orders, split_off_last_orders
from basket_insights.user_shards import smallest_hash_users

log = logging.getLogger(__name__)

#: ``segments_of(earlier history, held-out order ids)``: the segments learned without those orders.
SegmentsOf = Callable[[History, np.ndarray], pd.DataFrame | None]

RECOMMENDATION_COLUMNS = ["user_id", "rank", "product_id", "product_name", "score", "source", "reason"]
#: ``gold/recommendations`` (and each recommend task's silver table): the run's date, then
#: :data:`RECOMMENDATION_COLUMNS`.
RECOMMENDATIONS_SCHEMA = pa.schema(
    [
        ("ds", pa.large_string()),
        ("user_id", pa.int64()),
        ("rank", pa.int16()),
        ("product_id", pa.int64()),
        ("product_name", pa.large_string()),
        ("score", pa.float64()),
        ("source", pa.large_string()),
        ("reason", pa.large_string()),
    ]
)


def recommendations_table(recs: pd.DataFrame, ds: str) -> pa.Table:
    """The rows of :func:`recommend_customers` as written for ``ds``."""
    return pa.Table.from_pandas(recs.assign(ds=ds), schema=RECOMMENDATIONS_SCHEMA, preserve_index=False)


@dataclass(frozen=True)
class RecommenderSettings:
    """``item_products``: N of the item model (docs/rules.md); ``l2_users``: label customers scoring each λ;
    ``block_users``: customers scored at a time, ``threads`` blocks at once."""

    k: int = 10
    item_products: int = 3000
    candidates: CandidateSettings = field(default_factory=CandidateSettings)
    ranker: RankerSettings = field(default_factory=RankerSettings)
    block_users: int = 10_000
    threads: int = 2
    l2_users: int = 2_000


@dataclass
class FittedRecommender:
    """What fitting learned: the ranker, EASE's λ, and how each choice scored on validation."""

    ranker: Ranker | SourceRanker | PopularityRanker
    item_l2: float
    item_products: int
    l2_validation: list[dict]
    training: dict


def top_k(frame: pd.DataFrame, score: np.ndarray, k: int) -> pd.DataFrame:
    """The ``k`` highest-``score`` rows of each customer ``row`` (ties: lower product id), with ``rank``."""
    order = np.lexsort((frame["product_id"].to_numpy(), -score, frame["row"].to_numpy()))
    rows = frame["row"].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(rows[1:] != rows[:-1]) + 1] if len(rows) else np.zeros(0, np.int64)
    position = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    keep = order[position < k]
    out = frame.iloc[keep].copy()
    out["score"] = score[keep]
    out["rank"] = (position[position < k] + 1).astype(np.int16)
    return out.reset_index(drop=True)


def _labels(frame: pd.DataFrame, label_keys: np.ndarray, n_products: int) -> np.ndarray:
    keys = frame["row"].to_numpy(np.int64) * n_products + frame["product_id"].to_numpy(np.int64)
    if len(label_keys) == 0:
        return np.zeros(len(keys), dtype=np.int8)
    pos = np.minimum(np.searchsorted(label_keys, keys), len(label_keys) - 1)
    return (label_keys[pos] == keys).astype(np.int8)


@dataclass(frozen=True)
class FitSample:
    """What the ranker and λ learn from: the evidence of the sampled customers alone (rows in user-id
    order), the new products of their label orders (``user_id, product_id``), and the item model's
    products and co-buyers (``XᵀX``) over all ``users`` customers of the input history."""

    ev: Evidence
    labels: pd.DataFrame
    products: np.ndarray
    gram: np.ndarray
    users: int
    labelled: int  # customers with a label order, sampled or not


def fit_recommender(
    history: History,
    segments: pd.DataFrame | None,
    mine_rules: Callable[[History], pd.DataFrame],
    groups: ProductGroups,
    settings: RecommenderSettings,
) -> FittedRecommender:
    """Fit λ and the ranker on ``history`` (see the module docstring); ``mine_rules`` mines a history's rules.

    The ranker's customers are the ``settings.ranker.train_users`` with a label order of smallest
    :func:`~basket_insights.user_shards.user_hash` (the same sample when the history is read in user
    shards: :mod:`basket_insights.recommend_shards`)."""
    started = time.monotonic()
    inputs, _, labels = split_last_orders(history)
    rules = mine_rules(inputs)
    ev = gather_evidence(inputs, segments, rules, groups, settings.candidates)
    up = ev.up
    labels = labels[up.rows_of(labels["user_id"].to_numpy()) >= 0]
    labelled = np.unique(labels["user_id"].to_numpy(np.int64))
    sample = smallest_hash_users(labelled, settings.ranker.train_users)
    products = item_model.model_products(up, settings.item_products)
    gram = item_model.co_buyers(up, products)
    log.info("fit: %d rules, evidence of %d customers (%.1f s)", len(rules), len(up.users), time.monotonic() - started)
    in_sample = labels[labels["user_id"].isin(sample)]
    return fit_on_sample(
        FitSample(ev.subset(up.rows_of(sample)), in_sample, products, gram, len(up.users), len(labelled)), settings
    )


def fit_on_sample(sample: FitSample, settings: RecommenderSettings) -> FittedRecommender:
    """EASE's λ and the ranker fitted on ``sample`` (steps 2 and 3 of the module docstring)."""
    started = time.monotonic()
    ev, up = sample.ev, sample.ev.up
    labels = sample.labels.sort_values(["user_id", "product_id"], ignore_index=True)  # one order, however gathered
    if len(labels) == 0:
        reason = "no customer has a previous order with a new product: nothing to learn a ranker from"
        log.warning("fit: %s; recommending by popularity by buyers", reason)
        return FittedRecommender(PopularityRanker(reason), 0.0, 0, [], {"customers": 0})
    label_rows = up.rows_of(labels["user_id"].to_numpy())
    label_keys = np.sort(label_rows * up.n_products + labels["product_id"].to_numpy(np.int64))
    relevant = pd.Series(label_rows).value_counts().sort_index()
    customers = relevant.index.to_numpy()
    log.info("fit: %d customers with a label order, %d sampled", sample.labelled, len(customers))
    # EASE's λ on the sampled customers' label orders
    products, gram = sample.products, sample.gram
    l2_rows = customers[: settings.l2_users]
    l2_truth = pd.DataFrame({"user_id": label_rows, "product_id": labels["product_id"].to_numpy()})
    l2_truth = l2_truth[np.isin(label_rows, l2_rows)]
    l2_results, best = [], None
    for l2 in item_model.l2_grid(gram):
        model = item_model.item_model_of(products, gram, sample.users, l2)
        found = item_model.candidates(model, up, l2_rows, settings.k).rename(
            columns={"row": "user_id", "item_rank": "rank"}
        )
        recall = mean_recall(found, l2_truth, settings.k)
        l2_results.append({"l2": l2, "validation_recall": recall})
        if best is None or recall > best[0]:
            best = (recall, model)
    ev = replace(ev, item_model=best[1])
    log.info(
        "fit: item model on %d products, λ %.1f (validation recall@%d %.4f over %d customers; %.1f s)",
        len(products),
        best[1].l2,
        settings.k,
        best[0],
        len(l2_rows),
        time.monotonic() - started,
    )
    frames = []
    for block in blocks_of(customers, settings.block_users):
        frames.append(candidate_features(ev, block, settings.candidates))
    frame = pd.concat(frames, ignore_index=True)
    y = _labels(frame, label_keys, up.n_products)
    try:
        ranker = fit_ranker(frame, y, relevant.loc[customers], settings.k, settings.ranker)
    except ValueError as exc:
        log.warning("fit: the ranker could not be fitted (%s); recommending by popularity by buyers", exc)
        ranker = PopularityRanker(str(exc))
    training = {
        "customers": len(customers),
        "candidates": len(frame),
        "positives": int(y.sum()),
        "label_products": int(relevant.loc[customers].sum()),
    }
    log.info(
        "fit: ranker on %d candidates of %d customers (%d positives of %d new products bought): %s (%.1f s)",
        len(frame),
        len(customers),
        training["positives"],
        training["label_products"],
        ranker.params,
        time.monotonic() - started,
    )
    return FittedRecommender(ranker, float(best[1].l2), settings.item_products, l2_results, training)


def fit_without_last_orders(
    history: History,
    segments_of: SegmentsOf,
    mine_rules: Callable[[History], pd.DataFrame],
    groups: ProductGroups,
    settings: RecommenderSettings,
) -> tuple[FittedRecommender, pd.DataFrame | None]:
    """:func:`fit_recommender` on ``history`` without each customer's last order (the evaluation's hold-out).

    One fit then serves the day (applied to the whole history) and is judged on the hold-out it never
    saw (applied to the history without it). Returns the fit and those segments.
    """
    train, held = split_off_last_orders(history)
    del history
    held_orders = np.unique(held["order_id"].to_numpy())
    del held
    segments = segments_of(train, held_orders)
    log.info("fit: %d customers' last orders held out; segments learned without them", len(held_orders))
    return fit_recommender(train, segments, mine_rules, groups, settings), segments


def serving_evidence(
    history: History,
    segments: pd.DataFrame | None,
    rules: pd.DataFrame | None,
    groups: ProductGroups,
    fitted: FittedRecommender,
    settings: RecommenderSettings,
) -> Evidence:
    """The evidence of the whole history, with EASE refitted on it with the chosen λ."""
    return gather_evidence(
        history,
        segments,
        rules,
        groups,
        settings.candidates,
        item_products=fitted.item_products,
        item_l2=fitted.item_l2,
    )


def scored_blocks(
    ev: Evidence, fitted: FittedRecommender, rows: np.ndarray, settings: RecommenderSettings
) -> Iterator[pd.DataFrame]:
    """The candidates of ``rows``, block by block, each with the ranker's ``score``; progress in the log."""
    candidate_settings = replace(settings.candidates, popular=max(settings.candidates.popular, settings.k))
    rows = np.sort(rows)
    started, done, candidates = time.monotonic(), 0, 0

    def score(block: np.ndarray) -> pd.DataFrame:
        frame = candidate_features(ev, block, candidate_settings)
        frame["ranker_score"] = fitted.ranker.score(frame)
        return frame

    # the next blocks are scored while the caller works on this one (basket_insights.blocks)
    for block, frame in map_ahead(score, blocks_of(rows, settings.block_users), settings.threads):
        done, candidates = done + len(block), candidates + len(frame)
        log.info(
            "scored %d/%d customers, %d candidates (%.1f s)", done, len(rows), candidates, time.monotonic() - started
        )
        yield frame


def recommend_customers(
    ev: Evidence,
    fitted: FittedRecommender,
    users: np.ndarray,
    names: pd.Series,
    settings: RecommenderSettings,
    with_reasons: bool = True,
) -> pd.DataFrame:
    """Top ``k`` per customer of ``users`` with history: :data:`RECOMMENDATION_COLUMNS`."""
    rows = ev.up.rows_of(np.asarray(users))
    rows = np.unique(rows[rows >= 0])
    name_of = names.to_dict()
    parts = []
    # each block's top k gets its sources and reasons before the next block: the reasons' work
    # (every owned product of every recommendation) stays the size of one block
    for frame in scored_blocks(ev, fitted, rows, settings):
        recs = top_k(frame, frame["ranker_score"].to_numpy(), settings.k)
        del frame
        recs["user_id"] = ev.up.users[recs["row"].to_numpy(np.int64)]
        recs["product_name"] = [str(name_of.get(p, "")) for p in recs["product_id"].tolist()]
        if with_reasons:
            recs["source"] = deciding_source(fitted.ranker, recs, recs["score"].to_numpy())
            recs["reason"] = sentences(recs, ev, name_of)
        else:
            recs["source"], recs["reason"] = "", ""
        parts.append(recs[RECOMMENDATION_COLUMNS])
    if not parts:
        return pd.DataFrame({c: [] for c in RECOMMENDATION_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    return out.astype({"user_id": np.int64, "product_id": np.int64})
