"""The recommendation tasks of the DAG: read the lake, fit, recommend, evaluate, write the lake.

* :func:`run_fit_recommender` (``fit_recommender``): fits EASE's λ and the ranker on the history
  ``<= ds`` (:func:`basket_insights.recommender.fit_recommender`) and writes them to
  ``silver/recommender_model/ds=D/`` (``model.pkl``, and ``fit.json`` with every choice and its
  validation score, for people).
* :func:`run_recommend` (``recommend``, mapped over ``BASKET_RECOMMEND_SHARDS``): the top ``k`` of
  the shard's customers (``user_id % shards``) with source and reason, to a silver shard table.
* :func:`run_collect_recommendations`: the shards as ``gold/recommendations``.
* :func:`run_evaluate` (``evaluate``): the leak-free evaluation of every method
  (:mod:`basket_insights.evaluation`) to ``gold/evaluation``.

The methods themselves live in :mod:`basket_insights.candidates`, :mod:`basket_insights.ranker`,
:mod:`basket_insights.reasons` and :mod:`basket_insights.recommender`; this module only moves data.
"""

from __future__ import annotations

import json
import logging
import pickle
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from basket_insights.candidates import CandidateSettings, ProductGroups
from basket_insights.config import Settings
from basket_insights.evaluation import EvaluationSettings
from basket_insights.features import History, load_history
from basket_insights.ingest import catalog_as_of, product_names
from basket_insights.lake import Lake
from basket_insights.recommender import (
    RECOMMENDATIONS_SCHEMA,
    FittedRecommender,
    RecommenderSettings,
    SegmentsOf,
    fit_without_last_orders,
    recommend_customers,
    recommendations_table,
    serving_evidence,
)

log = logging.getLogger(__name__)

MODEL_TABLE = "recommender_model"
HELD_OUT_SEGMENTS = "held_out_segments"


def recommender_settings(settings: Settings) -> RecommenderSettings:
    """The recommender's settings from the environment (``BASKET_RECOMMEND_*``, ``BASKET_ITEM_MODEL_PRODUCTS``)."""
    return RecommenderSettings(
        k=settings.recommend_k,
        item_products=settings.item_model_products,
        candidates=CandidateSettings(recent_orders=settings.recommend_recent_orders),
    )


def rule_miner(rule_settings: object):
    """A function mining a history's association rules with ``rule_settings`` (fit and evaluation re-mine)."""
    from basket_insights.rules import Baskets, mine

    def mine_rules(history: History) -> pd.DataFrame:
        lines = history.lines
        baskets = Baskets.from_pairs(lines["order_id"].to_numpy(), lines["product_id"].to_numpy())
        return mine(baskets, rule_settings)[1]

    return mine_rules


def product_groups(lake: Lake, ds: str, n_products: int = 0) -> ProductGroups:
    """Each product's cluster (the day's ``gold/product_clusters``), aisle and department (the catalog in force)."""
    when = catalog_as_of(lake, ds)["products"]
    if when is None:
        raise FileNotFoundError(f"no bronze products on or before {ds} in {lake.url}")
    products = lake.read_table("bronze", "products", dates=[when], columns=["product_id", "aisle_id", "department_id"])
    clusters = lake.read_table(
        "gold", "product_clusters", dates=[ds], columns=["product_id", "cluster_id", "cluster_label"]
    ).to_pandas()
    return ProductGroups.from_frames(products.to_pandas(), clusters, n_products)


def _rules_frame(table: pa.Table) -> pd.DataFrame:
    rules = table.to_pandas()
    for column in ("antecedents", "consequents"):
        rules[column] = rules[column].map(lambda v: [int(i) for i in v])
    return rules


def _history_and_groups(lake: Lake, ds: str) -> tuple[History, ProductGroups]:
    history = load_history(lake, ds)
    n_products = int(history.lines["product_id"].max()) + 1 if len(history.lines) else 0
    return history, product_groups(lake, ds, n_products)


def held_out_segments_of(lake: Lake, ds: str, segment_settings: object) -> SegmentsOf:
    """A ``segments_of(earlier history, held-out order ids)``: the segments of the history ``<= ds``
    without those orders (the day's k, ids and names; :func:`basket_insights.evaluation.held_out_segments`)."""
    from basket_insights.evaluation import held_out_segments

    def segments_of(_: History, held_orders: np.ndarray) -> pd.DataFrame:
        profiles = lake.read_table("gold", "segment_profiles", dates=[ds]).to_pandas()
        columns = ["order_id", "user_id", "order_number", "order_dow", "order_hour_of_day", "days_since_prior_order"]
        orders = lake.read_table("bronze", "orders", up_to=ds, with_ds=True, columns=columns).to_pandas()
        orders["order_date"] = pd.to_datetime(orders.pop("ds"))
        # the features need `reordered`, which the history does not keep
        lines = lake.read_table("bronze", "order_products", up_to=ds, columns=["order_id", "product_id", "reordered"])
        lines = lines.filter(pc.invert(pc.is_in(lines["order_id"], pa.array(held_orders))))
        return held_out_segments(orders, lines.to_pandas(), held_orders, ds, profiles, segment_settings)

    return segments_of


