"""The read API and report pages the Airflow UI plugin serves (a FastAPI app).

Routes, relative to where the app is mounted (``/basket-insights`` in the plugin):

* ``GET report/latest`` → redirect to the newest committed report;
  ``GET report/ds=YYYY-MM-DD/index.html`` the day's report from the lake;
  ``GET plots/ds=YYYY-MM-DD/<name>.png`` one plot.
* ``GET api/dates``: published dates (SQL) and dates with a report (lake).
* ``GET api/users/{user_id}/recommendations?ds=``, ``GET api/users/{user_id}/segment?ds=``,
  ``GET api/users/{user_id}/buy-again?ds=`` (the chosen products, the chance of no reorder, ``None``).
* ``GET api/products/{product_id}/rules?ds=&limit=&offset=``: rules whose antecedent contains
  the product, by lift, paginated.

``ds`` defaults to the newest published date. Every route depends on ``auth``, which the plugin
sets to Airflow's own check (the JWT of the UI's cookie or an ``Authorization: Bearer`` header),
so anonymous callers get 401. Inputs are typed and validated (integer ids, ISO dates, plot names
from the partition's manifest), so no request can name a path outside the lake; errors say what
was not found without revealing the lake's location or credentials. An unreachable database answers
503 with ``Retry-After`` (the cause is logged, not returned).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from basket_insights.lake import Lake, check_ds
from basket_insights.publish import (
    Warehouse,
    WarehouseUnavailable,
    published_dates,
    rules_with_antecedent,
    user_buy_again,
    user_recommendations,
    user_segment,
)

log = logging.getLogger(__name__)

_PLOT_NAME = re.compile(r"^[a-z0-9_]{1,64}\.png$")
#: Ids are positive and fit the databases' BIGINT.
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
IsoDate = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD; newest by default")]


def _valid_ds(ds: str) -> str:
    try:
        return check_ds(ds)
    except ValueError:
        raise HTTPException(status_code=404, detail=f"no such date {ds[:20]!r}: dates are YYYY-MM-DD") from None


def create_app(
    lake: Callable[[], Lake],
    warehouse: Callable[[], Warehouse],
    auth: Callable[..., Any],
) -> FastAPI:
    """The app. ``lake`` and ``warehouse`` build the stores on demand (after Airflow's settings load);
    ``auth`` is a FastAPI dependency run before every route."""
    app = FastAPI(
        title="Basket Insights",
        description="Daily report, recommendations, segments and rules of the basket_insights DAG.",
        dependencies=[Depends(auth)],
    )

    @app.exception_handler(WarehouseUnavailable)
    def warehouse_unavailable(request: Request, exc: WarehouseUnavailable) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)  # the detail stays in the server's log
        return JSONResponse(
            {"detail": "the published tables' database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "30"},
        )

    def published(ds: str | None) -> str:
        dates = [row["ds"] for row in published_dates(warehouse())]
        if not dates:
            raise HTTPException(status_code=404, detail="nothing is published yet: run the basket_insights DAG")
        if ds is None:
            return dates[0]
        if _valid_ds(ds) not in dates:
            raise HTTPException(status_code=404, detail=f"ds={ds} is not published; published dates: GET api/dates")
        return ds

    def committed(table: str, ds: str) -> Lake:
        store = lake()
        if store.manifest("gold", table, ds) is None:
            raise HTTPException(status_code=404, detail=f"no {table} for ds={ds}: that date has not run (yet)")
        return store

    @app.get("/report/latest", include_in_schema=False)
    def latest_report() -> RedirectResponse:
        dates = lake().partitions("gold", "report")
        if not dates:
            raise HTTPException(status_code=404, detail="no report yet: run the basket_insights DAG")
        return RedirectResponse(f"ds={dates[-1]}/index.html", status_code=307)

    @app.get("/report/ds={ds}/index.html", response_class=HTMLResponse)
    def report(ds: str) -> HTMLResponse:
        ds = _valid_ds(ds)
        html = committed("report", ds).read_file("gold", "report", ds, "index.html")
        return HTMLResponse(html, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/plots/ds={ds}/{name}", responses={200: {"content": {"image/png": {}}}})
    def plot(ds: str, name: str) -> Response:
        ds = _valid_ds(ds)
        store = committed("plots", ds)
        manifest = store.manifest("gold", "plots", ds)
        if not _PLOT_NAME.match(name) or manifest is None or name not in manifest.files:
            raise HTTPException(status_code=404, detail=f"no plot {name[:70]!r} for ds={ds}")
        data = store.read_file("gold", "plots", ds, name)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/dates")
    def dates() -> dict:
        return {"published": published_dates(warehouse()), "reports": lake().partitions("gold", "report")[::-1]}

    @app.get("/api/users/{user_id}/recommendations")
    def recommendations(user_id: Id, ds: IsoDate = None) -> dict:
        day = published(ds)
        rows = user_recommendations(warehouse(), day, user_id)
        if not rows:
            raise HTTPException(status_code=404, detail=f"user {user_id} has no recommendations on {day}")
        return {"ds": day, "user_id": user_id, "recommendations": rows}

    @app.get("/api/users/{user_id}/buy-again")
    def buy_again(user_id: Id, ds: IsoDate = None) -> dict:
        day = published(ds)
        found = user_buy_again(warehouse(), day, user_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"user {user_id} has no buy-again predictions on {day}")
        return {"ds": day, "user_id": user_id, **found}

    @app.get("/api/users/{user_id}/segment")
    def segment(user_id: Id, ds: IsoDate = None) -> dict:
        day = published(ds)
        row = user_segment(warehouse(), day, user_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"user {user_id} has no segment on {day}")
        return row

    @app.get("/api/products/{product_id}/rules")
    def rules(
        product_id: Id,
        ds: IsoDate = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> dict:
        day = published(ds)
        total, page = rules_with_antecedent(warehouse(), day, product_id, limit, offset)
        return {
            "ds": day,
            "product_id": product_id,
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None,
            "rules": page,
        }

    return app
