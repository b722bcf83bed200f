"""A reason a person can read for every recommendation, from the evidence that ranked it.

Which evidence ranked a product (:func:`deciding_source`): the ranker scores the recommendation
again with each source's features (:data:`~basket_insights.candidates.SOURCE_FEATURES`) blanked
out, as if that source had said nothing; the source whose silence costs the most is the one the
recommendation rests on, and becomes its ``source``. Only sources that nominated the product or
hold evidence for it compete.

The sentence then states that source's evidence for this customer (:func:`sentences`):

* ``rule``: "bought Organic Raspberries → Organic Strawberries (confidence 0.31, lift 2.9)";
* ``item_model``: "customers who buy Organic Raspberries (you bought them 6 times) buy this 3.2× more
  often than others" (:func:`basket_insights.item_model.strongest_links`);
* ``cluster``: "you often buy fresh fruits (34% of your purchases); 8% of customers bought this";
* ``segment_popular``: "popular with loyal customers: 14% of them bought it";
* ``popular``: "bought by 12% of all customers".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from basket_insights.candidates import SOURCE_FEATURES, SOURCES, Evidence
from basket_insights.item_model import strongest_links
from basket_insights.ranker import Ranker


def deciding_source(ranker: Ranker, rows: pd.DataFrame, full: np.ndarray | None = None) -> np.ndarray:
    """The source of :data:`SOURCES` whose evidence adds the most to each row's score (``full``: the
    rows' scores by ``ranker``, when the caller has them)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=object)
    full = ranker.score(rows) if full is None else full
    gains = np.full((len(rows), len(SOURCES)), -np.inf)
    for i, source in enumerate(SOURCES):
        columns = SOURCE_FEATURES[source]
        has = rows[columns].notna().any(axis=1).to_numpy() | ((rows["nominated_by"].to_numpy() >> i) & 1 == 1)
        if not has.any():
            continue
        blanked = rows.loc[has].copy()
        blanked[columns] = np.nan
        gains[has, i] = full[has] - ranker.score(blanked)
    # rows no source speaks for (should not happen: every candidate was nominated) read as popular
    choice = np.where(np.isfinite(gains).any(axis=1), np.argmax(gains, axis=1), SOURCES.index("popular"))
    return np.array(SOURCES, dtype=object)[choice]


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(int(n), f"{int(n)} times")


def _names(name_of: dict, ids: list) -> str:
    return " + ".join(str(name_of.get(int(i), i)) for i in ids)


def sentences(recs: pd.DataFrame, ev: Evidence, name_of: dict) -> list[str]:
    """The sentence of each row of ``recs`` (``row, product_id, source`` and the candidate features)."""
    out = np.full(len(recs), "", dtype=object)
    source = recs["source"].to_numpy()
    product = recs["product_id"].to_numpy(np.int64)
    row = recs["row"].to_numpy(np.int64)
    pop = ev.popularity

    rule = np.flatnonzero(source == "rule")
    if len(rule):
        antecedents = recs["rule_antecedents"].to_numpy()[rule]
        confidence = recs["rule_confidence"].to_numpy()[rule]
        lift = recs["rule_lift"].to_numpy()[rule]
        out[rule] = [
            f"bought {_names(name_of, list(a))} → {name_of.get(int(p), p)} (confidence {c:.2f}, lift {x:.1f})"
            for a, p, c, x in zip(antecedents, product[rule], confidence, lift, strict=True)
        ]

    item = np.flatnonzero(source == "item_model")
    if len(item) and ev.item_model is not None:
        links = strongest_links(ev.item_model, ev.up, row[item], product[item])
        for i, because, times, ratio in zip(
            item, links["because_product"], links["times_bought"], links["ratio"], strict=True
        ):
            if because < 0 or not ratio > 1.05:  # no product of theirs that makes this more likely
                out[i] = "customers with purchases like yours buy this"
            elif np.isfinite(ratio):
                out[i] = (
                    f"customers who buy {name_of.get(int(because), because)} (you bought it {_times(times)}) "
                    f"buy this {ratio:.1f}× more often than others"
                )
            else:
                out[i] = (
                    f"customers who buy {name_of.get(int(because), because)} (you bought it {_times(times)}) "
                    "buy this; no one else did"
                )
    elif len(item):
        out[item] = "customers with purchases like yours buy this"

    cluster = np.flatnonzero(source == "cluster")
    if len(cluster):
        buyer_share = pop.buyer_share()
        codes = ev.groups.cluster_of[np.minimum(product[cluster], len(ev.groups.cluster_of) - 1)]
        for i, code in zip(cluster, codes, strict=True):
            label = ev.groups.cluster_labels[code] if code >= 0 else "this kind of product"
            share = ev.cluster_share[row[i], code] if code >= 0 else 0.0
            out[i] = (
                f"you often buy {label} ({share:.0%} of your purchases); "
                f"{buyer_share[product[i]]:.0%} of customers bought this"
            )

    segment = np.flatnonzero(source == "segment_popular")
    if len(segment):
        codes = pop.segment_of_row[row[segment]]
        shares = pop.segment_share()[codes, product[segment]]
        texts = {}
        for i, code, share in zip(segment, codes, shares, strict=True):
            key = (int(code), round(float(share), 2))
            if key not in texts:
                texts[key] = f"popular with {pop.segment_names[code]} customers: {share:.0%} of them bought it"
            out[i] = texts[key]

    popular = np.flatnonzero(source == "popular")
    if len(popular):
        shares = pop.buyer_share()[product[popular]]
        out[popular] = [f"bought by {share:.0%} of all customers" for share in shares]
    return out.tolist()
