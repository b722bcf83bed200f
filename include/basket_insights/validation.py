"""Great Expectations suites for the landing drops, and row-level quarantine from their results.

Each table has one suite (GX 1.x Python API: ``ExpectationSuite`` + ``ValidationDefinition`` on
an ephemeral pandas data source). Row-level expectations are run with the ``COMPLETE`` result
format keyed by the source ``line``, so every failing row is named with the rule it broke.
Rules that compare rows (uniqueness) or tables (an order line's order and product must exist)
are expressed as boolean check columns computed here and expected to be ``True`` by the suite,
so one GX run carries every rule and its results.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Column order of every drop, exactly as in the Instacart files.
COLUMNS: dict[str, list[str]] = {
    "orders": [
        "order_id",
        "user_id",
        "eval_set",
        "order_number",
        "order_dow",
        "order_hour_of_day",
        "days_since_prior_order",
    ],
    "order_products": ["order_id", "product_id", "add_to_cart_order", "reordered"],
    "products": ["product_id", "product_name", "aisle_id", "department_id"],
    "aisles": ["aisle_id", "aisle"],
    "departments": ["department_id", "department"],
}

EVAL_SETS = ["prior", "train", "test"]


@dataclass(frozen=True)
class KnownKeys:
    """Keys that rows of a drop must refer to (``None`` where the table has no such rule)."""

    order_ids: np.ndarray | None = None
    product_ids: np.ndarray | None = None
    aisle_ids: np.ndarray | None = None
    department_ids: np.ndarray | None = None


#: Boolean check columns each suite expects to be ``True`` (computed by :func:`add_check_columns`).
CHECK_COLUMNS: dict[str, list[str]] = {
    "orders": ["order_id_is_unique"],
    "order_products": ["order_product_is_unique", "order_id_is_known", "product_id_is_known"],
    "products": ["product_id_is_unique", "aisle_id_is_known", "department_id_is_known"],
    "aisles": ["aisle_id_is_unique"],
    "departments": ["department_id_is_unique"],
}


def _isin(values: pd.Series, allowed: np.ndarray | None) -> pd.Series:
    return values.isin(allowed if allowed is not None else np.array([], dtype=np.int64))


def add_check_columns(table: str, df: pd.DataFrame, known: KnownKeys) -> pd.DataFrame:
    """Add the boolean cross-row / cross-table check columns the suite of ``table`` expects.

    Uniqueness keeps the first occurrence of a key (later duplicates are the bad rows). For
    ``order_products``, an ``order_key`` column (day-qualified order id), when present, is what
    is looked up in ``known.order_ids``; it is dropped afterwards.
    """
    if table not in CHECK_COLUMNS:
        raise ValueError(f"no validation suite for table {table!r}")
    df = df.copy()
    if table == "orders":
        df["order_id_is_unique"] = ~df.duplicated(["order_id"], keep="first")
    elif table == "order_products":
        df["order_product_is_unique"] = ~df.duplicated(["order_id", "product_id"], keep="first")
        df["order_id_is_known"] = _isin(df.pop("order_key") if "order_key" in df else df["order_id"], known.order_ids)
        df["product_id_is_known"] = _isin(df["product_id"], known.product_ids)
    elif table == "products":
        df["product_id_is_unique"] = ~df.duplicated(["product_id"], keep="first")
        df["aisle_id_is_known"] = _isin(df["aisle_id"], known.aisle_ids)
        df["department_id_is_known"] = _isin(df["department_id"], known.department_ids)
    else:
        key = f"{table[:-1]}_id"
        df[f"{key}_is_unique"] = ~df.duplicated([key], keep="first")
    return df


def _expectations(table: str) -> list[Any]:
    """The expectations of ``table``'s suite (row-level ones first, then table-level)."""
    import great_expectations.expectations as gxe

    cols = COLUMNS[table]
    exps: list[Any] = []
    not_null = [c for c in cols if c != "days_since_prior_order"]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in not_null]
    if table == "orders":
        exps += [
            gxe.ExpectColumnValuesToBeInSet(column="eval_set", value_set=EVAL_SETS),
            gxe.ExpectColumnValuesToBeBetween(column="order_number", min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="order_dow", min_value=0, max_value=6),
            gxe.ExpectColumnValuesToBeBetween(column="order_hour_of_day", min_value=0, max_value=23),
            gxe.ExpectColumnValuesToBeBetween(column="days_since_prior_order", min_value=0, max_value=30),
            gxe.ExpectColumnValuesToBeNull(
                column="days_since_prior_order", row_condition="order_number == 1", condition_parser="pandas"
            ),
            gxe.ExpectColumnValuesToNotBeNull(
                column="days_since_prior_order", row_condition="order_number > 1", condition_parser="pandas"
            ),
        ]
    elif table == "order_products":
        exps += [
            gxe.ExpectColumnValuesToBeBetween(column="add_to_cart_order", min_value=1),
            gxe.ExpectColumnValuesToBeInSet(column="reordered", value_set=[0, 1]),
        ]
    elif table == "products":
        exps += [
            gxe.ExpectColumnValuesToBeBetween(column="product_id", min_value=1),
        ]
    exps += [gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]) for c in CHECK_COLUMNS[table]]
    # Table-level contract: the drop's columns in order, then the check columns.
    exps.append(gxe.ExpectTableColumnsToMatchOrderedList(column_list=["line", *cols, *CHECK_COLUMNS[table]]))
    return exps


