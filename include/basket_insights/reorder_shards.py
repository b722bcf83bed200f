"""Buy again (``predict_reorders``) over the user shards of the history, as from the whole of it.

A customer's candidates, labels, predictions and F1 come from their own order lines; only the
product features count every customer, and their counts add up over shards. Three passes, each a map
over the shards (:func:`basket_insights.shard_map.map_shards`, in the task's process or on Dask):

1. each shard's product counts for the fit, the evaluation and the prediction
   (:class:`~basket_insights.reorder_features.ProductCounts`), and its labelled and held-out
   customers of smallest hash; of all shards' samples, the smallest are the fit's
   ``train_users`` and the evaluation's ``customers`` that the whole-history path takes;
2. each shard's fit examples (candidates and labels) of its customers in the fit sample; the model
   is fitted on all of them here and written to ``silver/reorder_model``;
3. each shard predicts its customers' sets and writes its part of ``gold/buy_again``, and judges its
   customers of the evaluation sample; their F1 are bootstrapped here as if judged together.

What meets in one process is per-product counts, the two samples (their ids, the fit's examples and
the evaluation's F1) and the model: a fixed size, whatever the customers.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from functools import partial

import numpy as np
import pandas as pd

from basket_insights.arrays import factorize_ids
from basket_insights.buy_again import (
    BUY_AGAIN_SCHEMA,
    fit_examples,
    fit_on_examples,
    labelled_customers,
    predict_buy_again,
)
from basket_insights.evaluation import EvaluationSettings
from basket_insights.features import History, load_history
from basket_insights.ingest import product_names
from basket_insights.lake import Lake
from basket_insights.reorder_evaluation import Judged, evaluation_table, held_out_customers, judge_buy_again
from basket_insights.reorder_features import ProductStats, orders_from_last
from basket_insights.reorder_model import FrequencyModel, ReorderModel, ReorderSettings
from basket_insights.reorder_tasks import (
    FIT_SKIP,
    as_of_day,
    buy_again_table,
    product_counts_of_splits,
    write_evaluation,
    write_model,
)
from basket_insights.shard_map import map_shards
from basket_insights.user_shards import shard_of, smallest_hash_users

log = logging.getLogger(__name__)


def _history(lake: Lake, ds: str, shards: int, shard: int) -> tuple[History, tuple[np.ndarray, np.ndarray]]:
    """One shard's reorder history and each line's place from its customer's last order."""
    history = load_history(lake, ds, cart_and_day=True, shard=shard, shards=shards)
    return history, orders_from_last(history.lines)


def _count(lake_url: str, conn_id: str | None, ds: str, shards: int, samples: tuple[int, int], shard: int) -> dict:
    history, positions = _history(Lake(lake_url, conn_id), ds, shards, shard)
    train_users, evaluation_users = samples
    return {
        "counts": product_counts_of_splits(history, positions, FIT_SKIP),
        "labelled": smallest_hash_users(labelled_customers(history, positions, FIT_SKIP), train_users),
        "held_out": smallest_hash_users(held_out_customers(history, positions), evaluation_users),
        "rows": len(history.lines),
    }


def _examples(
    lake_url: str, conn_id: str | None, ds: str, shards: int, products: ProductStats, sample: np.ndarray, shard: int
) -> dict:
    history, positions = _history(Lake(lake_url, conn_id), ds, shards, shard)
    mine = sample[shard_of(sample, shards) == shard]
    candidates, labels = fit_examples(history, mine, FIT_SKIP, positions, products)
    return {"candidates": candidates, "labels": labels, "rows": len(history.lines)}


