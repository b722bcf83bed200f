"""Association rules as a candidate source: consequents of the rules a customer's recent baskets fire.

A rule ``A → B`` (from :mod:`basket_insights.rules`) fires for a customer when every product of
``A`` (one or two products) is in their last ``recent_orders`` orders and they never bought ``B``.
Several rules for one product combine as a noisy-or of their confidences (the chance that at least
one of them comes true, were they independent); the most confident one is kept as the reason
("bought X → Y, confidence 0.31, lift 2.9"). The ranker also sees the rules' lift, their count and
the baskets behind the antecedent, and learns how far to trust them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from basket_insights.user_products import UserProducts


def flatten_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """One row per (rule, consequent) with one- or two-product antecedents:
    ``first, second (-1 if none), consequent, confidence, lift, antecedent_support, antecedents``."""
    if rules is None or rules.empty:
        return pd.DataFrame(
            {c: np.zeros(0, np.int64) for c in ("first", "second", "consequent")}
            | {c: np.zeros(0) for c in ("confidence", "lift", "antecedent_support")}
            | {"antecedents": np.zeros(0, dtype=object)}
        )
    flat = rules.assign(consequent=rules["consequents"]).explode("consequent")
    flat = flat[flat["antecedents"].map(len) <= 2]
    return pd.DataFrame(
        {
            "first": flat["antecedents"].map(lambda a: int(a[0])).to_numpy(np.int64),
            "second": flat["antecedents"].map(lambda a: int(a[1]) if len(a) > 1 else -1).to_numpy(np.int64),
            "consequent": flat["consequent"].to_numpy(np.int64),
            "confidence": flat["confidence"].to_numpy(np.float64),
            "lift": flat["lift"].to_numpy(np.float64),
            "antecedent_support": flat["antecedent_support"].to_numpy(np.float64),
            "antecedents": flat["antecedents"].to_numpy(),
        }
    )


def candidates(flat_rules: pd.DataFrame, up: UserProducts, rows: np.ndarray) -> pd.DataFrame:
    """Fired rules of ``rows``' recent orders, one row per (customer row, consequent never bought).

    Returns ``row, product_id, rule_score`` (noisy-or of confidences), ``rule_confidence``,
    ``rule_lift``, ``rules_fired``, ``rule_antecedent_support`` and ``rule_antecedents`` of the most
    confident rule.
    """
    columns = [
        "row",
        "product_id",
        "rule_score",
        "rule_confidence",
        "rule_lift",
        "rules_fired",
        "rule_antecedent_support",
        "rule_antecedents",
    ]
    if flat_rules.empty or len(rows) == 0:
        return pd.DataFrame({c: [] for c in columns})
    recent = up.recent[rows]
    recent_rows = rows[np.repeat(np.arange(len(rows)), np.diff(recent.indptr))]
    recent_products = recent.indices.astype(np.int64)
    recent_keys = recent_rows * up.n_products + recent_products  # sorted: CSR rows in order, sorted indices
    fired = pd.DataFrame({"row": recent_rows, "first": recent_products}).merge(flat_rules, on="first")
    second = fired["second"].to_numpy()
    row = fired["row"].to_numpy(np.int64)
    key = row * up.n_products + np.maximum(second, 0)
    pos = np.minimum(np.searchsorted(recent_keys, key), max(len(recent_keys) - 1, 0))
    ok = (second < 0) | (recent_keys[pos] == key)
    fired = fired[ok]
    fired = fired[~up.has_bought(fired["row"].to_numpy(np.int64), fired["consequent"].to_numpy(np.int64))]
    if fired.empty:
        return pd.DataFrame({c: [] for c in columns})
    fired = fired.assign(log_miss=np.log1p(-np.minimum(fired["confidence"].to_numpy(), 1 - 1e-9)))
    fired = fired.sort_values(["row", "consequent", "confidence"], ascending=[True, True, False], kind="stable")
    grouped = fired.groupby(["row", "consequent"], sort=False)
    best = grouped.head(1)
    return pd.DataFrame(
        {
            "row": best["row"].to_numpy(np.int64),
            "product_id": best["consequent"].to_numpy(np.int64),
            "rule_score": 1.0 - np.exp(grouped["log_miss"].sum().to_numpy()),
            "rule_confidence": best["confidence"].to_numpy(),
            "rule_lift": grouped["lift"].max().to_numpy(),
            "rules_fired": grouped.size().to_numpy(),
            "rule_antecedent_support": best["antecedent_support"].to_numpy(),
            "rule_antecedents": best["antecedents"].to_numpy(),
        }
    )
