"""Validated ingest: every rule, every kind of bad input, and nothing lost (rows in = out + quarantined)."""

from __future__ import annotations

import json
import re

import pytest

from basket_insights import ingest
from basket_insights.ingest import (
    DropError,
    ingest_catalog,
    ingest_drops,
    ingest_order_products,
    ingest_orders,
    missing_drops,
    parse_drop,
    pending_dates,
)
from basket_insights.lake import Lake
from tests.conftest import head_fingerprint

DS = "2026-03-02"
ORDERS_HEADER = "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
LINES_HEADER = "order_id,product_id,add_to_cart_order,reordered\n"
GOOD_ORDERS = ORDERS_HEADER + "10,1,prior,1,2,08,\n11,1,prior,2,3,7,15.0\n12,2,train,1,0,23,\n"
GOOD_LINES = LINES_HEADER + "10,1,1,0\n10,2,2,0\n11,1,1,1\n12,3,1,0\n"


def deliver_catalog(lake: Lake, ds: str = "2026-03-01") -> None:
    lake.put_landing("departments", ds, b"department_id,department\n1,produce\n2,snacks\n")
    lake.put_landing("aisles", ds, b"aisle_id,aisle\n1,fresh fruits\n2,chips\n")
    lake.put_landing(
        "products",
        ds,
        b"product_id,product_name,aisle_id,department_id\n"
        b'1,Banana,1,1\n2,"Chips, Sea Salt",2,2\n3,Caf\xc3\xa9 Apple,1,1\n',
    )


def deliver(lake: Lake, orders: str = GOOD_ORDERS, lines: str = GOOD_LINES, ds: str = DS) -> None:
    lake.put_landing("orders", ds, orders.encode() if isinstance(orders, str) else orders)
    lake.put_landing("order_products", ds, lines.encode() if isinstance(lines, str) else lines)


def run_all(lake: Lake, ds: str = DS, max_bad: float = 0.5) -> tuple[dict, dict, dict]:
    cat = ingest_catalog(lake, ds, max_bad_fraction=max_bad)
    orders = ingest_orders(lake, ds, max_bad_fraction=max_bad)
    lines = ingest_order_products(lake, ds, max_bad_fraction=max_bad)
    return cat, orders, lines


def quarantine(lake: Lake, table: str, ds: str = DS) -> list[dict]:
    return lake.read_table("quarantine", table, dates=[ds]).to_pylist()


