"""The day's plots and HTML report, from a small lake that went through every step."""

from __future__ import annotations

import io
import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from matplotlib.image import imread

from basket_insights.report import (
    PLOTS,
    load_report_inputs,
    render_plots,
    render_report,
    run_report,
    tally_recommendations,
)
from tests.conftest import GOLD_DATES


def test_every_plot_is_a_real_png_and_identical_for_the_same_input(gold_lake) -> None:
    inputs = load_report_inputs(gold_lake, GOLD_DATES[-1])
    first, second = render_plots(inputs), render_plots(load_report_inputs(gold_lake, GOLD_DATES[-1]))
    assert list(first) == list(PLOTS)
    for name, data in first.items():
        assert data == second[name], f"{name} is not byte-identical for the same input"
        pixels = imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] >= 200 and pixels.shape[1] >= 700, name
        assert pixels[..., :3].std() > 0.05, f"{name} is blank"
        assert b"Software" not in data[:4096] and b"tIME" not in data, f"{name} carries volatile metadata"
    # the committed plots of the run are those bytes
    assert gold_lake.read_file("gold", "plots", GOLD_DATES[-1], "elbow.png") == first["elbow.png"]
    earlier = render_plots(load_report_inputs(gold_lake, GOLD_DATES[0]))
    assert earlier["segment_sizes.png"] != first["segment_sizes.png"]


def test_report_page_is_self_contained_with_headline_tables_and_day_links(gold_lake) -> None:
    ds = GOLD_DATES[-1]
    html = gold_lake.read_file("gold", "report", ds, "index.html").decode()
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]+">', html)
    assert len(images) == len(PLOTS)
    assert not re.search(r'(src|href)="(https?:|file:|/)', html), "the page must not fetch anything"
    inputs = load_report_inputs(gold_lake, ds)
    users = int(inputs.segment_profiles["size"].sum())
    assert f"<b>{users:,}</b><span>customers segmented" in html
    assert f"{len(inputs.association_rules):,}</b><span>association rules" in html
    for name in inputs.segment_profiles["segment_name"]:
        assert f"<td>{name}</td>" in html
    assert 'id="previous-day" href="../ds=2026-05-30/index.html"' in html
    assert 'href="../ds=2026-06-01/index.html"' in html
    assert "<td>order_products</td>" in html  # the day's validation
    from markupsafe import escape  # Jinja's own escaping

    assert len(inputs.sample_recommendations) > 0
    for row in inputs.sample_recommendations.itertuples():
        assert str(escape(row.product_name)) in html and str(escape(row.reason)) in html
    # the first day has no earlier report to link to
    first = gold_lake.read_file("gold", "report", GOLD_DATES[0], "index.html").decode()
    assert 'id="previous-day"' not in first


def test_names_are_escaped_and_empty_rules_render(gold_lake) -> None:
    inputs = load_report_inputs(gold_lake, GOLD_DATES[-1])
    inputs.association_rules = inputs.association_rules.iloc[0:0]
    inputs.sample_recommendations = inputs.sample_recommendations.assign(product_name="<script>alert(1)</script>")
    plots = render_plots(inputs)
    html = render_report(inputs, plots)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "No rules above the thresholds on this date." in html


def test_report_fails_clearly_when_the_day_has_not_run(gold_lake) -> None:
    with pytest.raises(FileNotFoundError, match=r"gold/recommendations/ds=2026-06-01 is not committed"):
        run_report(gold_lake, "2026-06-01")


