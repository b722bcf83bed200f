"""The day's plots (matplotlib, headless) and the self-contained HTML report.

:func:`load_report_inputs` reads what a run for ``ds`` produced; :func:`render_plots` turns it
into PNGs and :func:`render_report` into one HTML page with the plots embedded, so the page
opens from the lake (or a browser's file menu) with no server. :func:`run_report` writes both:
``gold/plots/ds=D/*.png`` and ``gold/report/ds=D/index.html``.

The same inputs give byte-identical PNGs: the figures are drawn on the Agg canvas with the
font matplotlib ships (DejaVu Sans), fixed sizes and DPI, and no timestamp or software tag in
the PNG metadata.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from basket_insights.ingest import product_names
from basket_insights.lake import Lake

log = logging.getLogger(__name__)

#: Calendar days (``ds`` and the days before it) the "over time" plots show.
HISTORY_DAYS = 30
#: The ingested tables whose validation the report summarises.
VALIDATED_TABLES = ("orders", "order_products", "products", "aisles", "departments")
_TEMPLATES = Path(__file__).with_name("templates")
_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "path.simplify": False,
}
METHOD_LABELS = {
    "recommender": "recommender",
    "item_model": "item model alone",
    "rules": "rules alone",
    "cluster_preferences": "product clusters alone",
    "segment_popularity": "segment popularity",
    "popularity_by_buyers": "popularity by buyers",
    "popularity_by_lines": "popularity by lines",
    "global_popularity": "global popularity",  # evaluations written before the methods above
}


@dataclass
class ReportInputs:
    """Everything the plots and the page show for one ``ds`` (small frames only)."""

    ds: str
    segment_elbow: pd.DataFrame
    preference_elbow: pd.DataFrame
    segment_profiles: pd.DataFrame
    segment_history: pd.DataFrame  # segment_profiles of the last HISTORY_DAYS days, with ds
    product_cluster_summary: pd.DataFrame
    segment_product_preferences: pd.DataFrame
    association_rules: pd.DataFrame
    recommendation_sources: pd.DataFrame  # source, recommendations, users
    top_recommended: pd.DataFrame  # product_name, users
    sample_recommendations: pd.DataFrame
    recommended_products: int
    catalog_products: int
    recommended_users: int
    evaluation_history: pd.DataFrame  # evaluation of the last HISTORY_DAYS days
    evaluation_today: pd.DataFrame  # the day's evaluation, every column (older days may lack some)
    buy_again_history: pd.DataFrame  # buy_again_evaluation of the last HISTORY_DAYS days (empty: not run)
    buy_again_importances: pd.DataFrame  # feature, importance, importance_std of the day's model
    sample_buy_again: pd.DataFrame  # one customer's buy-again rows of the day (rank 0: None)
    validation: list[dict]
    orders_total: int
    orders_today: int
    previous_ds: str | None
    #: Days of the window, since the DAG's first run, with no segments or evaluation when drawn.
    history_missing: list[str]


def history_window(ds: str) -> list[str]:
    """The :data:`HISTORY_DAYS` days ending with ``ds``, oldest first."""
    end = date.fromisoformat(ds)
    return [(end - timedelta(days=n)).isoformat() for n in range(HISTORY_DAYS - 1, -1, -1)]


def _history(lake: Lake, table: str, ds: str, committed: list[str]) -> pd.DataFrame:
    """``table``'s partitions of :func:`history_window` (``committed``: all its partitions), with ``ds``."""
    window = history_window(ds)
    dates = [d for d in committed if window[0] <= d <= ds]
    frame = lake.read_table("gold", table, dates=dates, with_ds=True).to_pandas()
    return frame.loc[:, ~frame.columns.duplicated(keep="last")]  # some tables carry ds already


def _missing_history(segments: list[str], evaluations: list[str], ds: str) -> list[str]:
    """Days of :func:`history_window` on or after the first run's date (of any date, this one's
    included) without both the segments and the evaluation: they had not run (yet)."""
    done = set(segments) & set(evaluations)
    first_run = min([*segments, *evaluations], default=ds)
    return [d for d in history_window(ds) if d >= first_run and d not in done]


