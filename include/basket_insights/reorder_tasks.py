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

from basket_insights.buy_again import fit_buy_again, predict_buy_again
from basket_insights.features import History, load_history
from basket_insights.ingest import product_names
from basket_insights.lake import Lake
from basket_insights.reorder_evaluation import evaluate_buy_again
from basket_insights.reorder_features import ProductStats, orders_from_last, product_stats_by_group
from basket_insights.reorder_model import ReorderModel, ReorderSettings

log = logging.getLogger(__name__)

MODEL_TABLE = "reorder_model"
_EPOCH = date(1970, 1, 1)
#: The fit's labels are each customer's order this many before the last: the last is the evaluation's.
FIT_SKIP = 1


def reorder_settings(settings: object) -> ReorderSettings:
    """The buy-again settings of a run: the defaults of :class:`ReorderSettings` (no ``BASKET_*``
    variable sets them yet; ``settings`` is taken so the DAG and local runs call it like the others)."""
    return ReorderSettings()


def describe_model(model: ReorderModel) -> dict:
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


def product_stats_of_splits(
    history: History, positions: tuple[np.ndarray, np.ndarray], skip: int
) -> tuple[ProductStats, ProductStats, ProductStats]:
    """The product features the task's three steps count, from one sort of the history: the fit's
    (lines more than ``skip`` orders before each customer's last, as in
    :func:`~basket_insights.buy_again.fit_buy_again`), the evaluation's (every line but the held-out
    last orders of customers with two or more) and the prediction's (every line)."""
    from_last, orders = positions
    # 1: a lone order, 2 .. skip + 1: the orders the fit leaves out, skip + 2: the fit's inputs
    group = (np.minimum(from_last, skip + 1) + 1).astype(np.int8)
    group[(from_last == 0) & (orders >= 2)] = 0  # held out by the evaluation
    every = set(range(skip + 3))
    fit, evaluation, prediction = product_stats_by_group(history, group, [{skip + 2}, every - {0}, every])
    return fit, evaluation, prediction


def run_predict_reorders(lake: Lake, ds: str, settings: ReorderSettings, *, run_id: str = "") -> dict:
    """Fit, predict and evaluate buy again for ``ds`` (see the module docstring)."""
    started = time.monotonic()
    history = load_history(lake, ds, cart_and_day=True)
    rows_in = len(history.lines)
    log.info("predict_reorders ds=%s: %d order lines read (%.1f s)", ds, rows_in, time.monotonic() - started)
    positions = orders_from_last(history.lines)  # the fit and the evaluation split on it
    fit_products, evaluation_products, products = product_stats_of_splits(history, positions, FIT_SKIP)
    model = fit_buy_again(history, settings, skip=FIT_SKIP, positions=positions, products=fit_products)
    described = describe_model(model)
    lake.write_files(
        "silver",
        MODEL_TABLE,
        ds,
        {"model.pkl": pickle.dumps(model), "fit.json": json.dumps(described, indent=1, default=str).encode()},
        run_id=run_id,
    )
    as_of_day = (date.fromisoformat(ds) - _EPOCH).days
    predictions = predict_buy_again(model, history, product_names(lake, ds), as_of_day, settings, products)
    predictions.insert(0, "ds", ds)
    lake.write_table("gold", "buy_again", ds, pa.Table.from_pandas(predictions, preserve_index=False), run_id=run_id)
    log.info("predict_reorders ds=%s: %d rows of buy_again (%.1f s)", ds, len(predictions), time.monotonic() - started)
    rows_out, customers = len(predictions), int((predictions["rank"] == 0).sum())
    del predictions  # its reasons are a large part of the task's memory; the evaluation needs its own
    table = evaluate_buy_again(history, model, settings, positions=positions, products=evaluation_products)
    del history, positions
    table.insert(0, "ds", ds)
    lake.write_table(
        "gold", "buy_again_evaluation", ds, pa.Table.from_pandas(table, preserve_index=False), run_id=run_id
    )
    importances = pd.DataFrame(model.importances)
    importances.insert(0, "ds", ds)
    lake.write_table(
        "gold", "buy_again_importances", ds, pa.Table.from_pandas(importances, preserve_index=False), run_id=run_id
    )
    f1 = {row["method"]: round(row["mean_f1"], 4) for row in table.to_dict("records")}
    log.info("predict_reorders ds=%s: mean F1 %s (%.1f s)", ds, f1, time.monotonic() - started)
    return {"rows_in": rows_in, "rows_out": rows_out, "customers": customers, **f1}