def run_fit_recommender(
    lake: Lake,
    ds: str,
    rule_settings: object,
    segment_settings: object,
    settings: RecommenderSettings,
    *,
    user_shards: int = 1,
    dask_address: str | None = None,
    run_id: str = "",
) -> dict:
    """Fit on the history ``<= ds`` without each customer's last order; write ``silver/recommender_model/ds``.

    The fit never sees the evaluation's held-out orders: its segments are learned without them
    (written to ``silver/held_out_segments`` for ``evaluate``), and its ranker learns
    from the order before them (:func:`~basket_insights.recommender.fit_without_last_orders`).
    ``recommend`` applies it to the whole history, ``evaluate`` to the history without the last orders.
    With ``user_shards > 1``, from the user shards of the history (:mod:`basket_insights.fit_shards`:
    in this process or on the Dask scheduler at ``dask_address``), the same fit.
    """
    started = time.monotonic()
    if user_shards > 1:
        from functools import partial

        from basket_insights.fit_shards import fit_from_shards, held_out_segments_from_shards

        segments = held_out_segments_from_shards(lake, ds, segment_settings, user_shards, dask_address=dask_address)
        # written first: the shards read their customers' segments from it
        segments_table = pa.Table.from_pandas(segments, preserve_index=False)
        lake.write_table("silver", HELD_OUT_SEGMENTS, ds, segments_table, run_id=run_id)
        groups_of = partial(product_groups, lake, ds)
        fitted, rows_in = fit_from_shards(
            lake,
            ds,
            rule_settings,
            settings,
            user_shards,
            groups_of,
            segments=("silver", HELD_OUT_SEGMENTS),
            dask_address=dask_address,
        )
    else:
        loaded = [_history_and_groups(lake, ds)]
        groups = loaded[0][1]
        rows_in = len(loaded[0][0].lines)
        log.info("fit_recommender ds=%s: %d order lines read (%.1f s)", ds, rows_in, time.monotonic() - started)
        segments_of = held_out_segments_of(lake, ds, segment_settings)
        # pop: the fit holds the only reference and lets the full history go once it is split
        fitted, segments = fit_without_last_orders(
            loaded.pop()[0], segments_of, rule_miner(rule_settings), groups, settings
        )
        segments_table = pa.Table.from_pandas(segments, preserve_index=False)
        lake.write_table("silver", HELD_OUT_SEGMENTS, ds, segments_table, run_id=run_id)
    described = describe_fit(fitted)
    lake.write_files(
        "silver",
        MODEL_TABLE,
        ds,
        {
            "model.pkl": pickle.dumps(fitted),
            "fit.json": json.dumps(described, indent=1, default=str).encode(),
        },
        run_id=run_id,
    )
    log.info("fit_recommender ds=%s: %s (%.1f s)", ds, described, time.monotonic() - started)
    return {"rows_in": rows_in, "rows_out": 1, **described}


def describe_fit(fitted: FittedRecommender) -> dict:
    """What the fit chose, for logs, ``fit.json`` and people."""
    return {
        "ranker": fitted.ranker.params,
        "ranker_features": fitted.ranker.features,
        "ranker_grid": fitted.ranker.validation,
        "item_model_products": fitted.item_products,
        "item_model_l2": round(fitted.item_l2, 3),
        "item_model_grid": fitted.l2_validation,
        "training": fitted.training,
    }


def load_fitted(lake: Lake, ds: str) -> FittedRecommender:
    """The model ``fit_recommender`` wrote for ``ds`` (our own lake: the pickle is trusted)."""
    return pickle.loads(lake.read_file("silver", MODEL_TABLE, ds, "model.pkl"))


def load_held_out_segments(lake: Lake, ds: str) -> pd.DataFrame:
    """The segments ``fit_recommender`` learned for ``ds`` without each customer's last order."""
    return lake.read_table("silver", HELD_OUT_SEGMENTS, dates=[ds]).to_pandas()


def shard_table(shard: int, shards: int) -> str:
    return f"recommendations_shard_{shard}_of_{shards}"


