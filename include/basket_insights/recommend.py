"""Personalised recommendations with reasons, and their offline evaluation.

Scoring (:func:`recommend`), vectorised over users × candidates (no Python loop over users):

* **Rule candidates**: consequents of rules whose antecedent items are all among the user's
  recent purchases (their last ``recent_orders`` orders). Rule evidence is shrunk towards the
  popularity prior: ``p = (n_A · confidence + m · support(B)) / (n_A + m)``, where ``n_A`` is the
  number of baskets holding the antecedent and ``m`` the prior's strength in baskets
  (``prior_baskets``). Rules mined from few baskets say little and ``p`` stays near the product's
  popularity; well-supported rules move it to their confidence. Several rules for one product
  combine as a noisy-or; the strongest one is the reason.
* **Segment-popular candidates**: the products bought in the largest share of the baskets of
  the user's behavioural segment, scored by that share (the fallback when rules give fewer than K).
* **Preference**: every score is multiplied by ``1 + preference_weight × share`` of the user's
  purchases in the product's cluster.
* Everything the user ever bought is excluded. Top ``k`` per user, each with its ``source``
  (``rule`` or ``segment_popular``) and a readable ``reason``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from basket_insights.config import Settings
from basket_insights.lake import Lake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecommendSettings:
    k: int = 10
    recent_orders: int = 3
    prior_baskets: float = 50.0
    segment_candidates: int = 60
    preference_weight: float = 0.5
    shards: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> RecommendSettings:
        return cls(
            k=settings.recommend_k, recent_orders=settings.recommend_recent_orders, shards=settings.recommend_shards
        )


@dataclass
class History:
    """Order lines as of a date: one row per line with ``user_id, order_id, order_number, product_id``."""

    lines: pd.DataFrame

    @property
    def n_baskets(self) -> int:
        return int(self.lines["order_id"].nunique())


def _keys(users: np.ndarray, products: np.ndarray) -> np.ndarray:
    return users.astype(np.int64) << 32 | products.astype(np.int64)


def product_support(history: History) -> pd.Series:
    """Share of baskets holding each product."""
    pairs = history.lines.drop_duplicates(["order_id", "product_id"])
    return pairs["product_id"].value_counts() / max(history.n_baskets, 1)


def recommend(
    history: History,
    rules: pd.DataFrame,
    segments: pd.DataFrame,
    names: pd.Series,
    settings: RecommendSettings | None = None,
    preferences: pd.DataFrame | None = None,
    product_clusters: pd.DataFrame | None = None,
    users: np.ndarray | None = None,
    use_rules: bool = True,
    use_segments: bool = True,
) -> pd.DataFrame:
    """Top-k recommendations per user (see the module docstring).

    Parameters
    ----------
    history:
        Every order line up to the date (defines recent purchases, what was bought, popularity).
    rules:
        ``antecedents`` and ``consequents`` (lists of product ids), ``support``, ``confidence``, ``lift``,
        ``antecedent_support``.
    segments:
        ``user_id, segment_id, segment_name``.
    names:
        ``product_id -> product_name``.
    preferences, product_clusters:
        ``user_id, cluster_id, share`` and ``product_id, cluster_id`` (optional).
    users:
        Recommend for these users only (default: every user in ``history``).
    use_rules, use_segments:
        Candidate sources (switching one off gives the baselines of :func:`evaluate`).

    Returns
    -------
    pandas.DataFrame
        ``user_id, rank, product_id, product_name, score, source, reason``.
    """
    settings = settings or RecommendSettings()
    lines = history.lines
    if users is not None:
        lines = lines[lines["user_id"].isin(users)]
    n_baskets = max(history.n_baskets, 1)
    support = product_support(history)
    bought_keys = pd.Index(np.unique(_keys(lines["user_id"].to_numpy(), lines["product_id"].to_numpy())))
    candidates = []

    if use_rules and len(rules):
        last = lines.groupby("user_id")["order_number"].transform("max")
        recent = lines.loc[lines["order_number"] > last - settings.recent_orders, ["user_id", "product_id"]]
        recent = recent.drop_duplicates()
        recent_keys = pd.Index(_keys(recent["user_id"].to_numpy(), recent["product_id"].to_numpy()))
        flat = rules.assign(consequent=rules["consequents"]).explode("consequent")
        flat = flat[flat["antecedents"].map(len) <= 2]
        flat = flat.assign(
            first=flat["antecedents"].map(lambda a: a[0]),
            second=flat["antecedents"].map(lambda a: a[1] if len(a) > 1 else -1),
        )
        fired = recent.merge(flat, left_on="product_id", right_on="first")
        two = fired["second"].to_numpy() >= 0
        ok = ~two
        ok[two] = pd.Index(_keys(fired["user_id"].to_numpy()[two], fired["second"].to_numpy()[two])).isin(recent_keys)
        fired = fired[ok]
        n_a = fired["antecedent_support"].to_numpy() * n_baskets
        prior = support.reindex(fired["consequent"].astype(np.int64)).fillna(0.0).to_numpy()
        fired = fired.assign(
            p=(n_a * fired["confidence"].to_numpy() + settings.prior_baskets * prior) / (n_a + settings.prior_baskets)
        )
        fired = fired[~_in(bought_keys, fired["user_id"], fired["consequent"])]
        if len(fired):
            fired = fired.sort_values("p", ascending=False, kind="stable")
            # noisy-or of the rules for one (user, product), in log space to stay vectorised
            fired = fired.assign(log_miss=np.log1p(-np.minimum(fired["p"].to_numpy(), 1 - 1e-12)))
            grouped = fired.groupby(["user_id", "consequent"], sort=False)
            combined = 1.0 - np.exp(grouped["log_miss"].sum())
            best = grouped.head(1).set_index(["user_id", "consequent"])
            candidates.append(
                pd.DataFrame(
                    {
                        "user_id": best.index.get_level_values(0),
                        "product_id": best.index.get_level_values(1).astype(np.int64),
                        "score": combined.reindex(best.index).to_numpy(),
                        "source": "rule",
                        "antecedents": best["antecedents"].to_numpy(),
                        "confidence": best["confidence"].to_numpy(),
                        "lift": best["lift"].to_numpy(),
                    }
                )
            )

    user_ids = np.unique(lines["user_id"].to_numpy())
    if use_segments:
        # what a segment buys comes from all its members, whichever users are being scored
        everyone = history.lines
        seg = segments.set_index("user_id")[["segment_id", "segment_name"]].reindex(np.unique(everyone["user_id"]))
        seg["segment_id"] = seg["segment_id"].fillna(-1).astype(np.int64)
        seg["segment_name"] = seg["segment_name"].fillna("all customers")
        seg_of_line = seg["segment_id"].reindex(everyone["user_id"].to_numpy()).to_numpy()
        per_basket = pd.DataFrame(
            {
                "segment_id": seg_of_line,
                "order_id": everyone["order_id"].to_numpy(),
                "product_id": everyone["product_id"].to_numpy(),
            }
        ).drop_duplicates(["order_id", "product_id"])
        seg_baskets = per_basket.drop_duplicates("order_id")["segment_id"].value_counts()
        top = per_basket.groupby(["segment_id", "product_id"]).size().rename("n").reset_index()
        top["share"] = top["n"] / top["segment_id"].map(seg_baskets)
        top = top.sort_values(["segment_id", "share", "product_id"], ascending=[True, False, True])
        top = top.groupby("segment_id").head(settings.segment_candidates)
        scored = seg.loc[user_ids].reset_index(names="user_id")
        pairs = scored[["user_id", "segment_id", "segment_name"]].merge(top, on="segment_id")
        pairs = pairs[~_in(bought_keys, pairs["user_id"], pairs["product_id"])]
        candidates.append(
            pd.DataFrame(
                {
                    "user_id": pairs["user_id"].to_numpy(),
                    "product_id": pairs["product_id"].to_numpy(),
                    "score": pairs["share"].to_numpy(),
                    "source": "segment_popular",
                    "segment_name": pairs["segment_name"].to_numpy(),
                    "segment_share": pairs["share"].to_numpy(),
                }
            )
        )
    else:  # global popularity: the baseline without segments
        top = support.sort_values(ascending=False, kind="stable").head(settings.segment_candidates)
        pairs = pd.DataFrame(
            {"user_id": np.repeat(user_ids, len(top)), "product_id": np.tile(top.index.to_numpy(), len(user_ids))}
        )
        pairs["score"] = np.tile(top.to_numpy(), len(user_ids))
        pairs = pairs[~_in(bought_keys, pairs["user_id"], pairs["product_id"])]
        candidates.append(pairs.assign(source="popular", segment_name="all"))

    if not candidates:
        return pd.DataFrame(columns=["user_id", "rank", "product_id", "product_name", "score", "source", "reason"])
    allc = pd.concat(candidates, ignore_index=True)
    if preferences is not None and product_clusters is not None and len(preferences):
        cluster_of = product_clusters.set_index("product_id")["cluster_id"]
        pref = pd.Series(
            preferences["share"].to_numpy(),
            index=_keys(preferences["user_id"].to_numpy(), preferences["cluster_id"].to_numpy()),
        )
        clusters = cluster_of.reindex(allc["product_id"]).fillna(-1).astype(np.int64).to_numpy()
        share = pref.reindex(_keys(allc["user_id"].to_numpy(), np.maximum(clusters, 0))).fillna(0.0).to_numpy()
        allc["score"] = allc["score"].to_numpy() * (
            1.0 + settings.preference_weight * np.where(clusters >= 0, share, 0)
        )
    allc = allc.sort_values(["user_id", "score", "product_id"], ascending=[True, False, True], kind="stable")
    allc = allc.drop_duplicates(["user_id", "product_id"])
    allc = allc.groupby("user_id").head(settings.k)
    allc["rank"] = allc.groupby("user_id").cumcount().astype(np.int16) + 1
    allc["product_name"] = names.reindex(allc["product_id"]).fillna("").to_numpy()
    allc["reason"] = _reasons(allc, names)
    return allc[["user_id", "rank", "product_id", "product_name", "score", "source", "reason"]].reset_index(drop=True)


def _reasons(rows: pd.DataFrame, names: pd.Series) -> list[str]:
    """A sentence per recommendation, built only for the rows kept (the top k)."""
    out = []
    get = names.get
    missing = [None] * len(rows)
    for source, product, antecedents, confidence, lift, segment, share in zip(
        rows["source"], rows["product_name"], rows.get("antecedents", missing), rows.get("confidence", missing),
        rows.get("lift", missing), rows.get("segment_name", missing), rows.get("segment_share", missing), strict=True,
    ):  # fmt: skip
        if source == "rule":
            bought = " + ".join(str(get(i, i)) for i in antecedents)
            out.append(f"bought {bought} → {product} (confidence {confidence:.2f}, lift {lift:.1f})")
        elif source == "segment_popular":
            out.append(f"popular with {segment} customers (in {share:.0%} of their baskets)")
        else:
            out.append("popular with all customers")
    return out


def _in(keys: pd.Index, users: pd.Series, products: pd.Series) -> np.ndarray:
    """Which (user, product) rows are in ``keys``."""
    return pd.Index(_keys(users.to_numpy(), products.to_numpy().astype(np.int64))).isin(keys)


# -- loading, the DAG steps, evaluation ---------------------------------------------------------


def load_history(lake: Lake, ds: str) -> History:
    """Every order line ``<= ds`` with its user and order number."""
    orders = lake.read_table("bronze", "orders", up_to=ds, columns=["order_id", "user_id", "order_number"])
    lines = lake.read_table("bronze", "order_products", up_to=ds, columns=["order_id", "product_id"])
    order_ids = orders.column("order_id").to_numpy()
    size = int(max(order_ids.max(initial=0), lines.column("order_id").to_numpy().max(initial=0))) + 1
    user_of = np.full(size, -1, dtype=np.int64)
    number_of = np.zeros(size, dtype=np.int32)
    user_of[order_ids] = orders.column("user_id").to_numpy()
    number_of[order_ids] = orders.column("order_number").to_numpy()
    line_orders = lines.column("order_id").to_numpy()
    frame = pd.DataFrame(
        {
            "user_id": user_of[line_orders],
            "order_id": line_orders,
            "order_number": number_of[line_orders],
            "product_id": lines.column("product_id").to_numpy().astype(np.int64),
        }
    )
    return History(frame[frame["user_id"] >= 0].reset_index(drop=True))


def _rules_frame(table: pa.Table) -> pd.DataFrame:
    rules = table.to_pandas()
    for column in ("antecedents", "consequents"):
        rules[column] = rules[column].map(lambda v: [int(i) for i in v])
    return rules


def product_names(lake: Lake, ds: str) -> pd.Series:
    """``product_id -> product_name`` of the catalog in force on ``ds``."""
    from basket_insights.ingest import catalog_as_of

    when = catalog_as_of(lake, ds)["products"]
    if when is None:
        raise FileNotFoundError(f"no bronze products on or before {ds} in {lake.url}")
    table = lake.read_table("bronze", "products", dates=[when], columns=["product_id", "product_name"])
    return table.to_pandas().set_index("product_id")["product_name"]


def shard_table(shard: int, shards: int) -> str:
    return f"recommendations_shard_{shard}_of_{shards}"


def run_recommend(lake: Lake, ds: str, settings: RecommendSettings, shard: int = 0, *, run_id: str = "") -> dict:
    """Recommend for the users of one shard (``user_id % shards == shard``); write ``silver/<shard table>``."""
    started = time.monotonic()
    history = load_history(lake, ds)
    users = np.unique(history.lines["user_id"].to_numpy())
    users = users[users % settings.shards == shard]
    rules = _rules_frame(lake.read_table("gold", "association_rules", dates=[ds]))
    segments = lake.read_table("gold", "customer_segments", dates=[ds]).to_pandas()
    preferences = lake.read_table("gold", "user_product_preferences", dates=[ds]).to_pandas()
    clusters = lake.read_table("gold", "product_clusters", dates=[ds], columns=["product_id", "cluster_id"]).to_pandas()
    names = product_names(lake, ds)
    log.info("recommend ds=%s shard %d/%d: %d users, %d rules (%.1f s)", ds, shard + 1, settings.shards, len(users),
             len(rules), time.monotonic() - started)  # fmt: skip
    recs = recommend(history, rules, segments, names, settings, preferences, clusters, users=users)
    recs.insert(0, "ds", ds)
    table = pa.Table.from_pandas(recs, preserve_index=False)
    lake.write_table("silver", shard_table(shard, settings.shards), ds, table, run_id=run_id)
    by_source = recs["source"].value_counts().to_dict()
    log.info("recommend ds=%s shard %d/%d: %d recommendations %s (%.1f s)", ds, shard + 1, settings.shards, len(recs),
             by_source, time.monotonic() - started)  # fmt: skip
    return {"shard": shard, "users": len(users), "recommendations": len(recs), "by_source": by_source}


def run_collect_recommendations(lake: Lake, ds: str, shards: int, *, run_id: str = "") -> dict:
    """Concatenate the shards into ``gold/recommendations/ds``."""
    parts = [lake.read_table("silver", shard_table(i, shards), dates=[ds]) for i in range(shards)]
    table = pa.concat_tables(parts)
    lake.write_table("gold", "recommendations", ds, table, run_id=run_id)
    return {"recommendations": table.num_rows, "shards": shards}


def holdout(history: History) -> tuple[History, pd.DataFrame]:
    """Temporal hold-out: each user's last order (users with at least 2 orders) is held out.

    Returns the earlier history and the held-out products the user had never bought before
    (``user_id, product_id``).
    """
    lines = history.lines
    last = lines.groupby("user_id")["order_number"].transform("max")
    first = lines.groupby("user_id")["order_number"].transform("min")
    held = (lines["order_number"] == last) & (last > first)
    train, test = lines[~held], lines[held]
    seen = pd.Index(_keys(train["user_id"].to_numpy(), train["product_id"].to_numpy()))
    new = test[~_in(seen, test["user_id"], test["product_id"])]
    return History(train.reset_index(drop=True)), new[["user_id", "product_id"]].drop_duplicates().reset_index(
        drop=True
    )


def score(recs: pd.DataFrame, truth: pd.DataFrame, k: int, n_products: int) -> dict:
    """hit rate@k, precision@k, recall@k over users with at least one new product; catalogue coverage."""
    users = truth["user_id"].unique()
    hits = recs[recs["rank"] <= k].merge(truth, on=["user_id", "product_id"])
    per_user = hits.groupby("user_id").size().reindex(users, fill_value=0)
    relevant = truth.groupby("user_id").size().reindex(users)
    return {
        "users_evaluated": len(users),
        "hit_rate": float((per_user > 0).mean()) if len(users) else 0.0,
        "precision": float((per_user / k).mean()) if len(users) else 0.0,
        "recall": float((per_user / relevant).mean()) if len(users) else 0.0,
        "coverage": float(recs["product_id"].nunique() / max(n_products, 1)),
    }


def evaluate(
    history: History,
    segments: pd.DataFrame,
    names: pd.Series,
    rule_settings: object,
    settings: RecommendSettings | None = None,
    product_clusters: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Offline evaluation against the global and segment popularity baselines, on a temporal hold-out.

    Rules are mined again from the earlier history only, and preferences recomputed from it.
    """
    from basket_insights.preferences import preference_counts
    from basket_insights.rules import Baskets, association_rules, frequent_itemsets

    settings = settings or RecommendSettings()
    train, truth = holdout(history)
    users = truth["user_id"].unique()
    baskets = Baskets.from_pairs(train.lines["order_id"].to_numpy(), train.lines["product_id"].to_numpy())
    itemsets = frequent_itemsets(baskets, rule_settings.min_support, rule_settings.max_len, rule_settings.min_count)
    rules = association_rules(itemsets, baskets.n_baskets, rule_settings)
    rules = rules.assign(
        antecedents=rules["antecedents"].map(sorted),
        consequents=rules["consequents"].map(sorted),
        antecedent_support=rules["antecedent support"] if len(rules) else [],
    )
    preferences = None
    if product_clusters is not None and len(train.lines):
        pu, pc_, counts = preference_counts(
            train.lines["user_id"].to_numpy(), train.lines["product_id"].to_numpy(),
            product_clusters.set_index("product_id")["cluster_id"],
        )  # fmt: skip
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        nz_u, nz_c = np.nonzero(counts)
        preferences = pd.DataFrame({"user_id": pu[nz_u], "cluster_id": pc_[nz_c], "share": shares[nz_u, nz_c]})
    n_products = len(names)
    rows = []
    for method, kwargs in (
        ("recommender", {"use_rules": True, "use_segments": True, "preferences": preferences}),
        ("segment_popularity", {"use_rules": False, "use_segments": True}),
        ("global_popularity", {"use_rules": False, "use_segments": False}),
    ):
        recs = recommend(train, rules, segments, names, settings, users=users,
                         product_clusters=product_clusters, **kwargs)  # fmt: skip
        rows.append({"method": method, "k": settings.k, **score(recs, truth, settings.k, n_products)})
    out = pd.DataFrame(rows)
    out["rules"] = len(rules)
    return out


def run_evaluate(lake: Lake, ds: str, rule_settings: object, settings: RecommendSettings, *, run_id: str = "") -> dict:
    """Evaluate on the hold-out and write ``gold/evaluation/ds``."""
    started = time.monotonic()
    history = load_history(lake, ds)
    segments = lake.read_table("gold", "customer_segments", dates=[ds]).to_pandas()
    clusters = lake.read_table("gold", "product_clusters", dates=[ds], columns=["product_id", "cluster_id"]).to_pandas()
    names = product_names(lake, ds)
    table = evaluate(history, segments, names, rule_settings, settings, clusters)
    table.insert(0, "ds", ds)
    lake.write_table("gold", "evaluation", ds, pa.Table.from_pandas(table, preserve_index=False), run_id=run_id)
    log.info("evaluate ds=%s: %s (%.1f s)", ds, table.drop(columns=["ds"]).round(4).to_dict("records"),
             time.monotonic() - started)  # fmt: skip
    return {row["method"]: round(row["hit_rate"], 4) for row in table.to_dict("records")}
