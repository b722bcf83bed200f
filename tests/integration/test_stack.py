"""End to end on the production topology, started natively (`stack up`): PostgreSQL metadata,
CeleryExecutor on Redis, SeaweedFS S3 lake, api-server, scheduler, dag-processor, triggerer and a
worker. The scheduler catches up 3 days, a REST backfill runs 3 earlier days, a cleared date re-runs
with identical outputs; every date is in the lake, in SQL and in the plugin API; task logs are
readable through the REST API and show progress."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from basket_insights.lake import Lake
from basket_insights.synth import generate
from tests.conftest import PG_ADMIN, free_port, http_request, start_webhook

pytestmark = pytest.mark.integration

TODAY = date.today()
SCHEDULED = [(TODAY - timedelta(days=d)).isoformat() for d in (2, 1, 0)]
BACKFILLED = [(TODAY - timedelta(days=d)).isoformat() for d in (5, 4, 3)]
DAG = "basket_insights"


class Api:
    """The Airflow REST API with a JWT, as a client script would use it."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base
        self.token = self.call("POST", "/auth/token", {"username": user, "password": password})["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, raw: bool = False):
        status, payload = http_request(self.base + path, getattr(self, "token", None), method, body)
        if status >= 400:
            raise AssertionError(f"{method} {path}: {status} {payload[:1000]!r}")
        return payload.decode() if raw else json.loads(payload)

    def runs(self) -> dict[str, dict]:
        runs = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns?limit=100")["dag_runs"]
        return {r["logical_date"][:10]: r for r in runs}

    def wait_for_success(self, dates: list[str], timeout: float, stack_logs) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs()
            states = {d: runs.get(d, {}).get("state") for d in dates}
            failed = [d for d, s in states.items() if s == "failed"]
            if failed:
                pytest.fail(f"runs failed: {failed}; {self.failed_tasks(runs[failed[0]]['dag_run_id'])}")
            if all(s == "success" for s in states.values()):
                return runs
            if time.monotonic() > deadline:
                pytest.fail(f"runs not done after {timeout:.0f} s: {states} (logs: {stack_logs})")
            time.sleep(5)

    def failed_tasks(self, run_id: str) -> list:
        tis = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return [(t["task_id"], t["state"]) for t in tis if t["state"] not in ("success", "skipped")]

    def task(self, run_id: str, task_id: str) -> dict:
        return self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}")

    def wait_for_run(self, run_id: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}")["state"]
            if state in states:
                return state
            assert time.monotonic() < deadline, f"{run_id} is still {state} after {timeout:.0f} s"
            time.sleep(3)

    def clear(self, run_id: str, task_ids: list[str] | None = None, only_failed: bool = False) -> None:
        body = {"dag_run_id": run_id, "only_failed": only_failed, "reset_dag_runs": True, "dry_run": False,
                "include_downstream": True}  # fmt: skip
        if task_ids:
            body["task_ids"] = task_ids
        self.call("POST", f"/api/v2/dags/{DAG}/clearTaskInstances", body)

    def log(self, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        path = (f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
                f"?full_content=true&map_index={map_index}")  # fmt: skip
        content = self.call("GET", path)["content"]
        lines = []
        for entry in content:
            if not isinstance(entry, dict):
                lines.append(str(entry))
                continue
            lines.append(str(entry.get("event", "")))
            if "error_detail" in entry:  # a failure: the exception's type and message, as the UI shows them
                lines.append(json.dumps(entry["error_detail"]))
        return "\n".join(lines)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    psycopg = pytest.importorskip("psycopg")
    import redis

    try:
        psycopg.connect(PG_ADMIN, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN!r}: {exc}")
    redis_url = "redis://127.0.0.1:6379/11"
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {redis_url}: {exc}")
    from basket_insights.stack import NativeStack, seaweed_ports, stack_down, stack_up

    redis.Redis.from_url(redis_url).flushdb()
    native = NativeStack(
        tmp_path_factory.mktemp("stack"), api_port=free_port(), s3_port=seaweed_ports(["s3"])["s3"],
        pg=PG_ADMIN.replace(" dbname=postgres", ""), redis_url=redis_url, name=f"e2e_{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    webhook, alerts = start_webhook()
    settings = {
        "BASKET_DEADLINE_MINUTES": "1",
        "BASKET_ALERT_WEBHOOK": f"http://127.0.0.1:{webhook.server_port}/alert",
        "BASKET_RETRY_DELAY": "2",
        # a killed worker's task is noticed within 30 s (default 5 min)
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "BASKET_START_DATE": SCHEDULED[0],
        "BASKET_CATCHUP": "true",
        "BASKET_DROP_POKE_INTERVAL": "5",
        "BASKET_MAX_ACTIVE_RUNS": "2",
        "BASKET_RECOMMEND_SHARDS": "2",
        "BASKET_RULES_MIN_COUNT": "3",
    }
    try:
        info = stack_up(native, extra_env=settings)
        values = json.loads((native.folder / "secrets.json").read_text())
        conn = {"conn_type": "aws", "login": values["s3_access_key"], "password": values["s3_secret_key"],
                "extra": {"endpoint_url": f"http://127.0.0.1:{native.s3_port}"}}  # fmt: skip
        os.environ["AIRFLOW_CONN_STACK_LAKE"] = json.dumps(conn)
        lake = Lake("s3://lake", conn_id="stack_lake")
        generate(lake, users=150, days=14, end_date=SCHEDULED[-1], seed=41)
        api = Api(info["ui"], "admin", info["password"])
        yield {"api": api, "lake": lake, "native": native, "warehouse": native.pg_uri(f"{native.name}_warehouse"),
               "alerts": alerts}  # fmt: skip
    finally:
        webhook.shutdown()
        stack_down(native)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            for suffix in ("airflow", "warehouse"):
                admin.execute(f"DROP DATABASE IF EXISTS {native.name}_{suffix} WITH (FORCE)")
        redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="module")
def all_runs(stack: dict) -> dict[str, dict]:
    """Catch-up of the last 3 days by the scheduler, then a REST backfill of the 3 days before."""
    api = stack["api"]
    api.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})
    runs = api.wait_for_success(SCHEDULED, 900, stack["native"].logs)
    assert {runs[d]["run_type"] for d in SCHEDULED} == {"scheduled"}
    backfill = api.call(
        "POST",
        "/api/v2/backfills",
        {"dag_id": DAG, "from_date": f"{BACKFILLED[0]}T00:00:00Z", "to_date": f"{BACKFILLED[-1]}T00:00:00Z",
         "max_active_runs": 2, "reprocess_behavior": "none", "dag_run_conf": {}},
    )  # fmt: skip
    assert backfill["dag_id"] == DAG
    runs = api.wait_for_success(BACKFILLED + SCHEDULED, 900, stack["native"].logs)
    assert {runs[d]["run_type"] for d in BACKFILLED} == {"backfill"}
    spans = sorted((runs[d]["start_date"], runs[d]["end_date"]) for d in BACKFILLED)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), f"no two backfilled dates overlapped: {spans}"
    return runs


