"""Airflow UI plugin: a "Basket Insights" entry showing the daily report, and a read API.

Served by the api-server under ``/basket-insights`` (see ``basket_insights.api``). Every route
requires an authenticated Airflow user allowed to read the ``basket_insights`` DAG: the same
check Airflow's own REST API makes, from the UI's session cookie or a Bearer token.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/basket-insights"


@cache
def _settings():
    from basket_insights.config import load_settings

    return load_settings()


@cache
def _lake():
    from basket_insights.lake import Lake

    return Lake(_settings().lake_url, conn_id=_settings().lake_conn_id)


def _warehouse():
    from airflow.sdk import Connection

    from basket_insights.publish import warehouse_for

    # Looked up per request, so an edited connection applies at once; its reads share a pool.
    return warehouse_for(_settings(), Connection.get, pooled=True)


def _app():
    from airflow.api_fastapi.core_api.security import requires_access_dag

    from basket_insights.api import create_app

    return create_app(_lake, _warehouse, requires_access_dag("GET", param_dag_id="basket_insights"))


class BasketInsightsPlugin(AirflowPlugin):
    name = "basket_insights"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": _app(), "url_prefix": URL_PREFIX, "name": "Basket Insights"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Basket Insights",
            "href": URL_PREFIX.lstrip("/") + "/report/latest",
            "destination": "nav",
            "url_route": "basket-insights",
            "category": "browse",
        }
    ]
