"""The buy-again task of the DAG (``predict_reorders``): read the lake, fit, predict, evaluate, write.

:func:`run_predict_reorders` reads the order history ``<= ds`` once and

1. fits the buy-again model on it without each customer's last order
   (:func:`basket_insights.buy_again.fit_buy_again` with ``skip=1``: labels from the order before
   it), and writes
   it to ``silver/reorder_model/ds=D/`` (``model.pkl``, and ``fit.json`` with the grid, the
   importances and the training counts);
2. predicts every customer's next reorders from the whole history: ``gold/buy_again``;
3. judges the same model on the held-out last orders it never saw, beside the baselines
   (:mod:`basket_insights.reorder_evaluation`): ``gold/buy_again_evaluation``, and the features'
   importances: ``gold/buy_again_importances``.

The evaluation lives here rather than in ``evaluate`` because it shares this task's one read of the
history and its split; ``evaluate`` judges the recommendations.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from basket_insights.buy_again import BUY_AGAIN_SCHEMA, fit_buy_again, label_mask, predict_buy_again
from basket_insights.evaluation import EvaluationSettings
from basket_insights.features import History, load_history
from basket_insights.ingest import product_names
from basket_insights.lake import Lake
from basket_insights.reorder_evaluation import evaluate_buy_again
from basket_insights.reorder_features import (
    ProductCounts,
    ProductStats,
    orders_from_last,
    product_counts_by_group,
)
from basket_insights.reorder_model import FrequencyModel, ReorderModel, ReorderSettings

log = logging.getLogger(__name__)

MODEL_TABLE = "reorder_model"
_EPOCH = date(1970, 1, 1)
#: The fit's labels are each customer's order this many before the last: the last is the evaluation's.
FIT_SKIP = 1


def reorder_settings(settings: object) -> ReorderSettings:
    """The buy-again settings of a run: the defaults of :class:`ReorderSettings` (no ``BASKET_*``
    variable sets them yet; ``settings`` is taken so the DAG and local runs call it like the others)."""
    return ReorderSettings()


def describe_model(model: ReorderModel | FrequencyModel) -> dict:
    """What the fit chose, for logs, ``fit.json`` and people."""
    return {
        "params": model.params,
        "grid": model.validation,
        "importances": model.importances,
        "training": model.training,
    }


def load_reorder_model(lake: Lake, ds: str) -> ReorderModel:
    """The model ``predict_reorders`` wrote for ``ds`` (our own lake: the pickle is trusted)."""
    return pickle.loads(lake.read_file("silver", MODEL_TABLE, ds, "model.pkl"))


def product_counts_of_splits(
    history: History, positions: tuple[np.ndarray, np.ndarray], skip: int
) -> list[ProductCounts]:
    """The product counts the task's three steps use, from one sort of the history: the fit's
    (lines more than ``skip`` orders before each customer's last, as in
    :func:`~basket_insights.buy_again.fit_buy_again`), the evaluation's (every line but the held-out
    last orders of customers with two or more) and the prediction's (every line)."""
    # 1: a lone order, 2 .. skip + 1: the orders the fit leaves out, skip + 2: the fit's inputs
    group = (np.minimum(positions[0], skip + 1) + 1).astype(np.int8)
    group[label_mask(positions, 0)] = 0  # held out by the evaluation
    every = set(range(skip + 3))
    return product_counts_by_group(history, group, [{skip + 2}, every - {0}, every])


def product_stats_of_splits(
    history: History, positions: tuple[np.ndarray, np.ndarray], skip: int
) -> list[ProductStats]:
    """:func:`product_counts_of_splits` as the product features: fit, evaluation, prediction."""
    return [counts.stats() for counts in product_counts_of_splits(history, positions, skip)]


def buy_again_table(predictions: pd.DataFrame, ds: str) -> pa.Table:
    """``gold/buy_again`` rows of ``ds`` from :func:`~basket_insights.buy_again.predict_buy_again`."""
    return pa.Table.from_pandas(predictions.assign(ds=ds), schema=BUY_AGAIN_SCHEMA, preserve_index=False)


def write_model(lake: Lake, ds: str, model: ReorderModel | FrequencyModel, *, run_id: str = "") -> None:
    """``silver/reorder_model/ds=D/``: the model and what the fit chose (:func:`describe_model`)."""
    described = json.dumps(describe_model(model), indent=1, default=str).encode()
    files = {"model.pkl": pickle.dumps(model), "fit.json": described}
    lake.write_files("silver", MODEL_TABLE, ds, files, run_id=run_id)


def write_evaluation(
    lake: Lake, ds: str, table: pd.DataFrame, model: ReorderModel | FrequencyModel, *, run_id: str = ""
) -> dict[str, float]:
    """``gold/buy_again_evaluation`` and ``gold/buy_again_importances``; each method's mean F1."""
    for name, frame in (("buy_again_evaluation", table), ("buy_again_importances", pd.DataFrame(model.importances))):
        frame = frame.copy()
        frame.insert(0, "ds", ds)
        lake.write_table("gold", name, ds, pa.Table.from_pandas(frame, preserve_index=False), run_id=run_id)
    return {row["method"]: round(row["mean_f1"], 4) for row in table.to_dict("records")}


def run_predict_reorders(
    lake: Lake,
    ds: str,
    settings: ReorderSettings,
    *,
    shards: int = 1,
    dask_address: str | None = None,
    evaluation: EvaluationSettings | None = None,
    run_id: str = "",
) -> dict:
    """Fit, predict and evaluate buy again for ``ds`` (see the module docstring): from the bronze
    history in this process, or over ``shards`` user shards
    (:func:`basket_insights.reorder_shards.sharded_predict_reorders`, the same tables)."""
    if shards > 1:
        from basket_insights.reorder_shards import sharded_predict_reorders

        return sharded_predict_reorders(
            lake, ds, settings, shards, dask_address=dask_address, evaluation=evaluation, run_id=run_id
        )
    started = time.monotonic()
    history = load_history(lake, ds, cart_and_day=True)
    rows_in = len(history.lines)
    log.info("predict_reorders ds=%s: %d order lines read (%.1f s)", ds, rows_in, time.monotonic() - started)
    positions = orders_from_last(history.lines)  # the fit and the evaluation split on it
    fit_products, evaluation_products, products = product_stats_of_splits(history, positions, FIT_SKIP)
    model = fit_buy_again(history, settings, skip=FIT_SKIP, positions=positions, products=fit_products)
    write_model(lake, ds, model, run_id=run_id)
    predictions = predict_buy_again(model, history, product_names(lake, ds), as_of_day(ds), settings, products)
    lake.write_table("gold", "buy_again", ds, buy_again_table(predictions, ds), run_id=run_id)
    log.info("predict_reorders ds=%s: %d rows of buy_again (%.1f s)", ds, len(predictions), time.monotonic() - started)
    rows_out, customers = len(predictions), int((predictions["rank"] == 0).sum())
    del predictions  # its reasons are a large part of the task's memory; the evaluation needs its own
    table = evaluate_buy_again(history, model, settings, evaluation, positions, evaluation_products)
    del history, positions
    f1 = write_evaluation(lake, ds, table, model, run_id=run_id)
    log.info("predict_reorders ds=%s: mean F1 %s (%.1f s)", ds, f1, time.monotonic() - started)
    return {"rows_in": rows_in, "rows_out": rows_out, "customers": customers, "shards": shards, **f1}


def as_of_day(ds: str) -> int:
    """``ds`` as days since 1970-01-01, the ``day`` of the history's lines (reasons say how long ago)."""
    return (date.fromisoformat(ds) - _EPOCH).days
