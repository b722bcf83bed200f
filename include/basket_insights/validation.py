"""Great Expectations suites for the landing drops, and row-level quarantine from their results.

Each table has one suite (GX 1.x Python API: ``ExpectationSuite`` + ``ValidationDefinition`` on
an ephemeral pandas data source). Row-level expectations are run with the ``COMPLETE`` result
format keyed by the source ``line``, so every failing row is named with the rule it broke.
Rules that compare rows (uniqueness) or tables (an order line's order and product must exist)
are expressed as boolean check columns computed here and expected to be ``True`` by the suite,
so one GX run carries every rule and its results.

GX evaluates a pandas frame expectation by expectation, a few seconds per million rows; a
historical load has tens of millions. :func:`validate_frame` therefore screens every row first
with the suite's own row-level expectations evaluated as vectorised pandas masks
(:func:`row_violations`) and hands GX the flagged rows plus an evenly spaced sample of the rest.
GX still names every bad row with the rule it broke, and is authoritative: a sampled row it flags
is bad. ``screen=False`` runs GX on every row; a test checks that both give the same bad rows and
reasons on drops corrupted every way the suite knows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

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

#: Types of the validated bronze tables (compact: every suite checks that integers fit them).
BRONZE_SCHEMAS: dict[str, pa.Schema] = {
    "orders": pa.schema(
        [
            ("order_id", pa.int32()),
            ("user_id", pa.int32()),
            ("eval_set", pa.string()),
            ("order_number", pa.int16()),
            ("order_dow", pa.int8()),
            ("order_hour_of_day", pa.int8()),
            ("days_since_prior_order", pa.float32()),
        ]
    ),
    "order_products": pa.schema(
        [
            ("order_id", pa.int32()),
            ("product_id", pa.int32()),
            ("add_to_cart_order", pa.int16()),
            ("reordered", pa.int8()),
        ]
    ),
    "products": pa.schema(
        [
            ("product_id", pa.int32()),
            ("product_name", pa.string()),
            ("aisle_id", pa.int16()),
            ("department_id", pa.int16()),
        ]
    ),
    "aisles": pa.schema([("aisle_id", pa.int16()), ("aisle", pa.string())]),
    "departments": pa.schema([("department_id", pa.int16()), ("department", pa.string())]),
}


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


def _isin(values: pd.Series, allowed: np.ndarray | None) -> np.ndarray:
    allowed = allowed if allowed is not None else np.array([], dtype=np.int64)
    array = values.to_numpy()
    if len(array) > 1 and array.dtype.kind in "iu":
        # Order lines come in runs of one order: look each run up once, then repeat its answer.
        heads = np.flatnonzero(np.concatenate([[True], array[1:] != array[:-1]]))
        if len(heads) < len(array) // 2:
            found = pd.Series(array[heads]).isin(allowed).to_numpy()
            return np.repeat(found, np.diff(np.append(heads, len(array))))
    return values.isin(allowed).to_numpy()


def _repeats(keys: list[pd.Series]) -> np.ndarray:
    """Rows whose key (one value from each of ``keys``) occurred in an earlier row; the first is kept."""
    arrays = [k.to_numpy() for k in keys]
    n = len(arrays[0])
    if n and all(a.dtype.kind in "iu" for a in arrays):
        # Pack the key into one int64 when the values fit: hashing one column is several times faster.
        lows = [int(a.min()) for a in arrays]
        bits = [max(int(a.max()) - low, 0).bit_length() for a, low in zip(arrays, lows, strict=True)]
        if sum(bits) <= 63:
            # In place throughout: on large batches fresh arrays cost more (page faults) than the arithmetic.
            packed, part = np.zeros(n, dtype=np.int64), np.empty(n, dtype=np.int64)
            for a, low, width in zip(arrays, lows, bits, strict=True):
                packed <<= width
                np.subtract(a, low, out=part, dtype=np.int64, casting="unsafe")
                packed |= part
            # Most drops have no repeat at all: a plain (SIMD) sort proves it at a quarter of the cost
            # of the stable argsort that names the repeats.
            part[:] = packed
            part.sort()
            if not np.equal(part[1:], part[:-1]).any():
                return np.zeros(n, dtype=bool)
            # A stable sort keeps equal keys in row order: every one after the first is a repeat.
            order = np.argsort(packed, kind="stable")
            ranked = packed[order]
            repeats = np.zeros(n, dtype=bool)
            repeats[order[1:][ranked[1:] == ranked[:-1]]] = True
            return repeats
    return pd.DataFrame(dict(enumerate(arrays))).duplicated(keep="first").to_numpy()


def add_check_columns(table: str, df: pd.DataFrame, known: KnownKeys) -> pd.DataFrame:
    """Add the boolean cross-row / cross-table check columns the suite of ``table`` expects.

    Uniqueness keeps the first occurrence of a key (later duplicates are the bad rows). When
    ``df`` holds several drops, a ``drop_day`` column (the drop's day number) keeps the rules
    within each drop: keys need only be unique in their drop, and an order line's ``order_id`` is
    looked up as ``drop_day << 32 | order_id`` in ``known.order_ids``. ``drop_day`` is dropped
    afterwards.
    """
    if table not in CHECK_COLUMNS:
        raise ValueError(f"no validation suite for table {table!r}")
    df = df.copy(deep=False)  # new columns only: the caller's frame stays as it was
    day = df.pop("drop_day") if "drop_day" in df else None
    scope = [day] if day is not None else []
    if table == "orders":
        df["order_id_is_unique"] = ~_repeats([*scope, df["order_id"]])
    elif table == "order_products":
        df["order_product_is_unique"] = ~_repeats([*scope, df["order_id"], df["product_id"]])
        order_key = df["order_id"]
        if day is not None and order_key.dtype.kind in "iu":
            order_key = pd.Series((day.to_numpy(np.int64) << 32) | order_key.to_numpy(np.int64))
        elif day is not None:  # nulls in order_id: those rows fail not-null anyway
            order_key = pd.Series(day.to_numpy(np.float64) * 2.0**32 + order_key.to_numpy(np.float64))
        df["order_id_is_known"] = _isin(order_key, known.order_ids)
        df["product_id_is_known"] = _isin(df["product_id"], known.product_ids)
    elif table == "products":
        df["product_id_is_unique"] = ~_repeats([*scope, df["product_id"]])
        df["aisle_id_is_known"] = _isin(df["aisle_id"], known.aisle_ids)
        df["department_id_is_known"] = _isin(df["department_id"], known.department_ids)
    else:
        key = f"{table[:-1]}_id"
        df[f"{key}_is_unique"] = ~_repeats([*scope, df[key]])
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
    # Integers must fit their bronze type: a bound of the table's own rule, or a rule of its own.
    for field in BRONZE_SCHEMAS[table]:
        if not pa.types.is_integer(field.type):
            continue
        fits = np.iinfo(field.type.to_pandas_dtype())
        at = next((i for i, e in enumerate(exps) if getattr(e, "column", None) == field.name
                   and isinstance(e, gxe.ExpectColumnValuesToBeBetween)), None)  # fmt: skip
        low, high = (int(fits.min), int(fits.max)) if at is None else (exps[at].min_value, exps[at].max_value)
        rule = gxe.ExpectColumnValuesToBeBetween(
            column=field.name,
            min_value=int(fits.min) if low is None else low,
            max_value=int(fits.max) if high is None else high,
        )
        if at is None:
            exps.append(rule)
        else:
            exps[at] = rule
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
    rows_screened, rows_gx:
        Rows validated, and of those the rows GX itself evaluated (all of them unless screened).
    """

    bad_reasons: dict[int, str]
    table_failures: list[str]
    results_json: dict[str, Any]
    data_docs_html: str
    rows_screened: int = 0
    rows_gx: int = 0


def _plain(value: Any) -> Any:
    """A value as a person writes it: ``9`` rather than ``np.int64(9)`` or ``9.0``, ``False`` not ``np.False_``."""
    value = value.item() if isinstance(value, np.generic) else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _condition_text(condition: Any) -> Any:
    """A GX ``row_condition`` as its pandas query string (GX 1.x wraps it as a pass-through condition)."""
    if isinstance(condition, dict):
        return condition.get("pass_through_filter") or condition
    return getattr(condition, "pass_through_filter", condition)


def _describe(config: Any) -> str:
    """``expect_x(column, k=v) where <row condition>``: the rule as a person reads it."""
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "condition_parser"} and v is not None}
    column = kwargs.pop("column", None)
    condition = _condition_text(kwargs.pop("row_condition", None))
    args = ", ".join([*([column] if column else []), *(f"{k}={_plain(v)}" for k, v in sorted(kwargs.items()))])
    return f"{config.type}({args})" + (f" where {condition}" if condition else "")