def test_days_not_run_are_gaps_named_on_the_page(gold_lake, tmp_path) -> None:
    """A backfill in progress: of the last 30 days before the report's date some have not run yet.
    The over-time plots keep to the 30 calendar days (an older run stays out) and the page names the
    days missing since the first run, so nobody reads a gap as a steady line."""
    import shutil

    from basket_insights.lake import Lake
    from basket_insights.report import HISTORY_DAYS, date_ranges, history_window

    shutil.copytree(gold_lake.url.removeprefix("file://"), tmp_path / "lake")
    lake = Lake((tmp_path / "lake").as_uri())
    ds = GOLD_DATES[-1]  # 2026-05-31; 2026-05-30 ran too
    for day in ("2026-04-20", "2026-05-28"):  # an old run outside the window, and one inside it
        for table in ("segment_profiles", "evaluation"):
            lake.write_table("gold", table, day, lake.read_table("gold", table, dates=[GOLD_DATES[0]]))
    inputs = load_report_inputs(lake, ds)
    assert sorted(inputs.segment_history["ds"].unique()) == ["2026-05-28", "2026-05-30", "2026-05-31"]
    assert sorted(inputs.evaluation_history["ds"].unique()) == ["2026-05-28", "2026-05-30", "2026-05-31"]
    window = history_window(ds)
    assert len(window) == HISTORY_DAYS and window[0] == "2026-05-02" and window[-1] == ds
    assert inputs.history_missing == [d for d in window if d not in ("2026-05-28", "2026-05-30", ds)]
    assert date_ranges(inputs.history_missing) == "2026-05-02 to 2026-05-27, 2026-05-29"

    run_report(lake, ds)
    html = lake.read_file("gold", "report", ds, "index.html").decode()
    assert "Not run when this report was drawn: 2026-05-02 to 2026-05-27, 2026-05-29." in html
    # the lake's own history (two consecutive runs, nothing before them) has nothing missing
    assert load_report_inputs(gold_lake, ds).history_missing == []
    assert 'id="history-missing"' not in gold_lake.read_file("gold", "report", ds, "index.html").decode()


def test_report_shows_every_method_of_the_evaluation_with_its_intervals(gold_lake) -> None:
    from basket_insights.evaluation import METHODS
    from basket_insights.report import METHOD_LABELS

    ds = GOLD_DATES[-1]
    html = gold_lake.read_file("gold", "report", ds, "index.html").decode()
    table = html[html.index('<table id="evaluation">') :]
    table = table[: table.index("</table>")]
    evaluation = gold_lake.read_table("gold", "evaluation", dates=[ds]).to_pandas().set_index("method")
    for method in METHODS:
        assert f"<td>{METHOD_LABELS[method]}</td>" in table
    recommender = evaluation.loc["recommender"]
    shown = f"{recommender['recall'] * 100:.2f}% ({recommender['recall_low'] * 100:.2f}–"
    assert shown in table
    assert "points (" in table  # the paired difference to the best baseline, with its interval


def test_recommendations_tallied_a_piece_at_a_time_count_as_the_whole_table(gold_lake) -> None:
    """The report never holds every customer's recommendations: tallied in pieces of a few rows (each
    customer's list cut across pieces), the counts are those of the whole table."""
    ds, columns = GOLD_DATES[-1], ["user_id", "rank", "product_id", "source"]
    whole = gold_lake.read_table("gold", "recommendations", dates=[ds], columns=columns).to_pandas()
    pieces = gold_lake.scan_table("gold", "recommendations", ds, columns=columns, batch_rows=7)
    tally = tally_recommendations(pieces, keep=5)
    by_source = whole.groupby("source")
    assert tally.rows_by_source == by_source.size().to_dict()
    assert tally.users_by_source == by_source["user_id"].nunique().to_dict()
    assert tally.users_by_product == whole.groupby("product_id")["user_id"].nunique().to_dict()
    assert tally.users == whole["user_id"].nunique() > 5
    assert tally.first_users.tolist() == sorted(whole["user_id"].unique())[:5]
    top_rule = whole.loc[(whole["rank"] == 1) & (whole["source"] == "rule"), "user_id"]
    assert tally.first_rule_users.tolist() == sorted(top_rule.unique())[:5]


def test_a_table_not_grouped_by_customer_is_refused() -> None:
    rows = pa.table({"user_id": [1, 2, 1], "rank": [1, 1, 2], "product_id": [5, 6, 7], "source": ["rule"] * 3})
    with pytest.raises(ValueError, match="not grouped by customer"):
        tally_recommendations([rows], keep=5)


def test_a_filtered_read_equals_the_rows_of_the_whole_table(gold_lake) -> None:
    ds = GOLD_DATES[-1]
    whole = gold_lake.read_table("gold", "buy_again", dates=[ds]).to_pandas()
    first = int(whole["user_id"].min())
    rows = gold_lake.read_table("gold", "buy_again", dates=[ds], where=pc.field("user_id") == first).to_pandas()
    pd.testing.assert_frame_equal(rows, whole[whole["user_id"] == first].reset_index(drop=True))
    none = gold_lake.read_table("gold", "buy_again", dates=[ds], columns=["user_id"], where=pc.field("user_id") < 0)
    assert none.num_rows == 0 and none.column_names == ["user_id"]
