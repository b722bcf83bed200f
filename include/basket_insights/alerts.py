"""Alerts: what a missed deadline of a daily run does.

The DAG's ``DeadlineAlert`` (Airflow 3's replacement for SLAs) calls :func:`deadline_missed` in the
triggerer when a run is still not done ``BASKET_DEADLINE_MINUTES`` after it was queued. It logs an
error naming the run and, when ``BASKET_ALERT_WEBHOOK`` is set, POSTs a JSON message to it (Slack,
Teams, Opsgenie and most pagers accept one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


def alert_message(dag_id: str, context: dict[str, Any] | None, deadline_minutes: int) -> dict[str, Any]:
    """The alert as JSON: which run, since when, and the rule it broke."""
    run = (context or {}).get("dag_run") or {}
    get = run.get if isinstance(run, dict) else (lambda key, default=None: getattr(run, key, default))
    logical_date = get("logical_date")
    run_id = get("dag_run_id") or get("run_id")  # the API model's name, then the ORM's
    return {
        "text": f"{dag_id}: run {run_id} is not done {deadline_minutes} min after it was queued",
        "dag_id": dag_id,
        "run_id": run_id,
        "ds": str(logical_date)[:10] if logical_date else None,
        "state": str(get("state")) if get("state") is not None else None,
        "deadline_minutes": deadline_minutes,
    }


def _post(url: str, message: dict[str, Any]) -> int:
    request = urllib.request.Request(url, data=json.dumps(message).encode(),
                                     headers={"content-type": "application/json"}, method="POST")  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


async def deadline_missed(dag_id: str, deadline_minutes: int, context: dict[str, Any] | None = None, **_: Any) -> None:
    """The deadline callback (runs in the triggerer): log the miss and notify the webhook."""
    message = alert_message(dag_id, context, deadline_minutes)
    log.error("DEADLINE MISSED: %s", message["text"])
    url = os.environ.get("BASKET_ALERT_WEBHOOK")
    if url:
        try:
            status = await asyncio.to_thread(_post, url, message)
            log.info("deadline alert sent to the webhook (HTTP %s)", status)
        except OSError as exc:
            log.error("deadline alert could not reach the webhook: %s", exc)