def _in_set(values: pd.Series, value_set: list[Any]) -> np.ndarray:
    """``values.isin(value_set)`` as GX computes it; boolean and small integer sets without hashing
    (the check columns and flags of tens of millions of rows)."""
    if values.dtype == bool and value_set and all(isinstance(v, bool) for v in value_set):
        flags = values.to_numpy()
        return np.ones(len(flags), bool) if len(set(value_set)) == 2 else (flags if value_set[0] else ~flags)
    if values.dtype.kind in "iu" and value_set and all(type(v) is int for v in value_set) and len(value_set) <= 16:
        return np.isin(values.to_numpy(), np.array(value_set, dtype=np.int64), kind="table")
    return values.isin(value_set).to_numpy()


def row_violations(expectations: list[Any], df: pd.DataFrame) -> np.ndarray:
    """Rows breaking at least one row-level expectation, evaluated as GX does, vectorised.

    Column map expectations leave nulls out of their domain (only the null expectations look at
    them), and a ``row_condition`` narrows the domain first. Table-level expectations are skipped.

    Raises
    ------
    NotImplementedError
        For a row-level expectation type this screen does not know (add it here, and the
        equivalence test will check it against GX).
    """
    bad = np.zeros(len(df), dtype=bool)
    for expectation in expectations:
        kind = type(expectation).__name__
        if kind.startswith("ExpectTable"):
            continue
        values = df[expectation.column]
        present = values.notna().to_numpy()
        if kind == "ExpectColumnValuesToNotBeNull":
            broken = ~present
        elif kind == "ExpectColumnValuesToBeNull":
            broken = present
        elif kind == "ExpectColumnValuesToBeInSet":
            broken = present & ~_in_set(values, list(expectation.value_set))
        elif kind == "ExpectColumnValuesToBeBetween":
            broken = np.zeros(len(df), dtype=bool)
            if expectation.min_value is not None:
                broken = broken | (values < expectation.min_value).to_numpy()
            if expectation.max_value is not None:
                broken = broken | (values > expectation.max_value).to_numpy()
            broken = broken & present
        else:
            raise NotImplementedError(f"no vectorised screen for {kind}")
        if expectation.row_condition:
            condition = _condition_text(expectation.row_condition)
            if not isinstance(condition, str):
                raise NotImplementedError(f"no vectorised screen for the row condition {condition!r}")
            broken = broken & df.eval(condition).to_numpy(dtype=bool)
        bad = bad | broken
    return bad