def test_clean_drops_are_ingested_typed_and_validated(lake: Lake) -> None:
    deliver_catalog(lake)
    deliver(lake)
    cat, orders, lines = run_all(lake)
    assert cat["catalog"] == {"departments": "2026-03-01", "aisles": "2026-03-01", "products": "2026-03-01"}
    assert orders["rows_in"] == orders["rows_ingested"] == 3 and orders["rows_quarantined"] == 0
    assert lines["rows_ingested"] == 4
    bronze = lake.read_table("bronze", "orders", dates=[DS])
    assert str(bronze.schema.field("order_dow").type) == "int8"
    assert bronze.column("days_since_prior_order").to_pylist() == [None, 15.0, None]
    names = lake.read_table("bronze", "products").column("product_name").to_pylist()
    assert names == ["Banana", "Chips, Sea Salt", "Café Apple"]
    results = json.loads(lake.read_file("validation", "orders", DS, "results.json"))
    assert results["rows_in"] == 3 and results["accepted"] is True
    assert results["great_expectations"]["success"] is True
    assert b"<html" in lake.read_file("validation", "orders", DS, "data_docs.html").lower()
    assert quarantine(lake, "orders") == []


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("13,3,prior,1,7,10,", "order_dow"),  # day of week out of range
        ("13,3,prior,1,2,24,", "order_hour_of_day"),
        ("13,3,prior,2,2,10,31.0", "days_since_prior_order"),
        (
            "13,3,prior,1,2,10,5.0",
            "expect_column_values_to_be_null(days_since_prior_order) where order_number == 1",
        ),  # first order with a gap
        (
            "13,3,prior,3,2,10,",
            "expect_column_values_to_not_be_null(days_since_prior_order) where order_number > 1",
        ),  # later order without
        ("13,3,holdout,1,2,10,", "eval_set"),
        ("13,3,prior,0,2,10,", "order_number"),
        # larger than bronze's int16 / int32: quarantined by name, not a failed cast
        ("13,3,prior,999999,2,10,4.0", "order_number, max_value=32767, min_value=1): got 999999"),
        ("3000000000,3,prior,1,2,10,", "order_id, max_value=2147483647"),
        ("10,3,prior,1,2,10,", "order_id_is_unique"),  # duplicate key
        (",3,prior,1,2,10,", "expect_column_values_to_not_be_null(order_id)"),
        ("13,3,prior,1,two,10,", "order_dow: cannot parse 'two'"),  # wrong type
        ("13,3,prior,1,2.5,10,", "order_dow: cannot parse '2.5'"),
        ("13,3,prior,1,2", "field(s), expected 7"),  # truncated row
        ("13,3,prior,1,2,10,,extra", "field(s), expected 7"),
    ],
)
def test_each_order_rule_quarantines_the_row_with_its_reason(lake: Lake, row: str, reason: str) -> None:
    deliver_catalog(lake)
    deliver(lake, orders=GOOD_ORDERS + row + "\n")
    summary = ingest_orders(lake, DS, max_bad_fraction=0.5)
    assert summary["rows_in"] == 4
    assert summary["rows_ingested"] == 3 and summary["rows_quarantined"] == 1
    bad = quarantine(lake, "orders")
    assert len(bad) == 1 and reason in bad[0]["reason"], bad
    assert bad[0]["line"] == 5  # the header is line 1
    assert sorted(lake.read_table("bronze", "orders").column("order_id").to_pylist()) == [10, 11, 12]


def test_quarantined_integers_read_as_written(lake: Lake) -> None:
    """An empty id elsewhere in the batch makes the column float in pandas; the quarantine must still
    show ``10``, not ``10.0``, so the row can be found in the source file."""
    deliver_catalog(lake)
    deliver(lake, orders=GOOD_ORDERS + ",3,prior,1,2,10,\n" + "10,3,prior,1,2,10,\n")
    ingest_orders(lake, DS, max_bad_fraction=0.9)
    bad = {row["line"]: row for row in quarantine(lake, "orders")}
    assert bad[5]["order_id"] is None and bad[5]["user_id"] == "3"
    assert (bad[6]["order_id"], bad[6]["user_id"], bad[6]["order_hour_of_day"]) == ("10", "3", "10")
    assert "order_id_is_unique" in bad[6]["reason"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("11,99,2,0", "product_id_is_known"),  # unknown product
        ("77,1,1,0", "order_id_is_known"),  # order not in the day's drop
        ("10,1,3,1", "order_product_is_unique"),  # duplicate (order, product)
        ("11,2,0,0", "add_to_cart_order"),
        ("11,2,2,2", "reordered"),
        ("11,2,x,0", "add_to_cart_order: cannot parse 'x'"),
    ],
)
def test_each_order_line_rule_quarantines_the_row(lake: Lake, row: str, reason: str) -> None:
    deliver_catalog(lake)
    deliver(lake, lines=GOOD_LINES + row + "\n")
    _, _, lines = run_all(lake)
    assert (lines["rows_in"], lines["rows_ingested"], lines["rows_quarantined"]) == (5, 4, 1)
    bad = quarantine(lake, "order_products")
    assert reason in bad[0]["reason"], bad


def test_lines_of_an_order_from_another_day_are_quarantined(lake: Lake) -> None:
    deliver_catalog(lake)
    deliver(lake, ds="2026-03-01", orders=ORDERS_HEADER + "1,5,prior,1,1,1,\n", lines=LINES_HEADER + "1,1,1,0\n")
    deliver(lake, lines=GOOD_LINES + "1,2,1,0\n")  # order 1 belongs to 03-01's drop
    _, _, lines = run_all(lake)
    assert lines["rows_quarantined"] == 1
    assert "order_id_is_known" in quarantine(lake, "order_products")[0]["reason"]


