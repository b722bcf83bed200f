"""Hit rate, precision, recall and NDCG per customer, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from basket_insights.ranking_metrics import per_user


def test_metrics_by_hand() -> None:
    truth = pd.DataFrame({"user_id": [1, 1, 2, 3], "product_id": [7, 8, 5, 9]})
    recs = pd.DataFrame(
        {"user_id": [1, 1, 1, 2, 2], "rank": [1, 2, 3, 1, 2], "product_id": [8, 4, 7, 6, 1]}
    )  # user 3 got nothing
    scores = per_user(recs, truth, k=2).set_index("user_id")
    assert scores["hits"].tolist() == [1, 0, 0]  # user 1's 7 is at rank 3, outside k = 2
    assert scores["precision"].tolist() == [0.5, 0.0, 0.0]
    assert scores["recall"].tolist() == [0.5, 0.0, 0.0]
    # user 1: one hit at rank 1 of 2 relevant -> DCG 1, ideal 1 + 1/log2(3)
    assert scores.loc[1, "ndcg"] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    assert per_user(recs, truth, k=3).loc[0, "recall"] == 1.0