def date_ranges(days: list[str]) -> str:
    """Sorted ISO days as text, consecutive ones as ranges: ``2026-05-02 to 2026-05-04, 2026-05-09``."""
    runs: list[list[str]] = []
    for day in days:
        if runs and date.fromisoformat(day) - date.fromisoformat(runs[-1][-1]) == timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]} to {run[-1]}" for run in runs)


def _over_window(frame: pd.DataFrame, ds: str) -> pd.DataFrame:
    """``frame`` (indexed by ISO ``ds``) on every day from its first to ``ds``: a day not run is a gap."""
    if frame.empty:
        return frame
    days = pd.date_range(frame.index.min(), ds, freq="D").strftime("%Y-%m-%d")
    return frame.reindex(days)


def _validation_summary(lake: Lake, ds: str) -> list[dict]:
    rows = []
    for table in VALIDATED_TABLES:
        if lake.manifest("validation", table, ds) is None:
            continue
        result = json.loads(lake.read_file("validation", table, ds, "results.json"))
        checks = result.get("great_expectations", {}).get("results", [])
        rows.append(
            {
                "table": table,
                "rows_in": result["rows_in"],
                "rows_ingested": result["rows_ingested"],
                "rows_quarantined": result["rows_quarantined"],
                "accepted": result["accepted"],
                "checks": len(checks),
                "checks_failed": sum(not c.get("success", False) for c in checks),
                "top_reasons": ", ".join(f"{k} ({v})" for k, v in result.get("top_reasons", {}).items()) or "—",
            }
        )
    return rows


def load_report_inputs(lake: Lake, ds: str, sample_users: int = 5) -> ReportInputs:
    """Read the gold tables of ``ds`` (and the last :data:`HISTORY_DAYS` days of the over-time ones)."""

    def gold(table: str, columns: list[str] | None = None) -> pd.DataFrame:
        return lake.read_table("gold", table, dates=[ds], columns=columns).to_pandas()

    # every customer's rows tallied a piece at a time: names and reasons read for the sampled customers alone
    columns = ["user_id", "rank", "product_id", "source"]
    tally = tally_recommendations(lake.scan_table("gold", "recommendations", ds, columns=columns), sample_users)
    source_names = sorted(tally.rows_by_source)
    sources = pd.DataFrame(
        {
            "source": source_names,
            "recommendations": np.array([tally.rows_by_source[s] for s in source_names], dtype=np.int64),
            "users": np.array([tally.users_by_source[s] for s in source_names], dtype=np.int64),
        }
    ).sort_values("recommendations", ascending=False)
    users_of_product = pd.Series(tally.users_by_product, dtype="int64").sort_index()
    names = product_names(lake, ds).reindex(users_of_product.index)
    top_recommended = (
        pd.DataFrame({"product_name": names.to_numpy(), "users": users_of_product.to_numpy()})
        .groupby("product_name")["users"]
        .sum()
        .sort_values(ascending=False, kind="stable")
        .head(15)
        .reset_index()
    )
    # Sample: the first users (by id) whose top recommendation comes from a rule, else the first users.
    users = tally.first_rule_users if len(tally.first_rule_users) else tally.first_users
    sampled = pc.field("user_id").isin(users.tolist()) & (pc.field("rank") <= 5)
    columns = ["user_id", "rank", "product_id", "product_name", "score", "source", "reason"]
    sample = lake.read_table("gold", "recommendations", dates=[ds], columns=columns, where=sampled).to_pandas()
    sample = sample.sort_values(["user_id", "rank"])

    manifests = lake.manifests("bronze", "orders", up_to=ds)
    today = manifests.get(ds)
    earlier_reports = [d for d in lake.partitions("gold", "report", up_to=ds) if d < ds]
    # every committed date of the over-time tables, listed once for the plots and the days missing
    segment_dates, evaluation_dates = lake.partitions("gold", "segment_profiles"), lake.partitions("gold", "evaluation")
    return ReportInputs(
        ds=ds,
        segment_elbow=gold("segment_elbow"),
        preference_elbow=gold("preference_elbow"),
        segment_profiles=gold("segment_profiles"),
        segment_history=_history(lake, "segment_profiles", ds, segment_dates),
        product_cluster_summary=gold("product_cluster_summary"),
        segment_product_preferences=gold("segment_product_preferences"),
        association_rules=gold(
            "association_rules",
            ["antecedent_names", "consequent_names", "support", "confidence", "lift", "antecedent_support"],
        ),
        recommendation_sources=sources,
        top_recommended=top_recommended,
        sample_recommendations=sample,
        recommended_products=len(tally.users_by_product),
        catalog_products=len(gold("product_clusters", ["product_id"])),
        recommended_users=tally.users,
        evaluation_history=_history(lake, "evaluation", ds, evaluation_dates),
        evaluation_today=gold("evaluation"),
        **_buy_again_inputs(lake, ds),
        validation=_validation_summary(lake, ds),
        orders_total=sum(m.rows for m in manifests.values()),
        orders_today=today.rows if today else 0,
        previous_ds=earlier_reports[-1] if earlier_reports else None,
        history_missing=_missing_history(segment_dates, evaluation_dates, ds),
    )


