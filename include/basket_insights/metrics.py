"""Per-task measurements: wall and CPU seconds, peak memory, rows in and out.

The DAG runs :func:`task_started` and :func:`task_finished` as every task's execute and success
callbacks (in the task's own process). The finish logs one line to the task log —
``task metrics: 12.3 s wall, 20.1 s CPU, peak 1,234 MB, rows 37,000,000 -> 206,209`` — and, when
``BASKET_METRICS_FILE`` is set (the benchmark harness sets it), appends the same as a JSON line.
Rows come from the ``rows_in``/``rows_out`` keys of the task's returned summary.

Peak memory is the process's high-water mark (``VmHWM``), reset when the task starts so a task
that runs in a long-lived process still reports its own peak.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from typing import Any

log = logging.getLogger(__name__)

_started: dict[tuple[str, int], tuple[float, float]] = {}


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        pass


def peak_rss_mb() -> float:
    """The process's peak resident memory in MB since the last reset (``VmHWM``, else ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _key(context: dict[str, Any]) -> tuple[str, int]:
    ti = context["ti"]
    return ti.task_id, getattr(ti, "map_index", -1)


def task_started(context: dict[str, Any]) -> None:
    """Execute callback: remember the clocks, reset the peak-memory mark."""
    _reset_peak()
    _started[_key(context)] = (time.perf_counter(), time.process_time())


def task_finished(context: dict[str, Any]) -> None:
    """Success callback: log the task's measurements (and append them to ``BASKET_METRICS_FILE``)."""
    key = _key(context)
    if key not in _started:
        return
    wall0, cpu0 = _started.pop(key)
    summary: Any = None
    try:
        summary = context["ti"].xcom_pull(task_ids=key[0], map_indexes=key[1])
    except Exception:  # noqa: BLE001 - measurements never fail a task
        summary = None
    summary = summary if isinstance(summary, dict) else {}
    record = {
        "task_id": key[0],
        "map_index": key[1],
        "seconds": round(time.perf_counter() - wall0, 3),
        "cpu_seconds": round(time.process_time() - cpu0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rows_in": summary.get("rows_in"),
        "rows_out": summary.get("rows_out"),
    }
    rows = f"rows {record['rows_in']:,} -> {record['rows_out']:,}" if record["rows_in"] is not None else "rows n/a"
    log.info("task metrics: %.1f s wall, %.1f s CPU, peak %s MB, %s", record["seconds"], record["cpu_seconds"],
             f"{record['peak_rss_mb']:,.0f}", rows)  # fmt: skip
    path = os.environ.get("BASKET_METRICS_FILE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