def run_recommend(
    lake: Lake,
    ds: str,
    settings: RecommenderSettings,
    shard: int = 0,
    shards: int = 1,
    *,
    user_shards: int = 1,
    dask_address: str | None = None,
    run_id: str = "",
) -> dict:
    """Recommend for the customers of one shard (``user_id % shards == shard``); write ``silver/<shard table>``.

    With ``user_shards > 1`` the task reads the history in user shards instead
    (:func:`basket_insights.recommend_shards.recommend_from_shards`: in this process or on the Dask
    scheduler at ``dask_address``) and recommends the customers of the user shards ``k`` with
    ``k % shards == shard``; each customer gets the same rows either way.
    """
    started = time.monotonic()
    fitted = load_fitted(lake, ds)
    if user_shards > 1:
        from functools import partial

        from basket_insights.recommend_shards import recommend_from_shards

        rules = _rules_frame(lake.read_table("gold", "association_rules", dates=[ds]))
        groups_of = partial(product_groups, lake, ds)
        done = recommend_from_shards(
            lake,
            ds,
            fitted,
            rules,
            settings,
            user_shards,
            groups_of,
            table=shard_table(shard, shards),
            task=(shard, shards),
            dask_address=dask_address,
            run_id=run_id,
        )
        return done | {"shard": shard, "recommendations": done["rows_out"]}
    history, groups = _history_and_groups(lake, ds)
    rules = _rules_frame(lake.read_table("gold", "association_rules", dates=[ds]))
    segments = lake.read_table("gold", "customer_segments", dates=[ds]).to_pandas()
    names = product_names(lake, ds)
    users = np.unique(history.lines["user_id"].to_numpy())
    users = users[users % shards == shard]
    log.info(
        "recommend ds=%s shard %d/%d: %d customers, %d rules (%.1f s)",
        ds,
        shard + 1,
        shards,
        len(users),
        len(rules),
        time.monotonic() - started,
    )
    ev = serving_evidence(history, segments, rules, groups, fitted, settings)
    del history
    log.info("recommend ds=%s shard %d/%d: evidence ready (%.1f s)", ds, shard + 1, shards, time.monotonic() - started)
    recs = recommend_customers(ev, fitted, users, names, settings)
    lake.write_table("silver", shard_table(shard, shards), ds, recommendations_table(recs, ds), run_id=run_id)
    by_source = recs["source"].value_counts().to_dict()
    log.info(
        "recommend ds=%s shard %d/%d: %d recommendations %s (%.1f s)",
        ds,
        shard + 1,
        shards,
        len(recs),
        by_source,
        time.monotonic() - started,
    )
    return {
        "rows_in": int(ev.up.lines.sum()),
        "rows_out": len(recs),
        "shard": shard,
        "users": len(users),
        "recommendations": len(recs),
        "by_source": by_source,
    }


def run_collect_recommendations(lake: Lake, ds: str, shards: int, *, run_id: str = "") -> dict:
    """The shards' files, copied as they are (never read: the memory does not grow with the customers),
    committed as ``gold/recommendations/ds``."""
    names, rows = [], 0
    for i in range(shards):
        copied, copied_rows = lake.copy_parts("silver", shard_table(i, shards), ds, "gold", "recommendations")
        names += copied
        rows += copied_rows
    lake.commit_parts("gold", "recommendations", ds, names, rows, RECOMMENDATIONS_SCHEMA, run_id=run_id)
    return {"rows_in": rows, "rows_out": rows, "recommendations": rows, "shards": shards}


def run_evaluate(
    lake: Lake,
    ds: str,
    rule_settings: object,
    settings: RecommenderSettings,
    *,
    user_shards: int = 1,
    dask_address: str | None = None,
    evaluation: EvaluationSettings | None = None,
    run_id: str = "",
) -> dict:
    """Evaluate every method on the hold-out (:func:`basket_insights.evaluation.evaluate`) with the model
    and held-out segments ``fit_recommender`` wrote; write ``gold/evaluation/ds``.

    With ``user_shards > 1``, from the user shards of the history
    (:func:`basket_insights.evaluation_shards.evaluate_from_shards`: in this process or on the Dask
    scheduler at ``dask_address``), the same table.
    """
    from basket_insights.evaluation import evaluate

    evaluation = evaluation or EvaluationSettings()
    started = time.monotonic()
    fitted = load_fitted(lake, ds)
    n_products = len(product_names(lake, ds))
    if user_shards > 1:
        from functools import partial

        from basket_insights.evaluation_shards import evaluate_from_shards

        groups_of = partial(product_groups, lake, ds)
        table, rows_in = evaluate_from_shards(
            lake,
            ds,
            rule_settings,
            fitted,
            settings,
            user_shards,
            groups_of,
            n_products,
            segments=("silver", HELD_OUT_SEGMENTS),
            evaluation=evaluation,
            dask_address=dask_address,
        )
    else:
        segments = load_held_out_segments(lake, ds)
        loaded = [_history_and_groups(lake, ds)]
        groups = loaded[0][1]
        rows_in = len(loaded[0][0].lines)
        # pop: evaluate holds the only reference and lets the full history go once it is split
        miner = rule_miner(rule_settings)
        table = evaluate(loaded.pop()[0], segments, miner, fitted, groups, n_products, settings, evaluation)
    table.insert(0, "ds", ds)
    lake.write_table("gold", "evaluation", ds, pa.Table.from_pandas(table, preserve_index=False), run_id=run_id)
    shown = table[["method", "users_evaluated", "hit_rate", "recall", "recall_low", "recall_high"]].round(4)
    log.info("evaluate ds=%s: %s (%.1f s)", ds, shown.to_dict("records"), time.monotonic() - started)
    hit_rates = {row["method"]: round(row["hit_rate"], 4) for row in table.to_dict("records")}
    return {"rows_in": rows_in, "rows_out": len(table), **hit_rates}
