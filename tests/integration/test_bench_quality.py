"""`bench quality` on the real users 1-64: the DAG's evaluation beside implicit's models, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from basket_insights.bench_quality import kaggle_folder

pytestmark = pytest.mark.integration


def test_bench_quality_on_the_real_sample_prints_and_writes_every_method(instacart: Path, tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    sample = instacart / "samples" / "users_1-64"
    done = subprocess.run(
        [sys.executable, "-m", "basket_insights", "bench", "quality", "--source", str(sample), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(out.read_text())
    rows = {r["method"]: r for r in records if r["task"] == "recommend"}
    assert {"recommender", "item_model", "popularity_by_lines", "implicit_als", "implicit_item_knn"} <= set(rows)
    for row in rows.values():
        assert set(row) == {"task", "method", "recall", "hit_rate", "ndcg", "coverage", "recall_ci", "users"}
        assert row["users"] == 52 and row["recall_ci"][0] <= row["recall"] <= row["recall_ci"][1]
    assert "| recommender |" in done.stderr and "52 customers evaluated" in done.stderr
    # never below popularity by lines outside the interval (docs/rules.md, "Quality")
    assert rows["recommender"]["recall_ci"][1] >= rows["popularity_by_lines"]["recall"]

    buy_again = {r["method"]: r for r in records if r["task"] == "buy_again"}
    assert set(buy_again) == {"buy_again_model", "frequency_threshold", "last_order"}
    for row in buy_again.values():
        # every one of the 64 customers has two orders or more: each is judged on their last
        assert row["users"] == 64 and row["f1_ci"][0] <= row["mean_f1"] <= row["f1_ci"][1]
        assert row["mean_set_size"] > 0
    assert "| buy_again_model |" in done.stderr and "frequency_threshold (t = " in done.stderr
    assert buy_again["buy_again_model"]["f1_ci"][1] >= buy_again["frequency_threshold"]["mean_f1"]


def test_a_sample_without_its_catalog_borrows_the_nearest_one_above(instacart: Path, tmp_path: Path) -> None:
    sample = instacart / "samples" / "users_1-64"
    folder = kaggle_folder(sample, None, tmp_path / "kaggle")
    assert {p.name for p in folder.iterdir()} >= {"products.csv", "orders.csv", "order_products__prior.csv"}
    assert (folder / "products.csv").resolve() == (instacart / "products.csv").resolve()
    with pytest.raises(FileNotFoundError, match="give --catalog"):
        kaggle_folder(sample, str(tmp_path / "nowhere"), tmp_path / "other")