@dataclass
class RecommendationTally:
    """What the report shows of every customer's recommendations: rows and customers per source,
    customers per product, customers, and the first customers by id (all, and those whose top pick
    comes from a rule), up to the number the report samples."""

    rows_by_source: Counter[str] = field(default_factory=Counter)
    users_by_source: Counter[str] = field(default_factory=Counter)
    users_by_product: Counter[int] = field(default_factory=Counter)
    users: int = 0
    first_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    first_rule_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def tally_recommendations(pieces: Iterable[pa.Table], keep: int) -> RecommendationTally:
    """Tally a day's recommendations (``user_id``, ``rank``, ``product_id``, ``source``) a piece at a
    time, so the report never holds every customer's rows at once.

    Each customer's rows are consecutive (every recommend shard writes its customers' lists one after
    another), so a customer's rows span at most two consecutive pieces: what was counted of the last
    customer of a piece is carried to the next one, and the counts equal those of the whole table.
    """
    tally = RecommendationTally()
    carried_user: int | None = None
    carried: dict[str, set] = {"source": set(), "product_id": set()}
    for piece in pieces:
        frame = piece.to_pandas()
        if frame.empty:
            continue
        user_ids = frame["user_id"].to_numpy()
        starts = np.flatnonzero(np.diff(user_ids)) + 1
        if len(np.unique(user_ids)) != len(starts) + 1:
            raise ValueError("the recommendations are not grouped by customer: cannot tally them a piece at a time")
        tally.rows_by_source.update(frame["source"].value_counts().to_dict())
        for key, by_key in (("source", tally.users_by_source), ("product_id", tally.users_by_product)):
            pairs = frame[["user_id", key]].drop_duplicates()
            counted = pairs["user_id"].eq(carried_user) & pairs[key].isin(carried[key])
            by_key.update(pairs.loc[~counted, key].value_counts().to_dict())
        tally.users += len(starts) + 1 - int(user_ids[0] == carried_user)
        last = frame[frame["user_id"] == user_ids[-1]]
        same = user_ids[-1] == carried_user
        carried = {key: (carried[key] if same else set()) | set(last[key]) for key in carried}
        carried_user = int(user_ids[-1])
        top_rule = user_ids[(frame["rank"].to_numpy() == 1) & (frame["source"].to_numpy() == "rule")]
        tally.first_rule_users = np.unique(np.concatenate([tally.first_rule_users, top_rule]))[:keep]
        tally.first_users = np.unique(np.concatenate([tally.first_users, user_ids]))[:keep]
    return tally