def test_every_date_is_in_the_lake_in_sql_and_in_the_plugin(stack: dict, all_runs: dict) -> None:
    import psycopg

    lake, api = stack["lake"], stack["api"]
    dates = sorted(BACKFILLED + SCHEDULED)
    for table in ("recommendations", "customer_segments", "association_rules", "evaluation", "report", "plots"):
        assert [d for d in dates if lake.manifest("gold", table, d) is None] == [], table
    with psycopg.connect(stack["warehouse"]) as conn:
        published = [r[0].isoformat() for r in conn.execute("SELECT ds FROM published_dates ORDER BY ds")]
        per_date = dict(conn.execute("SELECT ds::text, COUNT(*) FROM recommendations GROUP BY ds").fetchall())
    assert published == dates
    for ds in dates:
        assert per_date[ds] == lake.manifest("gold", "recommendations", ds).rows
    served = api.call("GET", "/basket-insights/api/dates")
    assert [d["ds"] for d in served["published"]] == dates[::-1]
    user = lake.read_table("gold", "recommendations", dates=[dates[0]], columns=["user_id"]).column(0)[0].as_py()
    recs = api.call("GET", f"/basket-insights/api/users/{user}/recommendations?ds={dates[0]}")
    assert len(recs["recommendations"]) == 10


