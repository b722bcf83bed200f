"""The UI plugin for real: a DAG run on the S3 lake, `airflow api-server` serving the plugin,
the API over HTTP with and without a token, and the report in a headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from basket_insights.lake import Lake
from basket_insights.report import PLOTS
from basket_insights.synth import generate
from tests.conftest import REPO, VENV_BIN, free_port, http_request, run_dag_test

pytestmark = pytest.mark.integration

END = "2026-04-30"
PASSWORD = "plugin-test-password"
ARTIFACTS = REPO / "test-artifacts"


def _healthy(url: str) -> bool:
    try:
        return http_request(url)[0] == 200
    except OSError:  # not listening yet
        return False


@pytest.fixture(scope="module")
def site(airflow_home: dict[str, str], seaweedfs: dict[str, str], tmp_path_factory) -> Iterator[dict]:
    """One DAG run for END on the S3 lake, published to a SQLite file, served by a real api-server."""
    folder = tmp_path_factory.mktemp("plugin")
    lake = Lake(f"s3://lake/{folder.name}", conn_id="lake_s3")
    generate(lake, users=250, days=10, end_date=END, seed=31)
    env = {
        "BASKET_LAKE_URL": lake.url,
        "BASKET_LAKE_CONN_ID": "lake_s3",
        "AIRFLOW_CONN_LAKE_S3": seaweedfs["AIRFLOW_CONN_LAKE_S3"],
        "BASKET_DB_PATH": str(folder / "warehouse.sqlite"),
        "BASKET_RULES_MIN_COUNT": "3",  # a small feed: enough rules to page through
    }
    code, log = run_dag_test(airflow_home, END, env)
    assert code == 0, log[-5000:]
    assert "publish ds=2026-04-30: committed" in log

    passwords = folder / "passwords.json"
    passwords.write_text(json.dumps({"analyst": PASSWORD}))
    port = free_port()
    server_env = {
        **airflow_home,
        **env,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "analyst:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }
    server_log = open(folder / "api-server.log", "w")
    server = subprocess.Popen(
        [str(VENV_BIN / "airflow"), "api-server", "--port", str(port), "--host", "127.0.0.1"],
        env=server_env, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while not _healthy(f"{base}/api/v2/monitor/health"):
        if server.poll() is not None or time.monotonic() > deadline:
            server_log.close()
            pytest.fail(f"api-server did not start: {(folder / 'api-server.log').read_text()[-3000:]}")
        time.sleep(1)
    status, body = http_request(f"{base}/auth/token", method="POST", body={"username": "analyst", "password": PASSWORD})
    assert status in (200, 201), body
    try:
        yield {"base": base, "plugin": f"{base}/basket-insights", "token": json.loads(body)["access_token"],
               "lake": lake, "secret": json.loads(seaweedfs["AIRFLOW_CONN_LAKE_S3"])["password"]}  # fmt: skip
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        server_log.close()


ROUTES = [
    f"report/ds={END}/index.html",
    "report/latest",
    f"plots/ds={END}/elbow.png",
    "api/dates",
    "api/users/1/recommendations",
    "api/users/1/segment",
    "api/products/24852/rules",
]


def test_anonymous_and_forged_requests_get_nothing(site: dict) -> None:
    for route in ROUTES:
        status, body = http_request(f"{site['plugin']}/{route}")
        assert status == 401, (route, status)
        assert b"Banana" not in body and b"<html" not in body
        status, body = http_request(f"{site['plugin']}/{route}", token="eyJhbGciOiJIUzUxMiJ9.e30.forged")
        assert status in (401, 403), (route, status)


def test_the_api_serves_what_was_published(site: dict) -> None:
    lake, plugin, token = site["lake"], site["plugin"], site["token"]
    status, body = http_request(f"{plugin}/api/dates", token)
    assert status == 200
    dates = json.loads(body)
    assert [d["ds"] for d in dates["published"]] == [END] and dates["reports"] == [END]

    recs = lake.read_table("gold", "recommendations", dates=[END]).to_pandas()
    user = int(recs["user_id"].iloc[0])
    status, body = http_request(f"{plugin}/api/users/{user}/recommendations", token)
    assert status == 200
    served = json.loads(body)
    assert served["ds"] == END
    expected = recs[recs["user_id"] == user].sort_values("rank")
    assert [r["product_id"] for r in served["recommendations"]] == expected["product_id"].tolist()
    status, body = http_request(f"{plugin}/api/users/{user}/segment?ds={END}", token)
    segments = lake.read_table("gold", "customer_segments", dates=[END]).to_pandas().set_index("user_id")
    assert status == 200 and json.loads(body)["segment_name"] == segments.loc[user, "segment_name"]

    rules = lake.read_table("gold", "association_rules", dates=[END]).to_pandas()
    assert len(rules) > 0
    product = int(rules["antecedents"].explode().value_counts().index[0])
    wanted = sorted(rules[rules["antecedents"].apply(lambda a: product in list(a))]["lift"].round(9), reverse=True)
    pages, offset = [], 0
    while offset is not None:  # walk the pages
        status, body = http_request(f"{plugin}/api/products/{product}/rules?limit=2&offset={offset}", token)
        assert status == 200
        page = json.loads(body)
        assert page["total"] == len(wanted) and len(page["rules"]) <= 2
        pages += page["rules"]
        offset = page["next_offset"]
    assert [round(r["lift"], 9) for r in pages] == wanted
    assert all(product in r["antecedents"] and r["antecedent_names"] for r in pages)

    status, body = http_request(f"{plugin}/plots/ds={END}/top_rules.png", token)
    assert status == 200 and body == lake.read_file("gold", "plots", END, "top_rules.png")


def test_unknown_and_invalid_inputs_get_clear_errors(site: dict) -> None:
    plugin, token = site["plugin"], site["token"]
    cases = {
        "api/users/987654321/recommendations": (404, "user 987654321 has no recommendations on 2026-04-30"),
        "api/users/1/segment?ds=2020-01-01": (404, "ds=2020-01-01 is not published"),
        "api/users/abc/segment": (422, "valid integer"),
        "api/users/-5/segment": (422, "greater than or equal to 1"),
        "api/products/1/rules?limit=100000": (422, "less than or equal to 500"),
        "report/ds=2020-01-01/index.html": (404, "no report for ds=2020-01-01"),
        f"plots/ds={END}/nope.png": (404, "no plot 'nope.png'"),
    }
    for route, (code, message) in cases.items():
        status, body = http_request(f"{plugin}/{route}", token)
        assert status == code and message in body.decode(), (route, status, body[:300])


def test_no_request_reaches_outside_the_lake_or_leaks_its_credentials(site: dict) -> None:
    plugin, token, lake = site["plugin"], site["token"], site["lake"]
    attempts = [
        "report/ds=..%2F..%2Fbronze/index.html",
        f"report/ds={END}%2F..%2F..%2F..%2Fbronze/index.html",
        "report/ds=%2e%2e%2f%2e%2e%2fetc/index.html",
        f"plots/ds={END}/..%2F..%2F..%2Fbronze%2Forders%2F_SUCCESS",
        f"plots/ds={END}/%2Fetc%2Fpasswd",
        f"plots/ds={END}/_SUCCESS",
        f"plots/ds={END}/..%2Fplots.png",
        "plots/ds=/etc/passwd",
        "api/users/1/segment?ds=..%2F..%2Fx",
        "api/users/1%2F..%2F2/segment",
        "report/ds=2026-04-30/..%5C..%5Cindex.html",
    ]
    for route in attempts:
        status, body = http_request(f"{plugin}/{route}", token)
        assert status in (404, 422), (route, status)
        assert b"root:" not in body and b"user_id" not in body[:0] and b"\x89PNG" not in body, route
    leaks = [site["secret"].encode(), b"basket-test", lake.url.encode(), b"endpoint_url"]
    for route in [*ROUTES, *attempts]:
        _, body = http_request(f"{plugin}/{route}", token)
        for secret in leaks:
            assert secret not in body, (route, secret)


def _chromium():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_report_renders_in_chromium_through_the_plugin(site: dict) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    browser = _chromium()
    try:
        browser.get(f"{site['plugin']}/report/latest")  # no session yet
        assert "Not authenticated" in browser.page_source and "<img" not in browser.page_source
        # The session the UI's login leaves: Airflow's JWT in the `_token` cookie.
        browser.add_cookie({"name": "_token", "value": site["token"], "path": "/"})
        browser.get(f"{site['plugin']}/report/latest")
        assert browser.current_url.endswith(f"/basket-insights/report/ds={END}/index.html")
        assert browser.title == f"Basket Insights — {END}"
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) == len(PLOTS)
        for alt, complete, width, height in images:
            assert complete and width > 0 and height > 0, alt
        headline = browser.find_element(By.ID, "headline").text
        # the recommender beside each baseline it must beat
        for method in ("recommender", "popularity by buyers", "popularity by lines", "segment popularity"):
            assert f"hit rate at 10: {method}" in headline
        browser.save_screenshot(str(ARTIFACTS / "report.png"))

        # The "Basket Insights" entry inside the Airflow UI shows the same report.
        browser.get(f"{site['base']}/plugin/basket-insights")
        frames = (
            "return Array.from(document.querySelectorAll('iframe')).map(f => f.contentDocument && "
            "[f.contentDocument.title, Array.from(f.contentDocument.images).every(i => i.naturalWidth > 0)])"
        )
        title = f"Basket Insights — {END}"
        WebDriverWait(browser, 60).until(lambda b: [title, True] in b.execute_script(frames))
        assert "Basket Insights" in browser.page_source  # the menu entry
        browser.save_screenshot(str(ARTIFACTS / "plugin.png"))
    finally:
        browser.quit()
    assert Path(ARTIFACTS / "report.png").stat().st_size > 10_000
