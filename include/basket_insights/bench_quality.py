"""The quality benchmark: the day's evaluation of a real or generated feed beside off-the-shelf recommenders.

``python -m basket_insights bench quality --source DIR`` replays any folder in the Kaggle layout
(``../shared/instacart/samples/users_1-64``, or the full Kaggle download) into a fresh lake;
``--generated USERS`` generates a year of that many customers instead (the real catalog when
``../shared/instacart`` is there). Either way the DAG's own steps run for the last date, in this
process and in the DAG's order (ingest, features, segments, product clusters, preferences, rules,
evaluate), and the evaluation table (:mod:`basket_insights.evaluation`) is printed beside
`implicit <https://github.com/benfred/implicit>`_'s ALS and item-item cosine kNN, fitted on the
same split (the history without each customer's last order) and scored the same way, with the same
bootstrap intervals. ``implicit`` is a test and benchmark dependency (``requirements-dev.txt``), not a runtime one.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

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


def run_evaluation_steps(lake: Lake, ds: str) -> pd.DataFrame:
    """The DAG's steps up to ``evaluate`` for ``ds``, in this process; returns ``gold/evaluation``."""
    run_day(lake, ds, through="evaluate", skip=("recommend",))
    return lake.read_table("gold", "evaluation", dates=[ds]).to_pandas().drop(columns=["ds"])


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
) -> pd.DataFrame:
    """Replay ``source`` (or generate ``generated`` customers over a year), run the steps, add implicit.

    Returns one row per method: the evaluation table, then implicit's models scored the same way.
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
    table = run_evaluation_steps(lake, end_date)
    k = int(table["k"].iloc[0])
    theirs, truth = implicit_recommendations(load_history(lake, end_date), k, seed)
    n_products = len(product_names(lake, end_date))
    scored = score_methods(theirs, truth, k, n_products, EvaluationSettings(bootstrap=bootstrap))
    both = pd.concat([table, scored], ignore_index=True)
    if workdir is not None:
        workdir.cleanup()
    return both


def quality_records(table: pd.DataFrame) -> list[dict]:
    """The ``--json`` form: ``method, recall, hit_rate, ndcg, coverage, recall_ci, users`` per method."""
    return [
        {
            "method": row["method"],
            "recall": round(float(row["recall"]), 5),
            "hit_rate": round(float(row["hit_rate"]), 5),
            "ndcg": round(float(row["ndcg"]), 5),
            "coverage": round(float(row["coverage"]), 5),
            "recall_ci": [round(float(row["recall_low"]), 5), round(float(row["recall_high"]), 5)],
            "users": int(row["users_evaluated"]),
        }
        for row in table.to_dict("records")
    ]


def format_quality(table: pd.DataFrame) -> str:
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