def test_dates_run_at_once_do_not_ingest_the_same_drops_twice(stack: dict, all_runs: dict) -> None:
    """The catch-up ran two dates at a time into a lake holding 14 days of landing drops, none ingested.
    Each table's ingest takes turns across runs, so the run that comes second finds the earlier
    drops already committed instead of parsing and validating them all again."""
    api = stack["api"]
    delivered = len(stack["lake"].landing_dates("orders"))
    for task_id in ("ingest_orders", "ingest_order_products"):
        spans, ingested = [], 0
        for ds in SCHEDULED:
            run_id = all_runs[ds]["dag_run_id"]
            ti = api.task(run_id, task_id)
            spans.append((ti["start_date"], ti["end_date"]))
            path = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
            ingested += api.call("GET", path + "?deserialize=true")["value"]["drops"]
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), f"{task_id} ran twice at once: {spans}"
        # every drop once, plus at most a run's own date again when a later date's run went first
        assert delivered <= ingested <= delivered + len(SCHEDULED) - 1, (task_id, ingested, delivered)


def test_task_logs_are_readable_and_show_progress(stack: dict, all_runs: dict) -> None:
    api = stack["api"]
    for ds in (SCHEDULED[-1], BACKFILLED[0]):
        run_id = all_runs[ds]["dag_run_id"]
        ingest = api.log(run_id, "ingest_order_products")
        assert "rows in =" in ingest and "quarantined" in ingest
        # the Celery worker imported GX before forking (basket_insights.preload): no task pays its import
        assert "Great Expectations already imported in this process" in ingest
        # every step that reads the history ran its 8 user shards on the Dask workers, each logged as it finished
        for task_id in ("build_features", "mine_rules", "fit_recommender", "evaluate", "predict_reorders"):
            log = api.log(run_id, task_id)
            assert "8 shards submitted to the Dask scheduler at tcp://127.0.0.1:" in log, task_id
            assert "8/8 shards done (" in log, task_id
        mine = api.log(run_id, "mine_rules")
        assert "frequent itemsets of" in mine and "counted over 8 user shards" in mine
    # the Dask dashboard `make stack` prints answers with its page
    dashboard = json.loads((stack["native"].folder / "state.json").read_text())["dask_dashboard"]
    with urllib.request.urlopen(dashboard, timeout=30) as page:
        assert page.status == 200 and b"Dask" in page.read()
        shard = api.log(run_id, "recommend", map_index=1)
        # the second of two recommend tasks: the evidence of all 8 user shards, then its 4 to recommend
        assert "shard 2/2" in shard and "4 shards submitted to the Dask scheduler" in shard
        publish = api.log(run_id, "publish")
        assert f"publish ds={ds}: committed" in publish


def test_a_cleared_date_reruns_with_identical_outputs(stack: dict, all_runs: dict) -> None:
    api, lake = stack["api"], stack["lake"]
    ds = SCHEDULED[1]
    tables = ("recommendations", "customer_segments", "association_rules", "evaluation", "product_clusters")
    before = {t: lake.read_table("gold", t, dates=[ds]) for t in tables}
    first = lake.manifest("gold", "recommendations", ds).committed_at
    api.call("POST", f"/api/v2/dags/{DAG}/clearTaskInstances",
             {"dag_run_id": all_runs[ds]["dag_run_id"], "only_failed": False, "reset_dag_runs": True,
              "dry_run": False, "include_downstream": True})  # fmt: skip
    deadline = time.monotonic() + 600
    while lake.manifest("gold", "recommendations", ds).committed_at == first or api.runs()[ds]["state"] != "success":
        assert time.monotonic() < deadline, f"the cleared run did not finish: {api.runs()[ds]['state']}"
        time.sleep(5)
    for table in tables:
        after = lake.read_table("gold", table, dates=[ds])
        assert after.equals(before[table]), f"{table} differs after the re-run"