#: Clean rows GX also sees when screening (evenly spaced), so its results describe good data too.
SCREEN_SAMPLE_ROWS = 2_000


def validate_frame(
    table: str, df: pd.DataFrame, known: KnownKeys | None = None, *, screen: bool = True
) -> ValidationOutcome:
    """Validate a typed drop with the GX suite of ``table``.

    Parameters
    ----------
    table:
        One of :data:`COLUMNS`.
    df:
        The typed rows with a ``line`` column (the row's line in the source file) first.
    known:
        Keys that rows must refer to (orders of the drop, the catalog).
    screen:
        GX sees only the rows :func:`row_violations` flags plus :data:`SCREEN_SAMPLE_ROWS` others
        (same outcome, far faster on large drops); ``False`` runs GX on every row.

    Returns
    -------
    ValidationOutcome
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines drown the task log
    checked = add_check_columns(table, df, known or KnownKeys())
    expectations = _expectations(table)
    rows_screened = len(checked)
    if screen and len(checked) > SCREEN_SAMPLE_ROWS:
        flagged = row_violations(expectations, checked)
        flagged[np.linspace(0, len(checked) - 1, SCREEN_SAMPLE_ROWS).astype(np.int64)] = True
        checked = checked.iloc[np.flatnonzero(flagged)]
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(f"landing_{table}")
        .add_dataframe_asset(table)
        .add_batch_definition_whole_dataframe("drop")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{table}_drop"))
    for expectation in expectations:
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
            value = _plain(entry.get(column)) if column else None
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
        rows_screened=rows_screened,
        rows_gx=len(checked),
    )


def render_data_docs(result: Any) -> str:
    """Render a GX validation result as a Data Docs HTML page."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