def _predict_and_judge(
    lake_url: str,
    conn_id: str | None,
    ds: str,
    shards: int,
    model: ReorderModel | FrequencyModel,
    settings: ReorderSettings,
    products: tuple[ProductStats, ProductStats],
    evaluated: np.ndarray,
    shard: int,
) -> dict:
    lake = Lake(lake_url, conn_id)
    history, positions = _history(lake, ds, shards, shard)
    evaluation_products, prediction_products = products
    predictions = predict_buy_again(
        model, history, product_names(lake, ds), as_of_day(ds), settings, prediction_products
    )
    part = lake.write_part("gold", "buy_again", ds, buy_again_table(predictions, ds))
    part_rows, customers = len(predictions), int((predictions["rank"] == 0).sum())
    del predictions
    mine = evaluated[shard_of(evaluated, shards) == shard]
    judged = judge_buy_again(history, model, settings, mine, positions, evaluation_products)
    return {"part": part, "part_rows": part_rows, "customers": customers, "judged": judged, "rows": len(history.lines)}


def gathered_examples(parts: list[dict]) -> tuple[pd.DataFrame, np.ndarray]:
    """The shards' fit examples in the order the whole history gives them: by customer, then product
    (each shard's are), ``row`` numbering the customers."""
    candidates = pd.concat([part["candidates"] for part in parts], ignore_index=True)
    labels = np.concatenate([part["labels"] for part in parts])
    order = np.argsort(candidates["user_id"].to_numpy(np.int64), kind="stable")
    candidates = candidates.take(order).reset_index(drop=True)
    candidates["row"] = factorize_ids(candidates["user_id"].to_numpy(np.int64))[0]
    return candidates, labels[order]


def sharded_predict_reorders(
    lake: Lake,
    ds: str,
    settings: ReorderSettings,
    shards: int,
    *,
    dask_address: str | None = None,
    evaluation: EvaluationSettings | None = None,
    run_id: str = "",
) -> dict:
    """Write the model, ``gold/buy_again`` (committed once every shard wrote its part) and the
    evaluation tables for ``ds`` from the user shards (see the module docstring): the same tables as
    :func:`basket_insights.reorder_tasks.run_predict_reorders` with one shard."""
    evaluation = evaluation or EvaluationSettings()
    started = time.monotonic()
    common = (lake.url, lake.conn_id, ds, shards)
    label = f"predict_reorders ds={ds}"
    work = partial(_count, *common, (settings.train_users, evaluation.customers))
    counted = map_shards(work, shards, label=f"{label} (1/3: product counts)", address=dask_address)
    counts = [functools.reduce(operator.add, split) for split in zip(*(d["counts"] for d in counted), strict=True)]
    fit_products, evaluation_products, prediction_products = (c.stats() for c in counts)
    fit_sample = smallest_hash_users(np.concatenate([d["labelled"] for d in counted]), settings.train_users)
    evaluated = smallest_hash_users(np.concatenate([d["held_out"] for d in counted]), evaluation.customers)

    work = partial(_examples, *common, fit_products, fit_sample)
    examples = map_shards(work, shards, label=f"{label} (2/3: fit examples)", address=dask_address)
    model = fit_on_examples(*gathered_examples(examples), settings)
    del examples
    write_model(lake, ds, model, run_id=run_id)
    log.info("%s: model fitted (%.1f s)", label, time.monotonic() - started)

    products = (evaluation_products, prediction_products)
    work = partial(_predict_and_judge, *common, model, settings, products, evaluated)
    predicted = map_shards(work, shards, label=f"{label} (3/3: predicted and judged)", address=dask_address)
    rows_out = sum(d["part_rows"] for d in predicted)
    parts = [d["part"] for d in predicted]
    lake.commit_parts("gold", "buy_again", ds, parts, rows_out, BUY_AGAIN_SCHEMA, run_id=run_id)
    table = evaluation_table(Judged.combine([d["judged"] for d in predicted]), evaluation)
    f1 = write_evaluation(lake, ds, table, model, run_id=run_id)
    log.info("%s: mean F1 %s (%.1f s)", label, f1, time.monotonic() - started)
    customers = sum(d["customers"] for d in predicted)
    rows_in = sum(d["rows"] for d in counted)
    return {"rows_in": rows_in, "rows_out": rows_out, "customers": customers, "shards": shards, **f1}
