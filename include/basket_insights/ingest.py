"""Landing CSV drops -> validated, typed parquet in ``bronze/``; bad rows -> ``quarantine/``.

For every drop: rows in = rows ingested + rows quarantined. A row is bad when a value cannot
be parsed as its column's type, when it has the wrong number of fields, or when it breaks a
Great Expectations rule (:mod:`basket_insights.validation`). A *drop* fails (its task fails,
naming the file, the column and the reason) when the file is missing, empty, unreadable,
lacks or adds a column, or when its bad rows exceed ``max_bad_fraction`` of its rows.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from basket_insights.lake import Lake
from basket_insights.validation import BRONZE_SCHEMAS, COLUMNS, KnownKeys, ValidationOutcome, validate_frame

log = logging.getLogger(__name__)

CATALOG_TABLES = ("departments", "aisles", "products")

#: Drops of a batch committed at once (their partitions are independent).
WRITE_THREADS = 8
#: Landing drops fetched at once (concurrent GETs on S3; a day of order lines is ~2 MB of CSV).
READ_DROPS_AT_ONCE = 16

#: Types the CSV values are parsed as (wide enough that range rules, not overflow, catch bad values).
READ_TYPES: dict[str, dict[str, pa.DataType]] = {
    "orders": {
        "order_id": pa.int64(),
        "user_id": pa.int64(),
        "eval_set": pa.string(),
        "order_number": pa.int64(),
        "order_dow": pa.int64(),
        "order_hour_of_day": pa.int64(),
        "days_since_prior_order": pa.float64(),
    },
    "order_products": {
        "order_id": pa.int64(),
        "product_id": pa.int64(),
        "add_to_cart_order": pa.int64(),
        "reordered": pa.int64(),
    },
    "products": {
        "product_id": pa.int64(),
        "product_name": pa.string(),
        "aisle_id": pa.int64(),
        "department_id": pa.int64(),
    },
    "aisles": {"aisle_id": pa.int64(), "aisle": pa.string()},
    "departments": {"department_id": pa.int64(), "department": pa.string()},
}

QUARANTINE_SCHEMA_EXTRA = [("line", pa.int64()), ("reason", pa.string()), ("raw", pa.string())]

_INT_RE = r"^\s*[+-]?\d+\s*$"
_FLOAT_RE = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"


class DropError(ValueError):
    """A whole drop cannot be ingested; the message names the file, the column and the reason."""


@dataclass
class ParsedDrop:
    """A drop read from CSV: typed rows (``line`` in the source file first, then the columns as
    read, :data:`READ_TYPES`) and the rows that could not be parsed."""

    rows: pa.Table
    rejects: list[dict[str, Any]]

    @property
    def rows_in(self) -> int:
        return self.rows.num_rows + len(self.rejects)


@dataclass(frozen=True)
class PendingDrop:
    """A drop read and parsed, waiting for its batch to be validated and committed."""

    ds: str
    parsed: ParsedDrop
    fingerprint: str
    source: str  # the landing file's URL, as logs and results name it


@dataclass
class DropResult:
    """What ingesting one drop did (kept small: it goes to the task log and XCom)."""

    table: str
    ds: str
    file: str
    rows_in: int
    rows_ingested: int
    rows_quarantined: int
    committed: bool
    top_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_header(table: str, data: bytes, where: str) -> None:
    if not data.strip():
        raise DropError(f"{where}: the file is empty (no header row); expected columns {', '.join(COLUMNS[table])}")
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DropError(f"{where}: the header row is not UTF-8 ({exc})") from exc
    names = [n.strip().strip('"') for n in header.split(",")]
    expected = COLUMNS[table]
    missing = [c for c in expected if c not in names]
    extra = [c for c in names if c not in expected]
    if missing:
        raise DropError(f"{where}: missing column(s) {', '.join(missing)}; header is {header!r}")
    if extra:
        raise DropError(f"{where}: unexpected column(s) {', '.join(extra)}; expected exactly {', '.join(expected)}")
    if names != expected:
        raise DropError(f"{where}: columns out of order: got {', '.join(names)}, expected {', '.join(expected)}")


def _parse_column(name: str, raw: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.Array, np.ndarray, list[str]]:
    """Parse one binary column; returns (typed values, mask of unparseable rows, their raw text)."""
    raw = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
    empty = pc.equal(pc.binary_length(raw), 0)
    if pa.types.is_string(target):
        values = raw.to_pylist()
        decoded, bad = [], np.zeros(len(values), dtype=bool)
        for i, v in enumerate(values):
            try:
                decoded.append(v.decode("utf-8"))
            except UnicodeDecodeError:
                decoded.append(None)
                bad[i] = True
        texts = [repr(values[i])[2:-1] for i in np.flatnonzero(bad)]
        return pa.array(decoded, pa.string()), bad, texts
    pattern = _INT_RE if pa.types.is_integer(target) else _FLOAT_RE
    ok = pc.or_(pc.match_substring_regex(raw, pattern), empty)
    bad = ~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
    cleaned = pc.if_else(pc.or_(pc.invert(ok), empty), pa.scalar(None, pa.binary()), raw)
    typed = pc.cast(pc.cast(pc.utf8_trim_whitespace(pc.cast(cleaned, pa.string())), pa.string()), target)
    texts = [bytes(raw[i].as_py()).decode("utf-8", "replace") for i in np.flatnonzero(bad)]
    return typed, bad, texts


def parse_drop(table: str, data: bytes, where: str) -> ParsedDrop:
    """Parse the bytes of a CSV drop of ``table`` into typed rows and rejected rows.

    The fast path reads with the explicit pyarrow schema; only a drop with unparseable values
    or malformed rows takes the slower row-by-row path that names each bad row.

    Raises
    ------
    DropError
        Empty file, missing/extra/reordered columns, undecodable header, unreadable CSV.
    """
    _check_header(table, data, where)
    types = READ_TYPES[table]
    columns = COLUMNS[table]
    try:
        typed = pcsv.read_csv(
            io.BytesIO(data),
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=columns),
        )
        return ParsedDrop(typed.add_column(0, "line", pa.array(np.arange(2, typed.num_rows + 2))), [])
    except pa.ArrowInvalid:
        pass  # some row is malformed or unparseable: find which, below

    malformed: list[dict[str, Any]] = []

    def on_invalid(row: Any) -> str:
        malformed.append(
            {
                "line": row.number,
                "reason": f"row has {row.actual_columns} field(s), expected {row.expected_columns}",
                "raw": row.text,
            }
        )
        return "skip"

    try:
        raw = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(use_threads=False),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.binary() for c in columns}, include_columns=columns, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DropError(f"{where}: unreadable CSV: {exc}") from exc

    bad_lines = {m["line"] for m in malformed if m["line"] is not None}
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    lines = np.array([n for n in range(2, n_lines + 1) if n not in bad_lines], dtype=np.int64)
    if len(lines) != raw.num_rows:  # quoted newlines: fall back to row positions
        lines = np.arange(2, raw.num_rows + 2, dtype=np.int64)

    arrays, row_bad = {}, np.zeros(raw.num_rows, dtype=bool)
    reasons: dict[int, list[str]] = {}
    for name in columns:
        values, bad, texts = _parse_column(name, raw.column(name), types[name])
        arrays[name] = values
        kind = "UTF-8 text" if pa.types.is_string(types[name]) else str(types[name])
        for pos, text in zip(np.flatnonzero(bad), texts, strict=True):
            reasons.setdefault(int(pos), []).append(f"{name}: cannot parse {text!r} as {kind}")
        row_bad |= bad
    rows = pa.table({"line": lines, **arrays})
    rejects = list(malformed)
    for pos, why in sorted(reasons.items()):
        rejects.append(
            {
                "line": int(lines[pos]),
                "reason": "; ".join(why),
                "raw": ",".join(str(raw.column(c)[pos].as_py().decode("utf-8", "replace")) for c in columns),
            }
        )
    return ParsedDrop(rows.filter(pa.array(~row_bad)), rejects)


def _to_bronze(table: str, rows: pa.Table) -> pa.Table:
    return rows.select(COLUMNS[table]).cast(BRONZE_SCHEMAS[table])


def _quarantine_table(table: str, rejects: list[dict[str, Any]], bad_rows: pd.DataFrame) -> pa.Table:
    """Bad rows with their source line, reason and values (as text: some could not be typed)."""
    cols = COLUMNS[table]
    records: dict[str, list[Any]] = {c: [] for c in ["line", "reason", "raw", *cols]}
    for r in rejects:
        records["line"].append(r["line"])
        records["reason"].append(r["reason"])
        records["raw"].append(r["raw"])
        for c in cols:
            records[c].append(None)
    if len(bad_rows):
        records["line"].extend(bad_rows["line"].astype("int64").tolist())
        records["reason"].extend(bad_rows["reason"].tolist())
        records["raw"].extend([None] * len(bad_rows))
        for c in cols:
            values = bad_rows[c]
            if pa.types.is_integer(READ_TYPES[table][c]) and values.dtype.kind == "f":
                values = values.astype("Int64")  # an empty value in the batch made the column float: 10, not 10.0
            records[c].extend(values.astype("string").astype(object).where(values.notna(), None).tolist())
    schema = pa.schema(QUARANTINE_SCHEMA_EXTRA + [(c, pa.string()) for c in cols])
    return pa.table(records, schema=schema)


def _reason_counts(reasons: Iterable[str], top: int = 5) -> dict[str, int]:
    counts: dict[str, int] = {}
    for text in reasons:
        for part in text.split("; "):
            key = re.sub(r"cannot parse .* as", "cannot parse as", re.sub(r": got .*$", "", part))
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:top])


def pending_dates(lake: Lake, table: str, ds: str, *, force: bool = False) -> list[str]:
    """Drops of ``table`` up to ``ds`` that need ingesting.

    ``ds``'s own drop always; an earlier drop when it has no bronze partition yet or its landing
    file changed since it was ingested (another fingerprint); every drop when ``force``.
    """
    delivered = lake.landing_fingerprints(table, up_to=ds)
    if force:
        return list(delivered)
    ingested = lake.manifests("bronze", table, dates=[day for day in delivered if day != ds])
    return [
        day
        for day, fingerprint in delivered.items()
        if day == ds or day not in ingested or ingested[day].extra.get("source_fingerprint") != fingerprint
    ]


def _day_number(ds: str) -> int:
    return date.fromisoformat(ds).toordinal()


def ingest_drops(
    lake: Lake,
    table: str,
    dates: list[str],
    *,
    max_bad_fraction: float,
    run_id: str = "",
    known_for: Callable[[list[str]], KnownKeys] | None = None,
    batch_rows: int = 10_000_000,
) -> list[DropResult]:
    """Ingest the drops of ``table`` for ``dates`` into bronze, quarantine and validation results.

    Drops are validated in batches (one GX run per batch of days, up to ``batch_rows`` rows) so a
    historical load of hundreds of days does not pay GX's fixed cost per day.

    Raises
    ------
    DropError
        After every other drop was written: the drops that could not be ingested, each named
        with its file and reasons. Those drops have quarantine and validation results but no
        bronze partition.
    """
    if not dates:
        return []
    # GX takes seconds to import. A worker that preloads it (basket_insights.preload) spares every
    # task that; otherwise it is imported while the first drops are read and parsed (Arrow releases
    # the GIL), and validate_frame waits for it.
    importer = None
    if "great_expectations" in sys.modules:
        log.info("%s: Great Expectations already imported in this process (worker preload or an earlier step)", table)
    else:
        log.info("%s: importing Great Expectations (not preloaded by this worker: docs/operations.md)", table)
        importer = threading.Thread(target=importlib.import_module, args=("great_expectations",), daemon=True)
        importer.start()
    results: list[DropResult] = []
    errors: list[str] = []
    batch: list[PendingDrop] = []
    batch_size = 0

    def flush() -> None:
        nonlocal batch, batch_size
        if batch:
            results.extend(_validate_and_write(lake, table, batch, max_bad_fraction, run_id, known_for, errors))
        batch, batch_size = [], 0

    # Listed before the drops are read: a drop replaced in between keeps its older fingerprint (or
    # none, if it appeared in between) and is ingested again next run, never the other way round.
    fingerprints = lake.landing_fingerprints(table)
    for start in range(0, len(dates), READ_DROPS_AT_ONCE):
        sources = {ds: lake.landing_file(table, ds) for ds in dates[start : start + READ_DROPS_AT_ONCE]}
        for (ds, source), data in zip(sources.items(), lake.read_files(list(sources.values())), strict=True):
            where = lake.display(source)
            if data is None:
                errors.append(f"{where}: the drop was not delivered")
                continue
            try:
                parsed = parse_drop(table, data, where)
            except DropError as exc:
                errors.append(str(exc))
                continue
            log.info("%s ds=%s: read %d rows from %s", table, ds, parsed.rows_in, where)
            batch.append(PendingDrop(ds, parsed, fingerprints.get(ds, ""), where))
            batch_size += parsed.rows_in
            if batch_size >= batch_rows:
                flush()
    flush()
    if importer is not None:
        importer.join()  # never leave an import running behind the task (every drop may have failed to parse)
    if errors:
        raise DropError(f"{len(errors)} {table} drop(s) could not be ingested:\n  " + "\n  ".join(errors))
    return results


def _validate_and_write(
    lake: Lake,
    table: str,
    batch: list[PendingDrop],
    max_bad_fraction: float,
    run_id: str,
    known_for: Callable[[list[str]], KnownKeys] | None,
    errors: list[str],
) -> list[DropResult]:
    started = time.monotonic()
    days = [drop.ds for drop in batch]
    sizes = [drop.parsed.rows.num_rows for drop in batch]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    combined = pa.concat_tables([drop.parsed.rows for drop in batch])
    known = known_for(days) if known_for else KnownKeys()
    # GX keys its findings by row: the position in the batch (the source line repeats across drops).
    # Both extra columns are added on the Arrow side: one conversion, no pandas copies.
    checked = (
        combined.set_column(0, "line", pa.array(np.arange(combined.num_rows, dtype=np.int64)))
        .append_column("drop_day", pa.array(np.repeat(np.array([_day_number(d) for d in days], np.int64), sizes)))
        .to_pandas(split_blocks=True)  # column by column: zero-copy where Arrow allows
    )
    outcome: ValidationOutcome = validate_frame(table, checked, known)
    log.info(
        "%s: validated %d rows of %d drop(s) in %.1f s (Great Expectations evaluated %d of them: "
        "the rows the vectorised screen flagged and a sample)",
        table,
        len(checked),
        len(batch),
        time.monotonic() - started,
        outcome.rows_gx,
    )
    if outcome.table_failures:
        errors.extend(f"{table} drops {days[0]}..{days[-1]}: {failure}" for failure in outcome.table_failures)
        return []
    bad_positions = np.array(sorted(outcome.bad_reasons), dtype=np.int64)
    bad = np.zeros(len(checked), dtype=bool)
    bad[bad_positions] = True
    # The batch's bad rows with their source lines and reasons, cut per drop below (sorted by position).
    bad_rows = checked.iloc[bad_positions].drop(columns="drop_day")
    bad_rows["line"] = combined.column("line").take(pa.array(bad_positions)).to_numpy()
    bad_rows["reason"] = [outcome.bad_reasons[int(p)] for p in bad_positions]
    cuts = np.searchsorted(bad_positions, starts)
    gx_json = _json_bytes(outcome.results_json)

    def commit_drop(i: int) -> tuple[DropResult, str | None]:
        drop = batch[i]
        ds, parsed, source = drop.ds, drop.parsed, drop.source
        lo, hi = starts[i], starts[i + 1]
        good = combined.slice(lo, hi - lo).filter(pa.array(~bad[lo:hi]))
        quarantine = _quarantine_table(table, parsed.rejects, bad_rows.iloc[cuts[i] : cuts[i + 1]])
        rows_in = parsed.rows_in
        n_bad = quarantine.num_rows
        assert good.num_rows + n_bad == rows_in, "rows in must equal rows out + rows quarantined"
        top = _reason_counts(quarantine.column("reason").to_pylist())
        lake.write_table("quarantine", table, ds, quarantine, run_id=run_id, extra={"source": source})
        too_many = rows_in > 0 and n_bad / rows_in > max_bad_fraction
        summary = {
            "table": table,
            "ds": ds,
            "source": source,
            "rows_in": rows_in,
            "rows_ingested": 0 if too_many else good.num_rows,
            "rows_quarantined": n_bad,
            "max_bad_fraction": max_bad_fraction,
            "accepted": not too_many,
            "top_reasons": top,
            # One GX run validates a batch of drops; these say how much of it GX itself evaluated.
            "validated_with": {
                "drops_in_batch": f"{days[0]}..{days[-1]} ({len(days)})",
                "rows_screened": outcome.rows_screened,
                "rows_evaluated_by_great_expectations": outcome.rows_gx,
            },
            "great_expectations": "@GX@",
        }
        lake.write_files(
            "validation",
            table,
            ds,
            {
                # the batch's GX result, serialised once
                "results.json": _json_bytes(summary).replace(b'"@GX@"', gx_json),
                "data_docs.html": data_docs,
            },
            run_id=run_id,
        )
        if too_many:
            error = (
                f"{source}: {n_bad} of {rows_in} rows are bad ({n_bad / rows_in:.1%} > {max_bad_fraction:.1%}); "
                f"top reasons: {top}"
            )
            return DropResult(table, ds, source, rows_in, 0, n_bad, False, top), error
        lake.write_table(
            "bronze",
            table,
            ds,
            _to_bronze(table, good),
            run_id=run_id,
            extra={
                "source": source,
                "source_fingerprint": drop.fingerprint,
                "rows_in": rows_in,
                "rows_quarantined": n_bad,
            },
        )
        log.info(
            "%s ds=%s: %d rows in = %d ingested + %d quarantined%s",
            table,
            ds,
            rows_in,
            good.num_rows,
            n_bad,
            f" (top reasons: {top})" if n_bad else "",
        )
        return DropResult(table, ds, source, rows_in, good.num_rows, n_bad, True, top), None

    data_docs = outcome.data_docs_html.encode()
    # Each drop is its own partitions; writing them concurrently hides the store's latency (S3).
    with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="ingest-write") as pool:
        committed = list(pool.map(commit_drop, range(len(batch))))
    errors.extend(error for _, error in committed if error)
    return [result for result, _ in committed]


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, default=str).encode()


# -- the three ingest steps of the DAG --------------------------------------------------------


def catalog_as_of(lake: Lake, ds: str) -> dict[str, str | None]:
    """The date of the catalog partition in force on ``ds`` for each catalog table."""
    return {t: (lake.partitions("bronze", t, up_to=ds) or [None])[-1] for t in CATALOG_TABLES}


def product_names(lake: Lake, ds: str) -> pd.Series:
    """``product_id -> product_name`` of the catalog in force on ``ds``."""
    when = catalog_as_of(lake, ds)["products"]
    if when is None:
        raise FileNotFoundError(f"no bronze products on or before {ds} in {lake.url}")
    table = lake.read_table("bronze", "products", dates=[when], columns=["product_id", "product_name"])
    return table.to_pandas().set_index("product_id")["product_name"]


def ingest_catalog(lake: Lake, ds: str, *, max_bad_fraction: float, run_id: str = "", force: bool = False) -> dict:
    """Ingest pending catalog drops (departments, then aisles, then products) up to ``ds``.

    A product must name a known aisle and department: those of the same drop date, or of the
    latest catalog ingested before it.

    Returns
    -------
    dict
        ``{"drops": [...], "catalog": {table: ds in force}}``.
    """
    pending = {t: set(pending_dates(lake, t, ds, force=force)) for t in CATALOG_TABLES}
    if not any(lake.landing_dates(t, up_to=ds) for t in CATALOG_TABLES):
        raise DropError(f"no catalog drop (products, aisles, departments) up to {ds} in {lake.url}/landing")
    drops: list[DropResult] = []
    for day in sorted(set().union(*pending.values())):
        for table in CATALOG_TABLES:
            if day not in pending[table]:
                continue

            def known(days: list[str], _day: str = day) -> KnownKeys:
                kw: dict[str, np.ndarray] = {}
                for ref, key in (("aisles", "aisle_ids"), ("departments", "department_ids")):
                    when = catalog_as_of(lake, _day)[ref]
                    if when is not None:
                        kw[key] = lake.read_table("bronze", ref, dates=[when]).column(ref[:-1] + "_id").to_numpy()
                return KnownKeys(**kw)

            drops += ingest_drops(
                lake,
                table,
                [day],
                max_bad_fraction=max_bad_fraction,
                run_id=run_id,
                known_for=known if table == "products" else None,
            )
    return {
        "drops": [d.as_dict() for d in drops],
        "catalog": catalog_as_of(lake, ds),
        "rows_in": sum(d.rows_in for d in drops),
        "rows_out": sum(d.rows_ingested for d in drops),
    }


def ingest_orders(lake: Lake, ds: str, *, max_bad_fraction: float, run_id: str = "", force: bool = False) -> dict:
    """Ingest pending ``orders`` drops up to ``ds`` (see :func:`pending_dates`)."""
    dates = pending_dates(lake, "orders", ds, force=force)
    drops = ingest_drops(lake, "orders", dates, max_bad_fraction=max_bad_fraction, run_id=run_id)
    return _summary("orders", drops)


def ingest_order_products(
    lake: Lake, ds: str, *, max_bad_fraction: float, run_id: str = "", force: bool = False
) -> dict:
    """Ingest pending ``order_products`` drops up to ``ds``.

    An order line must refer to an order of the same day's ``orders`` drop and to a product of
    the catalog in force on that day.
    """
    dates = pending_dates(lake, "order_products", ds, force=force)

    def known(days: list[str]) -> KnownKeys:
        committed = lake.manifests("bronze", "orders", dates=days)
        have = [d for d in days if d in committed]
        orders = (
            lake.read_table("bronze", "orders", dates=have, columns=["order_id"], with_ds=True)
            if have
            else pa.table({"order_id": pa.array([], pa.int32()), "ds": pa.array([], pa.string())})
        )
        days_of_rows = pc.dictionary_encode(orders.column("ds")).combine_chunks()
        day_numbers = np.array([_day_number(d) for d in days_of_rows.dictionary.to_pylist()], dtype=np.int64)
        keys = (day_numbers[days_of_rows.indices.to_numpy()] << 32) | orders.column("order_id").to_numpy().astype(
            np.int64
        )
        catalog_dates = lake.partitions("bronze", "products")  # listed once, not once per day
        catalogs = {max((c for c in catalog_dates if c <= d), default=None) for d in days}
        product_ids = [
            lake.read_table("bronze", "products", dates=[c], columns=["product_id"]).column("product_id").to_numpy()
            for c in catalogs
            if c is not None
        ]
        return KnownKeys(
            order_ids=keys,
            product_ids=np.unique(np.concatenate(product_ids)) if product_ids else np.array([], dtype=np.int32),
        )

    drops = ingest_drops(
        lake, "order_products", dates, max_bad_fraction=max_bad_fraction, run_id=run_id, known_for=known
    )
    return _summary("order_products", drops)


def _summary(table: str, drops: list[DropResult]) -> dict:
    return {
        "table": table,
        "drops": len(drops),
        "dates": [d.ds for d in drops][:3] + (["..."] if len(drops) > 3 else []),
        "rows_in": sum(d.rows_in for d in drops),
        "rows_ingested": sum(d.rows_ingested for d in drops),
        "rows_quarantined": sum(d.rows_quarantined for d in drops),
        "rows_out": sum(d.rows_ingested for d in drops),
    }


def missing_drops(lake: Lake, ds: str) -> list[str]:
    """The day's landing files (``orders``, ``order_products``) that are not delivered yet, logged by name."""
    missing = [
        lake.display(lake.landing_file(table, ds))
        for table in ("orders", "order_products")
        if not lake.exists(lake.landing_file(table, ds))
    ]
    if missing:
        log.info("ds=%s: waiting for landing drop(s) not delivered yet: %s", ds, ", ".join(missing))
    return missing