def test_a_backfill_from_the_airflow_ui_in_chromium(stack: dict, all_runs: dict) -> None:
    """The way our users backfill: log in, open the DAG, Trigger ▸ Backfill, pick the dates, Run Backfill."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_plugin import ARTIFACTS, _chromium

    api, lake = stack["api"], stack["lake"]
    ds = (TODAY - timedelta(days=6)).isoformat()
    password = json.loads((stack["native"].folder / "secrets.json").read_text())["admin_password"]
    browser = _chromium()
    # React re-renders popovers and buttons while we look: an element gone stale means "look again".
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))

    def button(text: str):
        return wait.until(lambda b: next((e for e in b.find_elements(By.TAG_NAME, "button")
                                          if e.text.strip() == text and e.is_displayed()), None))  # fmt: skip

    def pick(label: str) -> str:
        field = next(e for e in browser.find_elements(By.TAG_NAME, "label") if e.text == label)
        field = field.find_element(By.XPATH, "./..")
        field.find_element(By.CSS_SELECTOR, "[data-testid=datetime-input]").click()

        def open_popover(b):
            shown = [
                p
                for p in b.find_elements(By.CSS_SELECTOR, "[data-scope=popover][data-part=content]")
                if p.is_displayed()
            ]
            return next((p for p in shown if len(p.find_elements(By.TAG_NAME, "input")) >= 2), None)

        day, hour = wait.until(open_popover).find_elements(By.TAG_NAME, "input")[:2]
        for box, text in ((day, ds.replace("-", "/")), (hour, "00:00")):
            box.click()
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(text)
        hour.send_keys(Keys.ENTER)
        wait.until(lambda b: "Select date and time" not in field.text)
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        wait.until(lambda b: open_popover(b) is None)
        return field.text

    try:
        browser.get(f"{api.base}/")
        wait.until(lambda b: b.find_elements(By.NAME, "username"))
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(password)
        button("Sign in").click()
        wait.until(lambda b: "/auth/login" not in b.current_url)
        browser.get(f"{api.base}/dags/{DAG}")
        button("Trigger").click()
        wait.until(lambda b: any(e.text.startswith("Backfill") for e in b.find_elements(By.TAG_NAME, "label")))
        next(e for e in browser.find_elements(By.TAG_NAME, "label") if e.text.startswith("Backfill")).click()
        picked = date.fromisoformat(ds)
        for label in ("From", "To"):
            shown = pick(label)  # e.g. "From\nNov 21, 2026 00:00"
            assert re.search(rf"{picked:%b} 0?{picked.day}, {picked.year} 00:00", shown), shown
        wait.until(lambda b: "1 run will be triggered." in b.page_source)
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "ui-backfill.png"))
        button("Run Backfill").click()
        wait.until(lambda b: ds in api.runs())
    finally:
        browser.quit()
    runs = api.wait_for_success([ds], 600, stack["native"].logs)
    assert runs[ds]["run_type"] == "backfill"
    assert lake.manifest("gold", "recommendations", ds) is not None
    served = api.call("GET", "/basket-insights/api/dates")
    assert ds in [d["ds"] for d in served["published"]]


GOLD = ("recommendations", "customer_segments", "association_rules", "evaluation", "product_clusters")


def _gold(lake: Lake, ds: str) -> dict:
    return {t: lake.read_table("gold", t, dates=[ds]) for t in GOLD}


def _assert_same_gold(lake: Lake, ds: str, before: dict) -> None:
    for table, data in _gold(lake, ds).items():
        assert data.equals(before[table]), f"{table} of {ds} differs from the undisturbed run"


def test_a_deadline_alert_fires_for_a_late_run(stack: dict, all_runs: dict) -> None:
    """A run waiting for a drop that never comes is late after BASKET_DEADLINE_MINUTES (1 here)."""
    api = stack["api"]
    # No drop will arrive for it, and the scheduler never makes a run of its own for it: two days ahead
    # of now (not of TODAY, read when the module loaded: a suite that crosses midnight has its own run
    # of the next day scheduled by then).
    late = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
    run = api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": f"{late}T00:00:00Z", "conf": {}})
    try:
        deadline = time.monotonic() + 240
        while not any(a["run_id"] == run["dag_run_id"] for a in stack["alerts"]):
            assert time.monotonic() < deadline, f"no alert for {run['dag_run_id']}: {stack['alerts']}"
            time.sleep(3)
        alert = next(a for a in stack["alerts"] if a["run_id"] == run["dag_run_id"])
        assert alert["ds"] == late and "not done 1 min after it was queued" in alert["text"]
        assert "DEADLINE MISSED" in (stack["native"].logs / "triggerer.log").read_text()
    finally:
        api.call("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}", {"state": "failed"})


def test_a_corrupt_drop_above_the_threshold_fails_the_run_and_publishes_nothing(stack: dict, all_runs: dict) -> None:
    import psycopg

    api, lake = stack["api"], stack["lake"]
    ds = (TODAY - timedelta(days=9)).isoformat()
    drop = lake.landing_file("orders", ds)
    original = lake.fs.cat_file(drop.path)
    header, *rows = original.decode().splitlines()
    bad = [",".join([*r.split(",")[:4], "9", *r.split(",")[5:]]) if i % 3 == 0 else r for i, r in enumerate(rows)]
    lake.put_landing("orders", ds, ("\n".join([header, *bad]) + "\n").encode())
    try:
        # A backfill: a manual run before the DAG's start date would run no task at all.
        day = f"{ds}T00:00:00Z"
        body = {"dag_id": DAG, "from_date": day, "to_date": day, "max_active_runs": 1, "reprocess_behavior": "none",
                "dag_run_conf": {}}  # fmt: skip
        api.call("POST", "/api/v2/backfills", body)
        deadline = time.monotonic() + 120
        while ds not in api.runs():
            assert time.monotonic() < deadline, "the backfill created no run"
            time.sleep(2)
        run = api.runs()[ds]
        assert api.wait_for_run(run["dag_run_id"], {"failed", "success"}, 420) == "failed"
        ingest = api.task(run["dag_run_id"], "ingest_orders")
        assert ingest["state"] == "failed"
        log = api.log(run["dag_run_id"], "ingest_orders", try_number=ingest["try_number"])
        assert f"landing/orders/ds={ds}/orders.csv" in log and "rows are bad" in log and "order_dow" in log
        assert api.task(run["dag_run_id"], "publish")["state"] == "upstream_failed"
        assert lake.manifest("quarantine", "orders", ds).rows == len(rows[::3])
        assert lake.manifest("gold", "recommendations", ds) is None
        with psycopg.connect(stack["warehouse"]) as conn:
            assert conn.execute("SELECT COUNT(*) FROM published_dates WHERE ds = %s", (ds,)).fetchone()[0] == 0
    finally:
        lake.put_landing("orders", ds, original)


def test_seaweedfs_stopped_mid_run_fails_naming_the_lake_then_recovers(stack: dict, all_runs: dict) -> None:
    from basket_insights.stack import start_component, stop_component

    api, lake, native = stack["api"], stack["lake"], stack["native"]
    ds = SCHEDULED[1]
    run_id = all_runs[ds]["dag_run_id"]
    before = _gold(lake, ds)
    api.clear(run_id, ["build_features"])
    deadline = time.monotonic() + 120
    while api.task(run_id, "build_features")["state"] not in ("running", "success"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    stop_component(native, "seaweedfs")
    try:
        assert api.wait_for_run(run_id, {"failed", "success"}, 420) == "failed"
        failed = [t for t in api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
                  if t["state"] == "failed"]  # fmt: skip
        assert failed, "a task should have failed while the lake was down"
        task = failed[0]
        assert task["try_number"] >= 3  # retried (twice) before failing
        log = api.log(run_id, task["task_id"], try_number=task["try_number"], map_index=task["map_index"])
        assert "s3://lake" in log and ("could not" in log or "LakeError" in log)
    finally:
        start_component(native, "seaweedfs")
    api.clear(run_id, only_failed=True)
    assert api.wait_for_run(run_id, {"failed", "success"}, 600) == "success"
    _assert_same_gold(lake, ds, before)


def test_a_worker_killed_mid_mine_rules_is_retried_with_identical_outputs(stack: dict, all_runs: dict) -> None:
    from basket_insights.stack import start_component, stop_component

    api, lake, native = stack["api"], stack["lake"], stack["native"]
    ds = SCHEDULED[-1]
    run_id = all_runs[ds]["dag_run_id"]
    before = _gold(lake, ds)
    api.clear(run_id, ["mine_rules"])
    deadline = time.monotonic() + 120
    while api.task(run_id, "mine_rules")["state"] != "running":
        assert time.monotonic() < deadline, api.task(run_id, "mine_rules")["state"]
        time.sleep(0.1)
    stop_component(native, "celery-worker", signal.SIGKILL)
    killed_try = api.task(run_id, "mine_rules")["try_number"]
    start_component(native, "celery-worker")
    assert api.wait_for_run(run_id, {"failed", "success"}, 600) == "success"
    assert api.task(run_id, "mine_rules")["try_number"] > killed_try
    _assert_same_gold(lake, ds, before)