def _buy_again_inputs(lake: Lake, ds: str) -> dict[str, pd.DataFrame]:
    """The buy-again evaluation over the window, the day's importances and a sample customer's set
    (empty frames for a date run before buy again existed)."""
    if lake.manifest("gold", "buy_again", ds) is None:
        return dict.fromkeys(("buy_again_history", "buy_again_importances", "sample_buy_again"), pd.DataFrame())
    # the first customer (by id) with at least three products in the set: a list worth reading
    none = np.iinfo(np.int64).max
    first_with_three = first_any = none
    for piece in lake.scan_table("gold", "buy_again", ds, columns=["user_id", "rank"]):
        user_ids = piece["user_id"].to_numpy()
        first_any = min(first_any, user_ids.min(initial=none))
        first_with_three = min(first_with_three, user_ids[piece["rank"].to_numpy() == 3].min(initial=none))
    first = first_with_three if first_with_three < none else first_any
    sample = lake.read_table("gold", "buy_again", dates=[ds], where=pc.field("user_id") == int(first))
    return {
        "buy_again_history": _history(
            lake, "buy_again_evaluation", ds, lake.partitions("gold", "buy_again_evaluation")
        ),
        "buy_again_importances": lake.read_table("gold", "buy_again_importances", dates=[ds]).to_pandas(),
        "sample_buy_again": sample.to_pandas().sort_values("rank"),
    }


# -- plots -------------------------------------------------------------------------------------


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    # No "Software" tag and no timestamp: the same figure gives the same bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _short(text: str, width: int = 48) -> str:
    return textwrap.shorten(str(text), width=width, placeholder="…")


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_elbows(inputs: ReportInputs) -> bytes:
    """Inertia and silhouette against k for both customer clusterings, the chosen k marked."""
    fig, axes = _figure(10, 3.8, ncols=2)
    for ax, (title, elbow) in zip(
        axes,
        (
            ("Behavioural segments", inputs.segment_elbow),
            ("Product-preference segments", inputs.preference_elbow),
        ),
        strict=True,
    ):
        elbow = elbow.sort_values("k")
        ax.plot(elbow["k"], elbow["inertia"], "o-", color="#1f77b4", label="inertia")
        ax.set_xlabel("number of clusters k")
        ax.set_ylabel("inertia (sum of squared distances, standardised units)", color="#1f77b4")
        right = ax.twinx()
        right.plot(elbow["k"], elbow["silhouette"], "s--", color="#ff7f0e", label="silhouette")
        right.set_ylabel("silhouette score (−1 … 1)", color="#ff7f0e")
        right.spines["top"].set_visible(False)
        right.spines["right"].set_visible(True)
        chosen = elbow.loc[elbow["chosen"], "k"]
        if len(chosen):
            ax.axvline(int(chosen.iloc[0]), color="0.3", linestyle=":", linewidth=1.5)
            ax.annotate(f"chosen k = {int(chosen.iloc[0])}", (int(chosen.iloc[0]), elbow["inertia"].max()),
                        xytext=(4, 0), textcoords="offset points", va="top")  # fmt: skip
        ax.set_title(f"{title}: elbow")
        ax.set_xticks(elbow["k"].tolist())
    return _png(fig)


def plot_segment_profiles(inputs: ReportInputs) -> bytes:
    """Segment centroids in standardised units (z-scores) as a heatmap."""
    profiles = inputs.segment_profiles.sort_values("segment_id")
    z_columns = [c for c in profiles.columns if c.startswith("z_")]
    values = profiles[z_columns].to_numpy(dtype=float)
    fig, (ax,) = _figure(10, 1.2 + 0.45 * len(profiles))
    limit = max(1.0, float(np.nanmax(np.abs(values))) if values.size else 1.0)
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(z_columns)), [c[2:].replace("_", " ") for c in z_columns], rotation=30, ha="right")
    labels = [f"{n} ({s:.0%})" for n, s in zip(profiles["segment_name"], profiles["share"], strict=True)]
    ax.set_yticks(range(len(profiles)), labels)
    for (i, j), value in np.ndenumerate(values):
        ax.text(
            j,
            i,
            f"{value:+.1f}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if abs(value) > limit * 0.6 else "black",
        )
    fig.colorbar(image, ax=ax, label="centroid (standard deviations from the mean)")
    ax.set_title(f"Segment profiles on {inputs.ds} (share of customers in brackets)")
    return _png(fig)


def _not_run(inputs: ReportInputs) -> str:
    n = len(inputs.history_missing)
    return f"; {n} day{'s' if n > 1 else ''} of the window not run when drawn: gaps" if n else ""


