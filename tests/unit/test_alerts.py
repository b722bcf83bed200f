"""The deadline alert's message and webhook, against a real local HTTP server."""

from __future__ import annotations

import asyncio

from basket_insights.alerts import alert_message, deadline_missed
from tests.conftest import start_webhook


def test_message_names_the_run_from_the_api_context() -> None:
    context = {"dag_run": {"dag_run_id": "scheduled__2026-11-26T00:00:00+00:00",
                           "logical_date": "2026-11-26T00:00:00Z", "state": "running"}}  # fmt: skip
    message = alert_message("basket_insights", context, 90)
    assert message["ds"] == "2026-11-26" and message["state"] == "running"
    assert (
        message["text"]
        == "basket_insights: run scheduled__2026-11-26T00:00:00+00:00 is not done 90 min after it was queued"
    )
    assert alert_message("basket_insights", None, 5)["run_id"] is None


def test_the_callback_posts_to_the_webhook(monkeypatch, caplog) -> None:
    server, received = start_webhook()
    try:
        monkeypatch.setenv("BASKET_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/alert")
        context = {"dag_run": {"dag_run_id": "manual__x", "logical_date": "2026-11-25T00:00:00Z", "state": "queued"}}
        asyncio.run(deadline_missed("basket_insights", 30, context=context))
    finally:
        server.shutdown()
    assert received == [alert_message("basket_insights", context, 30)]
    assert "DEADLINE MISSED" in caplog.text
    monkeypatch.setenv("BASKET_ALERT_WEBHOOK", "http://127.0.0.1:9/unreachable")
    asyncio.run(deadline_missed("basket_insights", 30, context=context))  # logged, never raised
    assert "could not reach the webhook" in caplog.text
