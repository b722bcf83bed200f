"""Candidates from every source, with the features the ranker scores them on.

:func:`gather_evidence` computes, once per history, what every source and feature needs: each
customer's products (:mod:`basket_insights.user_products`), popularity by buyers and by lines,
overall and per segment (:mod:`basket_insights.popularity`), the item-to-item model
(:mod:`basket_insights.item_model`), the fired association rules
(:mod:`basket_insights.rule_candidates`), and each customer's shares of purchases per product
cluster, aisle and department (:mod:`basket_insights.cluster_candidates`).

:func:`candidate_features` then takes a block of customers and returns one row per (customer,
candidate product): the union of the sources' nominations (never a product the customer bought),
with :data:`FEATURES`. A feature a source does not have for a candidate is ``NaN`` (the gradient-
boosted ranker handles missing values natively). ``nominated_by`` has a bit per source of
:data:`SOURCES`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from basket_insights import cluster_candidates, item_model, popularity, rule_candidates
from basket_insights.arrays import sorted_unique
from basket_insights.features import History
from basket_insights.item_model import ItemModel
from basket_insights.popularity import Popularity
from basket_insights.user_products import UserProducts, user_products

#: Candidate sources, in the order their bit is set in ``nominated_by``.
SOURCES = ("rule", "item_model", "cluster", "segment_popular", "popular")

#: Features of a (customer, product) candidate, in the ranker's column order.
FEATURES = [
    "item_score",
    "item_rank",
    "rule_score",
    "rule_lift",
    "rules_fired",
    "rule_antecedent_support",
    "cluster_rank",
    "user_cluster_share",
    "segment_rank",
    "segment_share",
    "segment_lift",
    "popular_rank",
    "buyer_share",
    "lines_per_customer",
    "lines_per_buyer",
    "user_aisle_share",
    "recent_aisle_share",
    "user_department_share",
    "user_orders",
    "user_products",
    "user_lines_per_order",
    "segment",
]

#: The features that carry each source's evidence (the reasons ask which of them ranked a product).
SOURCE_FEATURES = {
    "rule": ["rule_score", "rule_lift", "rules_fired", "rule_antecedent_support"],
    "item_model": ["item_score", "item_rank"],
    "cluster": ["cluster_rank", "user_cluster_share"],
    "segment_popular": ["segment_rank", "segment_share", "segment_lift"],
    "popular": ["popular_rank", "buyer_share", "lines_per_customer"],
}


@dataclass(frozen=True)
class CandidateSettings:
    """How many candidates each source nominates per customer.

    Measured on the 3,000-customer feed of the tests (recall@10 of the recommender): 50 / 30 / 20 from
    the item model / segment / everyone gave 0.0525, these 30 / 20 / 10 0.0538, 20 / 20 / 10 0.0536; fewer
    candidates are cheaper to score at every scale (docs/rules.md).
    """

    item_model: int = 30
    segment: int = 20
    popular: int = 10
    cluster: int = 10
    clusters: int = 2
    recent_orders: int = 3


@dataclass(frozen=True)
class ProductGroups:
    """Product id -> code of its product cluster, aisle and department (``-1``: none)."""

    cluster_of: np.ndarray
    cluster_ids: np.ndarray
    cluster_labels: np.ndarray
    aisle_of: np.ndarray
    department_of: np.ndarray

    @classmethod
    def from_frames(cls, products: pd.DataFrame, clusters: pd.DataFrame | None, n_products: int) -> ProductGroups:
        """``products``: ``product_id, aisle_id, department_id``; ``clusters``: ``product_id, cluster_id``
        and optionally ``cluster_label``."""
        size = max(n_products, int(products["product_id"].to_numpy().max(initial=0)) + 1)
        if clusters is not None and len(clusters):
            cluster_of, cluster_ids = cluster_candidates.group_codes(
                clusters["product_id"].to_numpy(), clusters["cluster_id"].to_numpy(), size
            )
            labelled = clusters.drop_duplicates("cluster_id").set_index("cluster_id")
            labels = labelled["cluster_label"] if "cluster_label" in labelled else pd.Series(dtype=object)
            cluster_labels = np.array([str(labels.get(c, f"cluster {c}")) for c in cluster_ids], dtype=object)
        else:
            cluster_of, cluster_ids, cluster_labels = np.full(size, -1), np.zeros(0, np.int64), np.zeros(0, object)
        aisle_of, _ = cluster_candidates.group_codes(
            products["product_id"].to_numpy(), products["aisle_id"].to_numpy(), size
        )
        department_of, _ = cluster_candidates.group_codes(
            products["product_id"].to_numpy(), products["department_id"].to_numpy(), size
        )
        return cls(cluster_of, cluster_ids, cluster_labels, aisle_of, department_of)


@dataclass(frozen=True)
class Evidence:
    """Everything computed once from one history for every source, feature and reason."""

    up: UserProducts
    popularity: Popularity
    item_model: ItemModel | None
    rules: pd.DataFrame  # rule_candidates.flatten_rules
    groups: ProductGroups
    cluster_share: np.ndarray  # (customers, clusters)
    aisle_share: np.ndarray  # (customers, aisles)
    recent_aisle_share: np.ndarray
    department_share: np.ndarray

    def subset(self, rows: np.ndarray) -> Evidence:
        """The evidence of the customers of ``rows`` (ascending) alone: what is shared stays whole."""
        return self._with_rows(
            self.up.subset(rows),
            self.popularity.segment_of_row[rows],
            *(share[rows] for share in self._shares()),
        )

    @staticmethod
    def concat(parts: list[Evidence]) -> Evidence:
        """The evidence of disjoint sets of customers with the same shared parts (user shards) in one,
        rows sorted by user id."""
        order = np.argsort(np.concatenate([p.up.users for p in parts]), kind="stable")
        segment_of_row = np.concatenate([p.popularity.segment_of_row for p in parts])[order]
        shares = (np.concatenate(arrays)[order] for arrays in zip(*(p._shares() for p in parts), strict=True))
        return parts[0]._with_rows(UserProducts.concat([p.up for p in parts]), segment_of_row, *shares)

    def _shares(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.cluster_share, self.aisle_share, self.recent_aisle_share, self.department_share

    def _with_rows(self, up: UserProducts, segment_of_row: np.ndarray, *shares: np.ndarray) -> Evidence:
        cluster, aisle, recent_aisle, department = shares
        popularity_of_rows = replace(self.popularity, segment_of_row=segment_of_row)
        return replace(
            self,
            up=up,
            popularity=popularity_of_rows,
            cluster_share=cluster,
            aisle_share=aisle,
            recent_aisle_share=recent_aisle,
            department_share=department,
        )


def gather_evidence(
    history: History,
    segments: pd.DataFrame | None,
    rules: pd.DataFrame | None,
    groups: ProductGroups,
    settings: CandidateSettings,
    item: ItemModel | None = None,
    item_products: int = 0,
    item_l2: float | None = None,
    counts: popularity.PopularityCounts | None = None,
) -> Evidence:
    """Build :class:`Evidence`; the item model is ``item`` or, with ``item_products > 0``, fitted here.

    ``counts``: the popularity counts of more customers than ``history`` holds (those of every user
    shard, when ``history`` is one); by default counted over ``history``.
    """
    up = user_products(history, settings.recent_orders, n_products=len(groups.aisle_of))
    if item is None and item_products > 0:
        item = item_model.fit_item_model(up, item_products, l2=item_l2)
    if counts is None:
        counts = popularity.popularity_counts(up, history.lines["product_id"].to_numpy(np.int64), segments)

    def shares(code_of: np.ndarray, recent: bool = False) -> np.ndarray:
        n_groups = int(code_of.max(initial=-1)) + 1
        return cluster_candidates.cluster_shares(up, _fit(code_of, up.n_products), n_groups, recent=recent)

    return Evidence(
        up=up,
        popularity=popularity.popularity_of(counts, up, segments),
        item_model=item,
        rules=rule_candidates.flatten_rules(rules),
        groups=groups,
        cluster_share=shares(groups.cluster_of),
        aisle_share=shares(groups.aisle_of),
        recent_aisle_share=shares(groups.aisle_of, recent=True),
        department_share=shares(groups.department_of),
    )


def _fit(code_of: np.ndarray, n_products: int) -> np.ndarray:
    """A product -> group table of exactly ``n_products`` entries (``-1`` past its end)."""
    out = np.full(n_products, -1, dtype=np.int64)
    out[: min(n_products, len(code_of))] = code_of[:n_products]
    return out


def _lookup(matrix: np.ndarray, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    out = np.full(len(rows), np.nan, dtype=np.float32)
    ok = codes >= 0
    if matrix.shape[1]:
        out[ok] = matrix[rows[ok], codes[ok]]
    return out


def candidate_features(ev: Evidence, rows: np.ndarray, settings: CandidateSettings) -> pd.DataFrame:
    """The candidates of customers ``rows`` (rows of ``ev.up``) with :data:`FEATURES`.

    Returns ``row, product_id, nominated_by`` and the features, sorted by row then product; rule
    rows keep ``rule_confidence`` and ``rule_antecedents`` for the reasons.
    """
    up, pop = ev.up, ev.popularity
    rows = np.asarray(rows, dtype=np.int64)
    scores = None
    nominations = []
    if ev.item_model is not None and len(ev.item_model.products):
        scores = item_model.user_scores(ev.item_model, up, rows)
        found = item_model.candidates(ev.item_model, up, rows, settings.item_model, scores=scores)
        nominations.append(("item_model", found[["row", "product_id", "item_rank"]]))
    rule_found = rule_candidates.candidates(ev.rules, up, rows)
    nominations.append(("rule", rule_found))
    cluster_found = cluster_candidates.candidates(
        up,
        rows,
        ev.cluster_share,
        _fit(ev.groups.cluster_of, up.n_products),
        pop.buyers,
        settings.cluster,
        settings.clusters,
    )
    nominations.append(("cluster", cluster_found))
    segment_found = popularity.segment_candidates(pop, up, rows, settings.segment)
    nominations.append(("segment_popular", segment_found.rename(columns={"rank": "segment_rank"})))
    popular_found = popularity.global_candidates(up, rows, pop.buyers, settings.popular)
    nominations.append(("popular", popular_found.rename(columns={"rank": "popular_rank"})))

    keys = np.concatenate(
        [f["row"].to_numpy(np.int64) * up.n_products + f["product_id"].to_numpy(np.int64) for _, f in nominations]
    )
    keys = sorted_unique(keys, in_place=True)
    out = pd.DataFrame({"row": keys // up.n_products, "product_id": keys % up.n_products})
    nominated_by = np.zeros(len(out), dtype=np.int16)
    for source, found in nominations:
        where = np.searchsorted(keys, found["row"].to_numpy(np.int64) * up.n_products + found["product_id"].to_numpy())
        nominated_by[where] |= np.int16(1 << SOURCES.index(source))
        for column in found.columns.drop(["row", "product_id"]):
            values = found[column].to_numpy()
            if values.dtype == object:
                target = np.full(len(out), None, dtype=object)
            else:
                target = np.full(len(out), np.nan, dtype=np.float64)
            target[where] = values
            out[column] = target
    out["nominated_by"] = nominated_by
    for column in FEATURES:
        if column not in out:
            out[column] = np.nan

    row, product = out["row"].to_numpy(np.int64), out["product_id"].to_numpy(np.int64)
    if scores is not None:
        column_of = ev.item_model.column_of(up.n_products)
        model_column = column_of[product]
        local = np.searchsorted(rows, row) if np.all(rows[:-1] <= rows[1:]) else pd.Index(rows).get_indexer(row)
        item_score = np.full(len(out), np.nan, dtype=np.float32)
        inside = model_column >= 0
        item_score[inside] = scores[local[inside], model_column[inside]]
        out["item_score"] = item_score
    segment_code = pop.segment_of_row[row]
    buyer_share = pop.buyer_share()[product]
    segment_share = pop.segment_share()[segment_code, product]
    out["buyer_share"] = buyer_share
    out["lines_per_customer"] = pop.lines[product] / max(pop.users, 1)
    out["lines_per_buyer"] = pop.lines[product] / np.maximum(pop.buyers[product], 1)
    out["segment_share"] = segment_share
    with np.errstate(divide="ignore", invalid="ignore"):
        out["segment_lift"] = np.where(buyer_share > 0, segment_share / buyer_share, np.nan)
    groups = ev.groups
    out["user_cluster_share"] = _lookup(ev.cluster_share, row, _fit(groups.cluster_of, up.n_products)[product])
    out["user_aisle_share"] = _lookup(ev.aisle_share, row, _fit(groups.aisle_of, up.n_products)[product])
    out["recent_aisle_share"] = _lookup(ev.recent_aisle_share, row, _fit(groups.aisle_of, up.n_products)[product])
    out["user_department_share"] = _lookup(ev.department_share, row, _fit(groups.department_of, up.n_products)[product])
    out["user_orders"] = up.orders[row]
    out["user_products"] = np.diff(up.bought.indptr)[row]
    out["user_lines_per_order"] = up.lines[row] / np.maximum(up.orders[row], 1)
    out["segment"] = segment_code
    return out
