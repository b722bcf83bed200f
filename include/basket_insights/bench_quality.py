"""The quality benchmark: the day's evaluation of a real or generated feed beside off-the-shelf recommenders.

``python -m basket_insights bench quality --source DIR`` replays any folder in the Kaggle layout
(``../shared/instacart/samples/users_1-64``, or the full Kaggle download) into a fresh lake;
``--generated USERS`` generates a year of that many customers instead (the real catalog when
``../shared/instacart`` is there). Either way the DAG's own steps run for the last date, in this
process and in the DAG's order (ingest, features, segments, product clusters, preferences, rules,
evaluate, predict_reorders), and two tables are printed:

* the recommendations' evaluation (:mod:`basket_insights.evaluation`) beside
  `implicit <https://github.com/benfred/implicit>`_'s ALS and item-item cosine kNN, fitted on the
  same split (the history without each customer's last order) and scored the same way, with the same
  bootstrap intervals;
* the buy-again evaluation (:mod:`basket_insights.reorder_evaluation`): the mean F1 of the model and
  of the frequency-threshold and last-order baselines, with their intervals.

``implicit`` is a test and benchmark dependency (``requirements-dev.txt``), not a runtime one.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from basket_insights.evaluation import EvaluationSettings, score_methods
from basket_insights.features import History, load_history
from basket_insights.lake import Lake
from basket_insights.local_run import run_day
from basket_insights.splits import split_last_orders

log = logging.getLogger(__name__)

#: implicit's models as the benchmark fits them (ALS as the real-sample measurement of the issue did).
IMPLICIT_MODELS = {
    "implicit_als": {"factors": 64, "regularization": 1.0, "iterations": 15},
    "implicit_item_knn": {"K": 100},
}


class Quality(NamedTuple):
    """The two evaluations a quality benchmark prints."""

    #: one row per recommendation method (``gold/evaluation``, then implicit's models)
    recommendations: pd.DataFrame
    #: one row per buy-again method (``gold/buy_again_evaluation``)
    buy_again: pd.DataFrame


def run_evaluation_steps(lake: Lake, ds: str) -> Quality:
    """The DAG's steps up to ``predict_reorders`` for ``ds`` (the day's recommendations left out: the
    evaluation fits its own), in this process; returns ``gold/evaluation`` and ``gold/buy_again_evaluation``."""
    run_day(lake, ds, through="predict_reorders", skip=("recommend",))
    evaluation = lake.read_table("gold", "evaluation", dates=[ds]).to_pandas()
    buy_again = lake.read_table("gold", "buy_again_evaluation", dates=[ds]).to_pandas()
    return Quality(evaluation.drop(columns=["ds"]), buy_again.drop(columns=["ds"]))


def implicit_recommendations(history: History, k: int, seed: int = 0) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """implicit's ALS and item kNN fitted on ``history`` without each customer's last order.

    Returns their top ``k`` (never a product already bought) for every customer with a held-out new
    product, and that truth.
    """
    try:
        import implicit
    except ImportError as exc:
        raise RuntimeError("bench quality compares with implicit: pip install -r requirements-dev.txt") from exc
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    from basket_insights.user_products import user_products

    train, _, truth = split_last_orders(history)
    up = user_products(train)
    items = sp.csr_matrix((np.ones_like(up.bought.data), up.bought.indices, up.bought.indptr), shape=up.bought.shape)
    rows = up.rows_of(truth["user_id"].unique())
    rows = rows[rows >= 0]
    out = {}
    with threadpool_limits(1, "blas"):  # implicit's own threads; BLAS threads inside them slow it down
        for name, params in IMPLICIT_MODELS.items():
            if name == "implicit_als":
                model = implicit.als.AlternatingLeastSquares(**params, random_state=seed)
            else:
                model = implicit.nearest_neighbours.CosineRecommender(**params)
            model.fit(items, show_progress=False)
            ids, _ = model.recommend(rows, items[rows], N=k, filter_already_liked_items=True)
            ranks = np.tile(np.arange(1, ids.shape[1] + 1), (len(rows), 1))
            keep = ids >= 0
            out[name] = pd.DataFrame(
                {
                    "user_id": np.repeat(up.users[rows], ids.shape[1]).reshape(ids.shape)[keep],
                    "rank": ranks[keep],
                    "product_id": ids[keep],
                }
            )
    return out, truth


CATALOG_FILES = ("products.csv", "aisles.csv", "departments.csv")


def kaggle_folder(source: Path, catalog: str | None, into: Path) -> Path:
    """``source`` itself when it holds the catalog; otherwise a folder of links to its order files and to
    the catalog of ``catalog`` or of the nearest folder above ``source`` that has one (a sample beside
    its catalog, as in ``../shared/instacart/samples/users_1-64``)."""
    if all((source / name).is_file() for name in CATALOG_FILES):
        return source
    candidates = [Path(catalog)] if catalog else list(source.resolve().parents)
    found = next((c for c in candidates if all((c / name).is_file() for name in CATALOG_FILES)), None)
    if found is None:
        raise FileNotFoundError(f"no {', '.join(CATALOG_FILES)} in {source} or above it (give --catalog DIR)")
    into.mkdir(parents=True, exist_ok=True)
    for path in [*(found / n for n in CATALOG_FILES), *source.glob("*.csv")]:
        (into / path.name).symlink_to(path.resolve())
    return into


def bench_quality(
    source: str | None = None,
    generated: int | None = None,
    *,
    end_date: str = "2026-05-31",
    seed: int = 1,
    catalog: str | None = None,
    lake_url: str | None = None,
    bootstrap: int = 1000,
) -> Quality:
    """Replay ``source`` (or generate ``generated`` customers over a year), run the steps, add implicit.

    Returns the recommendations' evaluation (then implicit's models scored the same way) and the
    buy-again evaluation.
    """
    from basket_insights.ingest import product_names

    if (source is None) == (generated is None):
        raise ValueError("give exactly one of --source DIR and --generated USERS")
    workdir = None
    if lake_url is None:
        workdir = tempfile.TemporaryDirectory(prefix="basket-quality-")
        lake_url = Path(workdir.name).as_uri()
    lake = Lake(lake_url)
    if source is not None:
        from basket_insights.replay import replay

        if not (Path(source) / "orders.csv").is_file():
            raise FileNotFoundError(f"{source} has no orders.csv: not a folder in the Kaggle layout")
        scratch = tempfile.TemporaryDirectory(prefix="basket-kaggle-")
        replay(kaggle_folder(Path(source), catalog, Path(scratch.name) / "kaggle"), lake, end_date=end_date)
        scratch.cleanup()
    else:
        from basket_insights.synth import generate

        generate(lake, users=generated, days=365, end_date=end_date, seed=seed, catalog_dir=catalog)
    evaluated = run_evaluation_steps(lake, end_date)
    table = evaluated.recommendations
    k = int(table["k"].iloc[0])
    theirs, truth = implicit_recommendations(load_history(lake, end_date), k, seed)
    n_products = len(product_names(lake, end_date))
    scored = score_methods(theirs, truth, k, n_products, EvaluationSettings(bootstrap=bootstrap))
    both = pd.concat([table, scored], ignore_index=True)
    if workdir is not None:
        workdir.cleanup()
    return Quality(both, evaluated.buy_again)


def quality_records(quality: Quality) -> list[dict]:
    """The ``--json`` form, one object per method: ``task`` (``recommend`` or ``buy_again``), ``method``,
    ``users``, then ``recall, hit_rate, ndcg, coverage, recall_ci`` for a recommender and ``mean_f1,
    f1_ci, mean_set_size`` for a buy-again method."""
    recommend = [
        {
            "task": "recommend",
            "method": row["method"],
            "recall": round(float(row["recall"]), 5),
            "hit_rate": round(float(row["hit_rate"]), 5),
            "ndcg": round(float(row["ndcg"]), 5),
            "coverage": round(float(row["coverage"]), 5),
            "recall_ci": [round(float(row["recall_low"]), 5), round(float(row["recall_high"]), 5)],
            "users": int(row["users_evaluated"]),
        }
        for row in quality.recommendations.to_dict("records")
    ]
    buy_again = [
        {
            "task": "buy_again",
            "method": row["method"],
            "mean_f1": round(float(row["mean_f1"]), 5),
            "f1_ci": [round(float(row["f1_low"]), 5), round(float(row["f1_high"]), 5)],
            "mean_set_size": round(float(row["mean_set_size"]), 3),
            "users": int(row["users_evaluated"]),
        }
        for row in quality.buy_again.to_dict("records")
    ]
    return recommend + buy_again


def format_quality(quality: Quality) -> str:
    """Two Markdown tables with the intervals: the recommenders, each against popularity by lines, and
    the buy-again methods, each against the best frequency threshold."""
    return format_recommendations(quality.recommendations) + "\n\n" + format_buy_again(quality.buy_again)


def format_recommendations(table: pd.DataFrame) -> str:
    """A Markdown table with the intervals, and each method's recall against popularity by lines."""
    by_lines = float(table.loc[table["method"] == "popularity_by_lines", "recall"].iloc[0])
    k = int(table["k"].dropna().iloc[0]) if "k" in table and table["k"].notna().any() else 10
    lines = [
        f"| method | recall@{k} (95% interval) | hit rate@{k} (95% interval) | NDCG@{k} | coverage "
        "| vs popularity by lines |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        ratio = row["recall"] / by_lines if by_lines > 0 else float("nan")
        lines.append(
            f"| {row['method']} | {row['recall']:.4f} ({row['recall_low']:.4f}–{row['recall_high']:.4f}) "
            f"| {row['hit_rate']:.3f} ({row['hit_rate_low']:.3f}–{row['hit_rate_high']:.3f}) | {row['ndcg']:.4f} "
            f"| {row['coverage']:.2%} | {ratio:.2f}× |"
        )
    users = int(table["users_evaluated"].iloc[0])
    return "\n".join(lines) + f"\n\n{users:,} customers evaluated."


def format_buy_again(table: pd.DataFrame) -> str:
    """A Markdown table of the buy-again mean F1s with intervals, each against the best frequency threshold."""
    threshold = table.loc[table["method"] == "frequency_threshold"]
    best = float(threshold["mean_f1"].iloc[0]) if len(threshold) else float("nan")
    lines = [
        "| buy-again method | mean F1 (95% interval) | mean set size | vs best frequency threshold |",
        "|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        name = row["method"]
        if name == "frequency_threshold" and pd.notna(row["threshold"]):
            name = f"frequency_threshold (t = {row['threshold']:.2f})"
        ratio = row["mean_f1"] / best if best > 0 else float("nan")
        lines.append(
            f"| {name} | {row['mean_f1']:.4f} ({row['f1_low']:.4f}–{row['f1_high']:.4f}) "
            f"| {row['mean_set_size']:.1f} | {ratio:.2f}× |"
        )
    users = int(table["users_evaluated"].iloc[0]) if len(table) else 0
    return "\n".join(lines) + f"\n\n{users:,} customers with a held-out order judged on buy again."
