"""The evaluation (``evaluate``) over the user shards of the history, as from the whole of it.

Every customer's last order is held out in their own shard (the split is per customer), so the
evaluation's view of a shard is its history without those orders
(:class:`~basket_insights.recommend_shards.ShardView` with ``held_out=1``). Over that view:

1. the association rules are mined again from the earlier baskets of every shard (exact counts that
   add up: :func:`basket_insights.itemset_shards.sharded_itemsets`);
2. the evidence every customer shares (popularity, the item model refitted with the fitted λ;
   :func:`~basket_insights.recommend_shards.shared_evidence`), and the judged customers: the
   ``EvaluationSettings.customers`` of smallest user hash among those with new products held out;
3. each shard recommends by every method for its judged customers and scores them
   (:func:`basket_insights.evaluation.per_user_scores`); their scores, sorted by customer as if
   judged together, and the distinct products each method named make the table here.

What meets in one process: itemset counts, the shared evidence and the judged customers' scores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from basket_insights.candidates import ProductGroups
from basket_insights.evaluation import (
    EvaluationSettings,
    method_recommendations,
    methods_table,
    per_user_scores,
)
from basket_insights.itemset_shards import rules_of_view
from basket_insights.lake import Lake
from basket_insights.recommend_shards import ShardView, SharedEvidence, shared_evidence
from basket_insights.recommender import FittedRecommender, RecommenderSettings
from basket_insights.rules import RuleSettings
from basket_insights.shard_cache import kept_shards
from basket_insights.shard_map import map_shards
from basket_insights.user_shards import shard_of

log = logging.getLogger(__name__)


def _judge(
    view: ShardView, fitted: FittedRecommender, settings: RecommenderSettings, shared: SharedEvidence, shard: int
) -> dict:
    earlier, new, _ = view.read(shard)
    customers = shared.judged[shard_of(shared.judged, view.shards) == shard]
    ev = shared.evidence(earlier, view.segments_of(shard), settings)
    del earlier
    recs = method_recommendations(ev, fitted, customers, settings)
    truth = new[new["user_id"].isin(customers)]
    return {
        "scores": per_user_scores(recs, truth, settings.k),
        "products": {method: np.unique(frame["product_id"].to_numpy(np.int64)) for method, frame in recs.items()},
        "rows": len(customers),
    }


def evaluate_from_shards(
    lake: Lake,
    ds: str,
    rule_settings: RuleSettings,
    fitted: FittedRecommender,
    settings: RecommenderSettings,
    shards: int,
    product_groups: Callable[[int], ProductGroups],
    n_products: int,
    *,
    segments: tuple[str, str],
    evaluation: EvaluationSettings | None = None,
    dask_address: str | None = None,
) -> tuple[pd.DataFrame, int]:
    """The table of :func:`basket_insights.evaluation.evaluate` from the user shards (see the module
    docstring), and the order lines read; ``segments``: where the segments learned without the
    held-out orders are (zone, table)."""
    evaluation = evaluation or EvaluationSettings()
    started = time.monotonic()
    label = f"evaluate ds={ds}"
    with kept_shards(dask_address) as cache:
        view = ShardView(lake.url, lake.conn_id, ds, shards, held_out=1, segments=segments, cache=cache)
        rules = rules_of_view(view, rule_settings, label=f"{label} rules", dask_address=dask_address)
        shared = shared_evidence(
            view,
            fitted,
            rules,
            settings,
            product_groups,
            label=label,
            dask_address=dask_address,
            judged=evaluation.customers,
        )
        log.info(
            "%s: %d rules, %d customers judged (%.1f s)",
            label,
            len(rules),
            len(shared.judged),
            time.monotonic() - started,
        )
        work = partial(_judge, view, fitted, settings, shared)
        judged = map_shards(work, shards, label=f"{label} (judged)", address=dask_address)
    scores = {}
    for method in judged[0]["scores"]:
        frame = pd.concat([d["scores"][method] for d in judged], ignore_index=True)
        scores[method] = frame.sort_values("user_id", kind="stable", ignore_index=True)
    recommended = {method: len(np.unique(np.concatenate([d["products"][method] for d in judged]))) for method in scores}
    table = methods_table(scores, recommended, settings.k, n_products, evaluation)
    table["rules"] = len(rules)
    log.info("%s: %d methods scored (%.1f s)", label, len(table), time.monotonic() - started)
    return table, shared.lines