def test_catalog_rules(lake: Lake) -> None:
    deliver(lake)
    lake.put_landing("departments", "2026-03-01", b"department_id,department\n1,produce\n1,dup\n")
    lake.put_landing("aisles", "2026-03-01", b"aisle_id,aisle\n1,fruit\n2,empty aisle\n")
    lake.put_landing(
        "products",
        "2026-03-01",
        b"product_id,product_name,aisle_id,department_id\n1,Banana,1,1\n2,,1,1\n3,Thing,9,1\n4,Other,1,7\n5,\xe9t\xe9,1,1\n",
    )
    summary = ingest_catalog(lake, DS, max_bad_fraction=0.9)
    by_table = {d["table"]: d for d in summary["drops"]}
    assert by_table["departments"]["rows_quarantined"] == 1  # duplicate id
    assert by_table["aisles"]["rows_ingested"] == 2  # an aisle with no products is fine
    reasons = [r["reason"] for r in quarantine(lake, "products", "2026-03-01")]
    assert any("aisle_id_is_known" in r for r in reasons)
    assert any("department_id_is_known" in r for r in reasons)
    assert any("product_name: cannot parse" in r and "UTF-8" in r for r in reasons)  # Latin-1 bytes
    names = lake.read_table("bronze", "products").column("product_name").to_pylist()
    assert names == ["Banana", ""]  # an empty name is kept: the product still exists


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day\n1,1,prior,1,1,1\n", "missing column"),
        (ORDERS_HEADER.replace("\n", ",coupon\n").encode() + b"1,1,prior,1,1,1,,x\n", r"unexpected column\(s\) coupon"),
        (b"user_id,order_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n", "order"),
        (b"\xff\xfeorder_id\n", "not UTF-8"),
    ],
)
def test_table_level_faults_fail_with_the_file_named(lake: Lake, content: bytes, message: str) -> None:
    deliver_catalog(lake)
    deliver(lake, orders=content)
    with pytest.raises(DropError, match=message) as err:
        ingest_orders(lake, DS, max_bad_fraction=0.5)
    assert "landing/orders/ds=2026-03-02/orders.csv" in str(err.value)
    assert lake.partitions("bronze", "orders") == []


def test_bad_rows_above_the_threshold_fail_the_drop_but_keep_the_evidence(lake: Lake) -> None:
    deliver_catalog(lake)
    deliver(lake, orders=GOOD_ORDERS + "13,3,prior,1,9,10,\n14,3,prior,2,9,10,3\n")
    with pytest.raises(DropError, match=r"2 of 5 rows are bad \(40.0% > 5.0%\)"):
        ingest_orders(lake, DS, max_bad_fraction=0.05)
    assert lake.partitions("bronze", "orders") == []
    assert len(quarantine(lake, "orders")) == 2
    assert json.loads(lake.read_file("validation", "orders", DS, "results.json"))["accepted"] is False


def test_truncated_file_and_crlf_line_endings(lake: Lake) -> None:
    deliver_catalog(lake)
    truncated = GOOD_LINES.replace("\n", "\r\n") + "12,2,,"  # cut in the middle of the last row
    deliver(lake, lines=truncated)
    _, _, lines = run_all(lake)
    assert (lines["rows_in"], lines["rows_ingested"], lines["rows_quarantined"]) == (5, 4, 1)


def test_non_utf8_bytes_in_a_value(lake: Lake) -> None:
    deliver_catalog(lake)
    deliver(lake, orders=GOOD_ORDERS.encode() + b"13,3,pri\xf6r,1,2,10,\n")
    summary = ingest_orders(lake, DS, max_bad_fraction=0.5)
    assert summary["rows_quarantined"] == 1
    assert "eval_set: cannot parse" in quarantine(lake, "orders")[0]["reason"]