@dataclass
class ValidationOutcome:
    """What one GX run found.

    Attributes
    ----------
    bad_reasons:
        ``line -> "rule; rule"`` for every row that broke at least one row-level expectation.
    table_failures:
        Descriptions of failed table-level expectations (these fail the task).
    results_json:
        The GX validation result as a JSON-ready dict.
    data_docs_html:
        The result rendered as a GX Data Docs page.
    """

    bad_reasons: dict[int, str]
    table_failures: list[str]
    results_json: dict[str, Any]
    data_docs_html: str


def _describe(config: Any) -> str:
    """``expect_x(column, k=v) where <row condition>``: the rule as a person reads it."""
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "condition_parser"} and v is not None}
    column = kwargs.pop("column", None)
    condition = kwargs.pop("row_condition", None)
    if isinstance(condition, dict):
        condition = condition.get("pass_through_filter") or condition
    args = ", ".join([*([column] if column else []), *(f"{k}={v}" for k, v in sorted(kwargs.items()))])
    return f"{config.type}({args})" + (f" where {condition}" if condition else "")


def validate_frame(table: str, df: pd.DataFrame, known: KnownKeys | None = None) -> ValidationOutcome:
    """Validate a typed drop with the GX suite of ``table``.

    Parameters
    ----------
    table:
        One of :data:`COLUMNS`.
    df:
        The typed rows with a ``line`` column (the row's line in the source file) first.
    known:
        Keys that rows must refer to (orders of the drop, the catalog).

    Returns
    -------
    ValidationOutcome
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines drown the task log
    checked = add_check_columns(table, df, known or KnownKeys())
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(f"landing_{table}")
        .add_dataframe_asset(table)
        .add_batch_definition_whole_dataframe("drop")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{table}_drop"))
    for expectation in _expectations(table):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch_definition, suite=suite, name=f"{table}_drop")
    )
    result = definition.run(
        batch_parameters={"dataframe": checked},
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": ["line"],
            "partial_unexpected_count": 0,
            "return_unexpected_index_query": False,
        },
    )
    bad: dict[int, list[str]] = {}
    table_failures: list[str] = []
    for item in result.results:
        if item.success:
            continue
        description = _describe(item.expectation_config)
        index_list = (item.result or {}).get("unexpected_index_list")
        if index_list is None:
            if item.exception_info and item.exception_info.get("raised_exception"):
                description += f": {item.exception_info.get('exception_message')}"
            table_failures.append(description)
            continue
        column = item.expectation_config.kwargs.get("column")
        for entry in index_list:
            value = entry.get(column) if column else None
            reason = (
                description
                if value is None or (isinstance(value, float) and np.isnan(value))
                else (f"{description}: got {value!r}")
            )
            bad.setdefault(int(entry["line"]), []).append(reason)
    results_json: dict[str, Any] = {}
    try:
        results_json = json.loads(json.dumps(result.to_json_dict(), default=str))
        for item in results_json.get("results", []):
            # The per-row lists live in quarantine; keep the JSON small.
            (item.get("result") or {}).pop("unexpected_index_list", None)
            (item.get("result") or {}).pop("unexpected_list", None)
    except (TypeError, ValueError):
        log.warning("could not serialise the GX result of %s", table)
    return ValidationOutcome(
        bad_reasons={line: "; ".join(reasons) for line, reasons in bad.items()},
        table_failures=table_failures,
        results_json=results_json,
        data_docs_html=render_data_docs(result),
    )


def render_data_docs(result: Any) -> str:
    """Render a GX validation result as a Data Docs HTML page."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