def plot_segment_sizes(inputs: ReportInputs) -> bytes:
    """Customers per segment over the last 30 days (a gap: that day had not run)."""
    history = inputs.segment_history
    fig, (ax,) = _figure(10, 3.6)
    pivot = history.pivot_table(index="ds", columns="segment_name", values="size", aggfunc="sum").sort_index()
    pivot = _over_window(pivot, inputs.ds)
    days = pd.to_datetime(pivot.index)
    for name in pivot.columns:
        ax.plot(days, pivot[name], marker="o", markersize=3, label=name)
    ax.set_xlabel(f"date (ds){_not_run(inputs)}")
    ax.set_ylabel("customers")
    ax.set_title(f"Segment sizes, last {HISTORY_DAYS} days up to {inputs.ds}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.autofmt_xdate()
    return _png(fig)


def plot_product_clusters(inputs: ReportInputs) -> bytes:
    """Products per cluster, with the cluster labels."""
    summary = inputs.product_cluster_summary.sort_values("size", ascending=True)
    fig, (ax,) = _figure(10, 1.0 + 0.2 * len(summary))
    ax.barh(range(len(summary)), summary["size"], color="#2ca02c")
    ax.set_yticks(range(len(summary)), [_short(label, 55) for label in summary["cluster_label"]], fontsize=7)
    ax.set_xlabel("products in cluster")
    ax.set_title(f"Product clusters on {inputs.ds}: {len(summary)} clusters, {int(summary['size'].sum()):,} products")
    ax.margins(y=0.005)
    return _png(fig)


def plot_preference_lift(inputs: ReportInputs, clusters: int = 25) -> bytes:
    """Segment × product-cluster preference lift (share of a segment's purchases over everyone's)."""
    prefs = inputs.segment_product_preferences
    pivot = prefs.pivot_table(index="cluster_label", columns="segment_name", values="lift", aggfunc="first")
    log_lift = np.log2(pivot.clip(lower=1e-3))
    # The clusters where segments differ most.
    order = log_lift.abs().max(axis=1).sort_values(ascending=False, kind="stable").index[:clusters]
    shown = pivot.loc[order]
    fig, (ax,) = _figure(10, 1.5 + 0.3 * len(shown))
    limit = max(1.0, float(np.nanmax(np.abs(log_lift.loc[order].to_numpy()))) if len(shown) else 1.0)
    image = ax.imshow(np.log2(shown.clip(lower=1e-3)).to_numpy(), cmap="PuOr_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(shown.shape[1]), list(shown.columns), rotation=20, ha="right")
    ax.set_yticks(range(len(shown)), [_short(label, 50) for label in shown.index], fontsize=7)
    for (i, j), value in np.ndenumerate(shown.to_numpy()):
        dark = abs(np.log2(max(value, 1e-3))) > limit * 0.6
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("lift (log2 scale; 0 = average, +1 = twice as often)")
    ax.set_title(f"Segment × product-cluster preference lift ({len(shown)} most distinctive clusters)")
    return _png(fig)


def plot_rules_scatter(inputs: ReportInputs) -> bytes:
    """Support against confidence of every rule, coloured by lift."""
    from matplotlib.colors import LogNorm

    rules = inputs.association_rules
    fig, (ax,) = _figure(8, 4.5)
    if rules.empty:
        _empty(ax, "no rules above the thresholds on this date")
    else:
        lift = rules["lift"].clip(lower=1e-3)
        points = ax.scatter(rules["support"] * 100, rules["confidence"] * 100, c=lift, cmap="viridis",
                            norm=LogNorm(vmin=float(lift.min()), vmax=max(float(lift.max()), float(lift.min()) * 1.01)),
                            s=12, alpha=0.8, edgecolors="none")  # fmt: skip
        fig.colorbar(points, ax=ax, label="lift (log scale)")
        ax.set_xscale("log")
        ax.set_xlabel("support (% of baskets, log scale)")
        ax.set_ylabel("confidence (%)")
    ax.set_title(f"Association rules on {inputs.ds}: {len(rules):,} rules")
    return _png(fig)


def _rule_text(antecedents, consequents) -> str:
    return f"{' + '.join(map(str, antecedents))} → {' + '.join(map(str, consequents))}"


def plot_top_rules(inputs: ReportInputs, top: int = 20) -> bytes:
    """The rules with the highest lift, named."""
    rules = inputs.association_rules.sort_values(["lift", "confidence"], ascending=False, kind="stable").head(top)
    fig, (ax,) = _figure(10, 1.2 + 0.28 * max(len(rules), 3))
    if rules.empty:
        _empty(ax, "no rules above the thresholds on this date")
    else:
        rules = rules.iloc[::-1]
        labels = [
            _short(_rule_text(a, c), 80)
            for a, c in zip(rules["antecedent_names"], rules["consequent_names"], strict=True)
        ]
        ax.barh(range(len(rules)), rules["lift"], color="#9467bd")
        ax.set_yticks(range(len(rules)), labels, fontsize=7)
        for i, (lift, confidence) in enumerate(zip(rules["lift"], rules["confidence"], strict=True)):
            ax.text(lift, i, f" {lift:.1f} (conf. {confidence:.0%})", va="center", fontsize=7)
        ax.set_xlabel("lift (× more likely together than by chance)")
        ax.margins(x=0.15)
    ax.set_title(f"Top {len(rules)} rules by lift on {inputs.ds}")
    return _png(fig)


def plot_recommendations(inputs: ReportInputs) -> bytes:
    """Share of recommendations by source, and the most recommended products with the catalogue coverage."""
    fig, axes = _figure(11, 4.2, ncols=2)
    sources = inputs.recommendation_sources
    total = max(int(sources["recommendations"].sum()), 1)
    axes[0].bar(
        sources["source"],
        sources["recommendations"] / total * 100,
        color=["#1f77b4", "#ff7f0e", "#2ca02c"][: len(sources)],
    )
    for i, value in enumerate(sources["recommendations"]):
        axes[0].text(i, value / total * 100, f"{value / total:.1%}", ha="center", va="bottom")
    axes[0].set_ylabel("share of recommendations (%)")
    axes[0].set_xlabel("source")
    axes[0].set_title(f"Recommendations by source ({total:,} for {inputs.recommended_users:,} users)")
    top = inputs.top_recommended.iloc[::-1]
    users = max(inputs.recommended_users, 1)
    axes[1].barh(range(len(top)), top["users"] / users * 100, color="#17becf")
    axes[1].set_yticks(range(len(top)), [_short(n, 40) for n in top["product_name"]], fontsize=7)
    axes[1].set_xlabel("share of users it is recommended to (%)")
    coverage = inputs.recommended_products / max(inputs.catalog_products, 1)
    axes[1].set_title(
        f"Catalogue coverage: {inputs.recommended_products:,} of {inputs.catalog_products:,} products ({coverage:.1%})"
    )
    return _png(fig)


def plot_evaluation(inputs: ReportInputs) -> bytes:
    """Hit rate and recall at k of the recommender and the popularity baselines, over the last 30 days."""
    history = inputs.evaluation_history.sort_values("ds")
    fig, axes = _figure(11, 3.8, ncols=2)
    k = int(history["k"].iloc[0]) if len(history) else 10
    for ax, metric, label in ((axes[0], "hit_rate", f"hit rate at {k} (%)"), (axes[1], "recall", f"recall at {k} (%)")):
        for method, rows in history.groupby("method", sort=True):
            series = _over_window(rows.set_index("ds")[[metric]], inputs.ds)[metric]
            ax.plot(
                pd.to_datetime(series.index),
                series * 100,
                marker="o",
                markersize=4,
                label=METHOD_LABELS.get(method, method),
            )
        ax.set_ylabel(label)
        ax.set_xlabel(f"date (ds){_not_run(inputs)}")
        ax.set_title(f"{label.split(' (')[0].capitalize()} on the next order, by method")
        ax.legend(fontsize=8, frameon=False)
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_ha("right")
    return _png(fig)


BUY_AGAIN_LABELS = {
    "buy_again_model": "buy-again model",
    "frequency_threshold": "bought in ≥ t of their orders (best t)",
    "last_order": "last order again",
}


def plot_buy_again(inputs: ReportInputs) -> bytes:
    """Buy again: mean F1 on the next order of the model and the baselines over the last 30 days, and
    what the model's predictions rest on (permutation importance of each feature)."""
    fig, axes = _figure(11, 3.8, ncols=2)
    history = inputs.buy_again_history
    if history.empty:
        _empty(axes[0], "buy again has not run for this date")
        _empty(axes[1], "buy again has not run for this date")
        return _png(fig)
    for method, rows in history.sort_values("ds").groupby("method", sort=True):
        series = _over_window(rows.set_index("ds")[["mean_f1"]], inputs.ds)["mean_f1"]
        axes[0].plot(
            pd.to_datetime(series.index), series, marker="o", markersize=4, label=BUY_AGAIN_LABELS.get(method, method)
        )
    if history["ds"].nunique() == 1:  # one point: a week around it, not matplotlib's years
        day = pd.Timestamp(history["ds"].iloc[0])
        axes[0].set_xlim(day - pd.Timedelta(days=3), day + pd.Timedelta(days=3))
    axes[0].set_ylabel("mean F1")
    axes[0].set_xlabel(f"date (ds){_not_run(inputs)}")
    axes[0].set_title("Mean F1 on the next order's reorders, by method")
    axes[0].legend(fontsize=8, frameon=False)
    for tick in axes[0].get_xticklabels():
        tick.set_rotation(30)
        tick.set_ha("right")
    importances = inputs.buy_again_importances.head(12).iloc[::-1]
    if importances.empty:
        _empty(axes[1], "the model is the fallback: no importances")
    else:
        axes[1].barh(importances["feature"], importances["importance"], xerr=importances["importance_std"])
        axes[1].set_xlabel("log loss lost when shuffled")
        axes[1].set_title("What the buy-again model rests on")
    return _png(fig)


#: File name → plot function; the report shows them in this order.
PLOTS: dict[str, Callable[[ReportInputs], bytes]] = {
    "elbow.png": plot_elbows,
    "segment_profiles.png": plot_segment_profiles,
    "segment_sizes.png": plot_segment_sizes,
    "product_clusters.png": plot_product_clusters,
    "preference_lift.png": plot_preference_lift,
    "rules_scatter.png": plot_rules_scatter,
    "top_rules.png": plot_top_rules,
    "recommendations.png": plot_recommendations,
    "evaluation.png": plot_evaluation,
    "buy_again.png": plot_buy_again,
}


def render_plots(inputs: ReportInputs) -> dict[str, bytes]:
    """Every plot of :data:`PLOTS` as PNG bytes, drawn with the fixed style."""
    import matplotlib

    matplotlib.use("Agg")
    out = {}
    with matplotlib.rc_context(_STYLE):
        for name, plot in PLOTS.items():
            out[name] = plot(inputs)
    return out


# -- the page ------------------------------------------------------------------------------------


#: The methods whose hit rate heads the report: the recommender and the baselines it must beat.
HEADLINE_METHODS = (
    "recommender",
    "popularity_by_buyers",
    "popularity_by_lines",
    "segment_popularity",
    "global_popularity",
)


def _evaluation_rows(inputs: ReportInputs) -> list[dict]:
    """The day's evaluation table, one dict per method (columns an older evaluation lacks are None)."""
    # read on its own: in a month spanning an upgrade the history has the oldest day's columns only
    today = inputs.evaluation_today.astype(object)
    today = today.where(pd.notna(today), None)
    columns = [
        "method",
        "recall",
        "recall_low",
        "recall_high",
        "hit_rate",
        "hit_rate_low",
        "hit_rate_high",
        "ndcg",
        "coverage",
        "baseline",
        "recall_vs_baseline",
        "recall_vs_baseline_low",
        "recall_vs_baseline_high",
    ]
    return [{c: row.get(c) for c in columns} for row in today.to_dict("records")]


def _clean_rows(frame: pd.DataFrame) -> list[dict]:
    frame = frame.astype(object)
    return frame.where(pd.notna(frame), None).to_dict("records")


def _buy_again_rows(inputs: ReportInputs) -> list[dict]:
    """The day's buy-again evaluation, one dict per method."""
    history = inputs.buy_again_history
    return _clean_rows(history[history["ds"] == inputs.ds]) if len(history) else []


def headline(inputs: ReportInputs) -> dict:
    """The numbers at the top of the report."""
    evaluation = inputs.evaluation_history
    today = evaluation[evaluation["ds"] == inputs.ds]
    shown = [m for m in HEADLINE_METHODS if m in set(today["method"])]
    by_method = today.set_index("method")
    hit_rates = {m: round(float(by_method.loc[m, "hit_rate"]), 4) for m in shown}
    return {
        "users": int(inputs.segment_profiles["size"].sum()),
        "orders_total": inputs.orders_total,
        "orders_today": inputs.orders_today,
        "rows_quarantined": int(sum(v["rows_quarantined"] for v in inputs.validation)),
        "segments": len(inputs.segment_profiles),
        "product_clusters": len(inputs.product_cluster_summary),
        "rules": len(inputs.association_rules),
        "hit_rates": hit_rates,
        "users_evaluated": int(today["users_evaluated"].iloc[0]) if len(today) else 0,
        "k": int(today["k"].iloc[0]) if len(today) else 0,
    }


def render_report(inputs: ReportInputs, plots: dict[str, bytes]) -> str:
    """The self-contained HTML page: headline numbers, embedded plots, tables, validation, day links."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    profiles = inputs.segment_profiles.sort_values("segment_id")
    top_rules = inputs.association_rules.sort_values(["lift", "confidence"], ascending=False, kind="stable").head(20)
    next_ds = (date.fromisoformat(inputs.ds) + timedelta(days=1)).isoformat()
    return env.get_template("report.html.j2").render(
        ds=inputs.ds,
        headline=headline(inputs),
        method_labels=METHOD_LABELS,
        plots={name: base64.b64encode(data).decode() for name, data in plots.items()},
        plot_titles={name: (PLOTS[name].__doc__ or name).strip() for name in plots},
        profiles=profiles.to_dict("records"),
        top_rules=[
            {**row, "text": _rule_text(row["antecedent_names"], row["consequent_names"])}
            for row in top_rules.to_dict("records")
        ],
        samples=[
            {"user_id": int(user), "rows": rows.to_dict("records")}
            for user, rows in inputs.sample_recommendations.groupby("user_id", sort=True)
        ],
        validation=inputs.validation,
        previous_ds=inputs.previous_ds,
        next_ds=next_ds,
        history_missing=date_ranges(inputs.history_missing),
        evaluation=_evaluation_rows(inputs),
        buy_again_labels=BUY_AGAIN_LABELS,
        buy_again=_buy_again_rows(inputs),
        buy_again_sample=_clean_rows(inputs.sample_buy_again),
    )


def run_report(lake: Lake, ds: str, *, run_id: str = "") -> dict:
    """Render the plots and the page of ``ds``; write ``gold/plots/ds`` and ``gold/report/ds``."""
    started = time.monotonic()
    inputs = load_report_inputs(lake, ds)
    log.info("report ds=%s: inputs read (%.1f s)", ds, time.monotonic() - started)
    plots = render_plots(inputs)
    log.info("report ds=%s: %d plots drawn, %d KB (%.1f s)", ds, len(plots), sum(map(len, plots.values())) // 1024,
             time.monotonic() - started)  # fmt: skip
    html = render_report(inputs, plots)
    lake.write_files("gold", "plots", ds, plots, run_id=run_id)
    lake.write_files("gold", "report", ds, {"index.html": html.encode()}, run_id=run_id)
    page = lake.display(lake.partition("gold", "report", ds) / "index.html")
    log.info("report ds=%s: %s (%d KB, %.1f s)", ds, page, len(html) // 1024, time.monotonic() - started)
    return {"rows_in": inputs.recommended_users, "rows_out": len(plots) + 1, "report": page, "plots": sorted(plots),
            "headline": headline(inputs)}  # fmt: skip