def test_a_day_with_zero_orders(lake: Lake) -> None:
    deliver_catalog(lake)
    deliver(lake, orders=ORDERS_HEADER, lines=LINES_HEADER)
    _, orders, lines = run_all(lake)
    assert orders["rows_in"] == 0 and lines["rows_in"] == 0
    assert lake.manifest("bronze", "orders", DS).rows == 0


def test_missing_drop_is_reported_by_name(lake: Lake) -> None:
    deliver_catalog(lake)
    lake.put_landing("orders", DS, GOOD_ORDERS.encode())
    assert missing_drops(lake, DS) == [lake.display(lake.landing_file("order_products", DS))]
    with pytest.raises(DropError, match="no catalog drop"):
        ingest_catalog(Lake(lake.url + "-empty"), DS, max_bad_fraction=0.05)


def test_history_is_ingested_once_and_changed_drops_again(any_lake: Lake) -> None:
    """On S3 too: the fingerprints pending_dates lists in one go match the ones ingest stored."""
    lake = any_lake
    deliver_catalog(lake)
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        deliver(lake, ds=day, orders=ORDERS_HEADER + f"{day[-1]}0,1,prior,1,1,1,\n", lines=LINES_HEADER)
    assert pending_dates(lake, "orders", "2026-03-03") == ["2026-03-01", "2026-03-02", "2026-03-03"]
    ingest_orders(lake, "2026-03-03", max_bad_fraction=0.05)
    assert pending_dates(lake, "orders", "2026-03-03") == ["2026-03-03"]  # only the day itself
    deliver(lake, ds="2026-03-01", orders=ORDERS_HEADER + "10,1,prior,1,1,1,\n11,2,prior,1,1,1,\n", lines=LINES_HEADER)
    assert pending_dates(lake, "orders", "2026-03-03") == ["2026-03-01", "2026-03-03"]  # corrected drop
    ingest_orders(lake, "2026-03-03", max_bad_fraction=0.05)
    assert lake.manifest("bronze", "orders", "2026-03-01").rows == 2
    assert pending_dates(lake, "orders", "2026-03-03", force=True) == ["2026-03-01", "2026-03-02", "2026-03-03"]


def test_drops_read_in_groups_name_a_missing_one_and_keep_the_rest(
    any_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drops are fetched a group at a time (concurrently on S3); one missing drop fails the task by
    name after the others are ingested, each with the fingerprint of the file it was read from."""
    monkeypatch.setattr(ingest, "READ_DROPS_AT_ONCE", 2)
    lake = any_lake
    deliver_catalog(lake)
    delivered = ["2026-03-01", "2026-03-02", "2026-03-04"]
    for day in delivered:
        deliver(lake, ds=day, orders=ORDERS_HEADER + f"{day[-1]}0,1,prior,1,1,1,\n", lines=LINES_HEADER)
    missing = lake.display(lake.landing_file("orders", "2026-03-03"))
    with pytest.raises(DropError, match=f"1 orders drop.*\n  {re.escape(missing)}: the drop was not delivered"):
        ingest_drops(lake, "orders", [*delivered[:2], "2026-03-03", delivered[2]], max_bad_fraction=0.05)
    assert lake.partitions("bronze", "orders") == delivered
    assert [lake.read_table("bronze", "orders", dates=[d]).column("order_id").to_pylist() for d in delivered] == [
        [10],
        [20],
        [40],
    ]
    for day in delivered:
        stored = lake.manifest("bronze", "orders", day).extra["source_fingerprint"]
        assert stored == head_fingerprint(lake, lake.landing_file("orders", day))


def test_parse_keeps_line_numbers_and_raw_text() -> None:
    parsed = parse_drop("order_products", (LINES_HEADER + "1,2,3,0\n1,x,1,0\n9\n2,3,1,1\n").encode(), "f.csv")
    assert parsed.rows_in == 4
    assert parsed.rows.column("line").to_pylist() == [2, 5]
    rejects = {r["line"]: r for r in parsed.rejects}
    assert set(rejects) == {3, 4}
    assert rejects[4]["raw"] == "9"
    assert "product_id: cannot parse 'x'" in rejects[3]["reason"]
