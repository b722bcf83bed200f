"""Benchmarks: run pipeline steps on an existing lake, each in a fresh process, and report
wall seconds, CPU seconds and peak resident memory (median of several runs).

``python -m basket_insights bench tasks --lake URL --ds D [--runs 3] [--tasks a,b]``

Each run is a separate Python process, so peak RSS is the step's own (imports included) and
no cache survives between runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

#: step name -> Python statement run with ``lake`` and ``ds`` bound (settings from the environment).
STEPS: dict[str, str] = {
    # force: every landing drop up to ds again (a historical load), whatever bronze holds already
    **{
        step: f"from basket_insights.ingest import {step} as f; "
        "out = f(lake, ds, max_bad_fraction=settings.max_bad_row_fraction, force=True)"
        for step in ("ingest_catalog", "ingest_orders", "ingest_order_products")
    },
    # What any ingest of these CSVs costs on this machine: no validation, no quarantine, no results.
    "floor_parse": "from basket_insights.bench import ingest_floor as f; out = f(lake, ds, write=False)",
    "floor_parse_write": "from basket_insights.bench import ingest_floor as f; out = f(lake, ds, write=True)",
    "build_features": "from basket_insights.features import build_user_features as f; out = f(lake, ds)",
    "segment_customers": (
        "from basket_insights.segments import SegmentSettings, run_segment_customers as f; "
        "out = f(lake, ds, SegmentSettings.from_settings(settings))"
    ),
    "cluster_products": (
        "from basket_insights.products import ProductClusterSettings, run_cluster_products as f; "
        "out = f(lake, ds, ProductClusterSettings.from_settings(settings), force=True)"
    ),
    "link_preferences": (
        "from basket_insights.segments import SegmentSettings; "
        "from basket_insights.preferences import run_link_preferences as f; "
        "out = f(lake, ds, SegmentSettings.from_settings(settings))"
    ),
    "mine_rules": (
        "from basket_insights.rules import RuleSettings, run_mine_rules as f; "
        "out = f(lake, ds, RuleSettings.from_settings(settings))"
    ),
    "fit_recommender": (
        "from basket_insights.recommend import recommender_settings, run_fit_recommender as f; "
        "from basket_insights.rules import RuleSettings; "
        "from basket_insights.segments import SegmentSettings; "
        "out = f(lake, ds, RuleSettings.from_settings(settings), SegmentSettings.from_settings(settings), "
        "recommender_settings(settings))"
    ),
    "recommend": (
        "from basket_insights.recommend import recommender_settings, run_recommend as f; "
        "out = f(lake, ds, recommender_settings(settings), 0)"
    ),
    "evaluate": (
        "from basket_insights.recommend import recommender_settings, run_evaluate as f; "
        "from basket_insights.rules import RuleSettings; "
        "out = f(lake, ds, RuleSettings.from_settings(settings), recommender_settings(settings))"
    ),
}

_RUNNER = textwrap.dedent(
    """
    import json, resource, sys, time
    wall0, cpu0 = time.perf_counter(), time.process_time()
    from basket_insights.config import load_settings
    from basket_insights.lake import Lake
    settings = load_settings()
    lake = Lake(sys.argv[1], conn_id=settings.lake_conn_id)
    ds = sys.argv[2]
    {statement}
    print(json.dumps({{"seconds": time.perf_counter() - wall0, "cpu_seconds": time.process_time() - cpu0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "out": out}},
                     default=str))
    """
)


def run_step(step: str, lake_url: str, ds: str) -> dict[str, Any]:
    """Run one step in a fresh process; returns its timing, memory and summary."""
    code = _RUNNER.format(statement=STEPS[step])
    done = subprocess.run([sys.executable, "-c", code, lake_url, ds], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_tasks(lake_url: str, ds: str, steps: list[str], runs: int = 3) -> list[dict[str, Any]]:
    """Median wall/CPU seconds and peak RSS of each step over ``runs`` fresh-process runs."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    table = []
    for step in steps:
        results = [run_step(step, lake_url, ds) for _ in range(runs)]
        table.append(
            {
                "task_id": step,
                "runs": runs,
                "seconds": statistics.median(r["seconds"] for r in results),
                "cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
                "all_seconds": [round(r["seconds"], 2) for r in results],
                "summary": results[-1]["out"],
            }
        )
    return table


def ingest_floor(lake: Any, ds: str, *, write: bool) -> dict[str, Any]:
    """The floor under any ingest of the ``orders`` and ``order_products`` drops up to ``ds``.

    Reads and parses every drop with the ingest's own pyarrow reader (all cores) and, with ``write``,
    casts it to its bronze types and commits it as one partition per day into a scratch lake
    (``Lake.write_table``: parquet + manifest) on the ingest's write threads, while the next drops
    are parsed. No validation, quarantine or results: whatever the real ingest takes above this is
    what checking and recording cost.
    """
    import io
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.csv as pcsv

    from basket_insights.ingest import READ_TYPES, WRITE_THREADS
    from basket_insights.lake import Lake
    from basket_insights.validation import BRONZE_SCHEMAS, COLUMNS

    out: dict[str, Any] = {"rows": 0, "mb": 0.0}
    with (
        tempfile.TemporaryDirectory(prefix="ingest-floor-") as scratch,
        ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool,
    ):
        target = Lake(Path(scratch).as_uri())
        for table in ("orders", "order_products"):
            writes = []
            for day in lake.landing_dates(table, up_to=ds):
                data = lake.fs.cat_file(lake.landing_file(table, day).path)
                options = pcsv.ConvertOptions(column_types=READ_TYPES[table], include_columns=COLUMNS[table])
                rows = pcsv.read_csv(io.BytesIO(data), convert_options=options)
                if write:
                    bronze = rows.cast(BRONZE_SCHEMAS[table])
                    writes.append(pool.submit(target.write_table, "bronze", table, day, bronze))
                out["rows"] += rows.num_rows
                out["mb"] += len(data) / 2**20
            for done in writes:
                done.result()
    out["mb"] = round(out["mb"], 1)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`bench_tasks` rows."""
    lines = [
        "| task | median wall (s) | median CPU (s) | peak RSS (MB) | runs (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task_id']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{', '.join(f'{s:.1f}' for s in r['all_seconds'])} |"
        )
    return "\n".join(lines)


# -- frequent itemsets: ours against pyfim and mlxtend -----------------------------------------

RULE_TOOLS = ("ours", "pyfim_apriori", "pyfim_eclat", "pyfim_fpgrowth", "mlxtend_fpgrowth", "mlxtend_apriori")

_RULES_RUNNER = textwrap.dedent(
    """
    import json, os, resource, sys, threading, time
    import numpy as np
    tool, n_baskets, n_items, min_support, max_len, mem_limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    from basket_insights.rules import Baskets, frequent_itemsets, synthetic_workload
    work = synthetic_workload(n_baskets=n_baskets, n_items=n_items)
    threshold = max(int(np.ceil(min_support * n_baskets - 1e-9)), 1)
    # inputs each tool takes, built before the clock starts
    if tool.startswith("pyfim"):
        import fim
        flat = work.items.tolist()
        data = [flat[work.indptr[i]:work.indptr[i + 1]] for i in range(work.n_baskets)]
        del flat
    elif tool.startswith("mlxtend"):
        import pandas as pd, scipy.sparse as sp
        rows = np.repeat(np.arange(work.n_baskets), np.diff(work.indptr))
        matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, work.items)), shape=(work.n_baskets, n_items))
        data = pd.DataFrame.sparse.from_spmatrix(matrix)
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page
    base = peak = rss()
    running = True
    def sample():
        global peak
        while running:
            peak = max(peak, rss())
            time.sleep(0.005)
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.perf_counter()
    if tool == "ours":
        found = frequent_itemsets(work, min_support, max_len)
        result = [(tuple(sorted(s)), int(c)) for s, c in zip(found["itemsets"], found["count"])]
    elif tool.startswith("pyfim"):
        fn = getattr(fim, tool.split("_", 1)[1])
        result = [(tuple(sorted(s)), int(c)) for s, c in fn(data, supp=-threshold, zmax=max_len, report="a")]
    else:
        from mlxtend.frequent_patterns import apriori, fpgrowth
        fn = fpgrowth if tool == "mlxtend_fpgrowth" else apriori
        found = fn(data, min_support=min_support, max_len=max_len)
        result = [(tuple(sorted(int(i) for i in s)), int(round(v * n_baskets)))
                  for s, v in zip(found["itemsets"], found["support"])]
    seconds = time.perf_counter() - started
    running = False
    watcher.join()
    peak = max(peak, rss())
    print(json.dumps({"seconds": seconds, "peak_mb": (peak - base) / 2**20, "itemsets": sorted(result)}))
    """
)


def _run_rule_tool(tool: str, baskets: int, items: int, min_support: float, max_len: int, timeout: float,
                   mem_limit: int) -> dict[str, Any]:  # fmt: skip
    code = _RULES_RUNNER
    args = [str(a) for a in (tool, baskets, items, min_support, max_len, mem_limit)]
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": last[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_rules(
    baskets: int = 3_214_874,
    items: int = 49_677,
    min_support: float = 0.001,
    max_len: int = 3,
    runs: int = 3,
    timeout: float = 300.0,
    tools: tuple[str, ...] = RULE_TOOLS,
    mem_limit_gb: float = 16.0,
) -> list[dict[str, Any]]:
    """Time each tool on the same synthetic workload (fresh process per run; median seconds).

    Each row: ``tool, seconds, peak_mb, n_itemsets, agrees, error``. ``agrees`` compares the
    itemsets and their basket counts with ours. A tool that fails or times out once is not run again.
    """
    rows: list[dict[str, Any]] = []
    reference: list | None = None
    for tool in tools:
        results = []
        for _ in range(runs if tool == "ours" or not tool.startswith("mlxtend") else 1):
            result = _run_rule_tool(tool, baskets, items, min_support, max_len, timeout, int(mem_limit_gb * 2**30))
            results.append(result)
            if "error" in result:
                break
        ok = [r for r in results if "error" not in r]
        if not ok:
            rows.append({"tool": tool, "seconds": None, "peak_mb": None, "n_itemsets": None, "agrees": None,
                         "error": results[-1]["error"]})  # fmt: skip
            continue
        found = [tuple((tuple(s), c) for s, c in r["itemsets"]) for r in ok]
        if tool == "ours":
            reference = found[0]
        rows.append(
            {
                "tool": tool,
                "seconds": statistics.median(r["seconds"] for r in ok),
                "peak_mb": statistics.median(r["peak_mb"] for r in ok),
                "n_itemsets": len(found[0]),
                "agrees": reference is not None and found[0] == reference,
                "error": None,
                "runs": [round(r["seconds"], 2) for r in ok],
            }
        )
    return rows


def format_rules_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| tool | median s | peak MB | itemsets | agrees with ours | error |", "|---|---|---|---|---|---|"]
    for r in rows:
        secs = f"{r['seconds']:.2f}" if r["seconds"] is not None else "—"
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "—"
        lines.append(f"| {r['tool']} | {secs} | {peak} | {r['n_itemsets'] if r['n_itemsets'] is not None else '—'} | "
                     f"{'—' if r['agrees'] is None else r['agrees']} | {r['error'] or ''} |")  # fmt: skip
    return "\n".join(lines)


# -- publishing: PostgreSQL COPY and SQLite ------------------------------------------------------


def recommendation_workload(users: int) -> Any:
    """``users`` × 10 recommendation rows shaped like ``gold/recommendations`` (without ``ds``)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    n = users * 10
    names = pa.array([f"Organic Product {i}" for i in range(1000)])
    product = rng.integers(1, 49_689, n)
    return pa.table(
        {
            "user_id": np.repeat(np.arange(1, users + 1, dtype=np.int64), 10),
            "rank": np.tile(np.arange(1, 11, dtype=np.int16), users),
            "product_id": product.astype(np.int64),
            "product_name": names.take(pa.array(product % 1000)),
            "score": rng.random(n),
            "source": pa.array(np.where(rng.random(n) < 0.3, "rule", "segment_popular")),
            "reason": pa.array([f"bought Product {i} → Organic Product {i % 1000} (confidence 0.12, lift 2.0)"
                                for i in range(1000)]).take(pa.array(product % 1000)),
        }
    )  # fmt: skip


def bench_publish(targets: dict[str, Any], users: int = 200_000, runs: int = 3) -> list[dict[str, Any]]:
    """Median seconds to publish ``users`` × 10 recommendation rows to each warehouse (a re-publish of
    the same date each run after the first, so the delete of the previous rows is included)."""
    import time

    from basket_insights.publish import publish_tables

    table = recommendation_workload(users)
    rows = []
    for name, warehouse in targets.items():
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            publish_tables(warehouse, "2026-01-01", {"recommendations": table}, run_id="bench")
            seconds.append(time.perf_counter() - started)
        rows.append({"database": name, "rows": table.num_rows, "seconds": statistics.median(seconds),
                     "runs": [round(s, 2) for s in seconds]})  # fmt: skip
    return rows


def bench_api_reads(warehouse: Any, users: int = 20_000, requests: int = 300, runs: int = 5) -> list[dict[str, Any]]:
    """Milliseconds per ``GET api/users/{id}/recommendations``'s database work (the published dates,
    then the user's rows), each read on a new connection against reads sharing the pool
    (``Warehouse.pooled``), the two alternating run by run; medians over ``runs``.

    ``warehouse`` is a disposable PostgreSQL database: ``users`` × 10 rows are published to it first.
    """
    import random
    import time
    from dataclasses import replace

    from basket_insights.publish import close_read_pools, publish_tables, published_dates, user_recommendations

    publish_tables(warehouse, "2026-01-01", {"recommendations": recommendation_workload(users)}, run_id="bench")
    modes = {"a new connection per read": replace(warehouse, pooled=False), "pooled": replace(warehouse, pooled=True)}
    timings: dict[str, list[float]] = {name: [] for name in modes}
    rng = random.Random(0)
    try:
        for _ in range(runs):
            for name, target in modes.items():
                started = time.perf_counter()
                for _ in range(requests):
                    day = published_dates(target)[0]["ds"]
                    assert len(user_recommendations(target, day, rng.randint(1, users))) == 10
                timings[name].append((time.perf_counter() - started) / requests * 1000)
    finally:
        close_read_pools()
    return [{"reads": name, "ms_per_request": statistics.median(ms), "runs": [round(m, 2) for m in ms]}
            for name, ms in timings.items()]  # fmt: skip


# -- the whole daily run through Airflow, against the seed notebook's method ---------------------

#: The venv's ``airflow`` command (beside this interpreter).
AIRFLOW = Path(sys.executable).with_name("airflow")
#: The last date of the harness's cached feed (fixed, so the cache is reusable).
PIPELINE_END = "2026-06-30"
_DOCS_START, _DOCS_END = "<!-- bench-pipeline:start -->", "<!-- bench-pipeline:end -->"

_BASELINE = textwrap.dedent(
    """
    # The seed notebook's method, kept as the baseline: pandas features, KMeans on a 10% user sample,
    # a one-hot basket table and mlxtend apriori at support 0.01.
    import json, resource, sys, time
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.perf_counter()
    steps = {}
    try:
        import pandas as pd
        from basket_insights.lake import Lake
        lake = Lake(sys.argv[1])
        ds = sys.argv[2]
        orders = lake.read_table("bronze", "orders", up_to=ds).to_pandas()
        lines = lake.read_table("bronze", "order_products", up_to=ds).to_pandas()
        steps["read"] = time.perf_counter() - started
        merged = lines.merge(orders[["order_id", "user_id"]], on="order_id")
        basket = merged.groupby("order_id").size().rename("basket_size").reset_index()
        orders = orders.merge(basket, on="order_id", how="left")
        features = orders.groupby("user_id").agg(total_orders=("order_id", "count"),
            mean_days=("days_since_prior_order", "mean"), mean_basket=("basket_size", "mean"))
        features["reorder_ratio"] = merged.groupby("user_id")["reordered"].mean()
        features = features.fillna(0)
        steps["features"] = time.perf_counter() - started
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler
        sample = features.sample(frac=0.1, random_state=0)
        scaler = StandardScaler().fit(sample)
        model = KMeans(n_clusters=4, n_init=10, random_state=0).fit(scaler.transform(sample))
        features["segment"] = model.predict(scaler.transform(features))
        steps["kmeans"] = time.perf_counter() - started
        from mlxtend.frequent_patterns import apriori, association_rules
        onehot = pd.crosstab(merged["order_id"], merged["product_id"]).astype(bool)
        steps["onehot"] = time.perf_counter() - started
        itemsets = apriori(onehot, min_support=0.01, use_colnames=True)
        rules = association_rules(itemsets, metric="lift", min_threshold=1.0)
        steps["apriori"] = time.perf_counter() - started
        status = f"ok: {len(features)} users, {len(itemsets)} itemsets, {len(rules)} rules"
    except MemoryError:
        status = "MemoryError"
    print(json.dumps({"seconds": time.perf_counter() - started, "status": status, "steps": steps}))
    """
)


def run_baseline(lake_url: str, ds: str, timeout: float, memory_gb: float) -> dict[str, Any]:
    """The notebook method in a fresh process, capped at ``timeout`` seconds and ``memory_gb``."""
    import time

    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", _BASELINE, lake_url, ds, str(int(memory_gb * 2**30))],
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"seconds": timeout, "status": f"timed out after {timeout:.0f} s", "steps": {}}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"seconds": time.perf_counter() - started, "status": f"failed: {last[:200]}", "steps": {}}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _airflow_env(home: Any, lake_url: str, extra: dict[str, str]) -> dict[str, str]:

    from basket_insights.config import AIRFLOW_WORKER_SETTINGS, MALLOC_SETTINGS, REPO_ROOT

    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "BASKET_LAKE_URL": lake_url,
        "BASKET_DROP_POKE_INTERVAL": "1",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        **AIRFLOW_WORKER_SETTINGS,
        **MALLOC_SETTINGS,
        **extra,
    }


#: ``airflow`` with :mod:`basket_insights.preload` imported first: the LocalExecutor's workers fork from
#: this process and its tasks from them, so they start with the libraries, as under the deployments'
#: Celery workers (``basket_insights.celery_config``).
_PRELOADED_AIRFLOW = (
    "import sys, basket_insights.preload; from airflow.__main__ import main; sys.argv[0] = 'airflow'; main()"
)


def _dag_test(env: dict[str, str], ds: str, log_path: Any) -> float:
    """``airflow dags test --use-executor``: the LocalExecutor runs each task in its own process (as a
    Celery worker does), so each task's peak memory is its own; two tasks may run at once. The
    libraries are preloaded as the deployments' workers preload them (see ``_PRELOADED_AIRFLOW``)."""
    import time

    started = time.perf_counter()
    command = [sys.executable, "-c", _PRELOADED_AIRFLOW, "dags", "test", "--use-executor", "basket_insights", ds]
    with open(log_path, "w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    text = open(log_path).read()
    if done.returncode != 0 or "state=failed" in text:
        raise RuntimeError(f"airflow dags test {ds} failed (log {log_path}):\n{text[-3000:]}")
    return seconds


class _ApiServer:
    """An ``airflow api-server`` for the LocalExecutor's tasks (they report through its execution API)."""

    def __init__(self, env: dict[str, str], log_path: Any) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{self.port}/execution/"
        self.env, self.log_path = env, log_path

    def __enter__(self) -> _ApiServer:
        import time
        import urllib.request

        airflow = str(AIRFLOW)
        self.log = open(self.log_path, "w")
        command = [airflow, "api-server", "--port", str(self.port), "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the api-server did not start (log {self.log_path})") from None
                time.sleep(1)

    def __exit__(self, *exc: object) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


def _drop_date(lake_root: Any, ds: str) -> None:
    """Remove every partition of ``ds`` but the landing drops, so the day's work is done again."""
    import shutil

    for zone in ("bronze", "silver", "gold", "quarantine", "validation"):
        for folder in (lake_root / zone).glob(f"*/ds={ds}"):
            shutil.rmtree(folder)


def _unpublish_date(database: Path, ds: str) -> None:
    """Delete ``ds``'s rows from every published table of the SQLite ``database``, so that a re-run
    publishes the day into tables without it, as the first run did (no DELETE of the previous run's rows)."""
    import sqlite3

    from basket_insights.publish import PUBLISHED, TABLES

    if not database.exists():
        return
    conn = sqlite3.connect(database)
    try:
        with conn:
            present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for name in [*TABLES, PUBLISHED.name]:
                if name in present:
                    conn.execute(f"DELETE FROM {name} WHERE ds = ?", (ds,))
    finally:
        conn.close()


def bench_pipeline(
    users: int = 206_209,
    days: int = 365,
    seed: int = 1,
    cache: str = ".bench",
    baseline_timeout: float = 900.0,
    baseline_memory_gb: float = 16.0,
    user_shards: int = 1,
    dask_workers: int = 0,
) -> dict[str, Any]:
    """Generate (once, cached) a feed, load its history (run for the day before), then time the daily
    run of the last date through ``airflow dags test`` with per-task measurements, and the notebook
    method on the same data. See ``python -m basket_insights bench pipeline --help``.

    With ``user_shards`` > 1 the history is split into that many user shards before the daily run
    (timed apart: a deployment does it once), and the run's sharded steps read them; with
    ``dask_workers``, on a local Dask cluster of that many single-threaded worker processes, whose
    peak memory is reported too."""
    import tempfile
    import time
    from contextlib import ExitStack
    from datetime import date, timedelta

    from basket_insights.config import REPO_ROOT
    from basket_insights.lake import Lake

    root = Path(cache).resolve() / f"pipeline-{users}-{days}-{seed}"
    lake_root = root / "lake"
    lake_url = lake_root.as_uri()
    day_before = (date.fromisoformat(PIPELINE_END) - timedelta(days=1)).isoformat()
    result: dict[str, Any] = {"users": users, "days": days, "seed": seed, "ds": PIPELINE_END, "lake": lake_url}
    if not (root / "generated.json").exists():
        from basket_insights.synth import generate

        catalog = REPO_ROOT.parent / "shared" / "instacart"
        started = time.perf_counter()
        summary = generate(Lake(lake_url), users=users, days=days, end_date=PIPELINE_END, seed=seed,
                           catalog_dir=catalog if (catalog / "products.csv").exists() else None)  # fmt: skip
        summary["seconds"] = round(time.perf_counter() - started, 1)
        (root / "generated.json").write_text(json.dumps(summary, default=str))
    result["feed"] = json.loads((root / "generated.json").read_text())
    landing = sum(p.stat().st_size for p in (lake_root / "landing").rglob("*.csv"))
    result["landing_mb"] = round(landing / 2**20, 1)

    result |= {"user_shards": user_shards, "dask_workers": dask_workers}
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as home, ExitStack() as stack:
        sharding = {"BASKET_USER_SHARDS": str(user_shards)}
        client = None
        if dask_workers:
            from distributed import Client, LocalCluster

            cluster = stack.enter_context(
                LocalCluster(n_workers=dask_workers, threads_per_worker=1, memory_limit="6GB", dashboard_address=None)
            )
            client = stack.enter_context(Client(cluster))
            sharding["BASKET_DASK_ADDRESS"] = cluster.scheduler_address
        env = _airflow_env(home, lake_url, {"BASKET_DB_PATH": str(root / "warehouse.sqlite"), **sharding})
        migrate = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env,
                                 capture_output=True, text=True)  # fmt: skip
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {migrate.stderr[-2000:]}")
        with _ApiServer(env, root / "api-server.log"):
            if not (root / "history.json").exists():
                # The historical load: every drop up to the day before, in one run (timed, reported apart).
                metrics = root / "history-metrics.jsonl"
                metrics.unlink(missing_ok=True)
                seconds = _dag_test({**env, "BASKET_METRICS_FILE": str(metrics)}, day_before, root / "history.log")
                tasks = [json.loads(line) for line in metrics.read_text().splitlines()]
                (root / "history.json").write_text(json.dumps({"seconds": seconds, "tasks": tasks}))
            _drop_date(lake_root, PIPELINE_END)
            _unpublish_date(root / "warehouse.sqlite", PIPELINE_END)
            if user_shards > 1:
                from basket_insights.user_shards import refresh_shards

                started = time.perf_counter()
                refresh_shards(Lake(lake_url), day_before, user_shards)
                result["history_split_seconds"] = round(time.perf_counter() - started, 1)
            metrics = root / "daily-metrics.jsonl"
            metrics.unlink(missing_ok=True)
            total = _dag_test({**env, "BASKET_METRICS_FILE": str(metrics)}, PIPELINE_END, root / "daily.log")
        if client is not None:
            from basket_insights.metrics import peak_rss_mb

            result["dask_worker_peak_rss_mb"] = sorted(round(p, 1) for p in client.run(peak_rss_mb).values())
    history = json.loads((root / "history.json").read_text())
    ingest = [t for t in history["tasks"] if t["task_id"].startswith("ingest_")]
    ingest_seconds = sum(t["seconds"] for t in ingest)
    result["historical_load"] = {
        "seconds": round(history["seconds"], 1),
        "ingest_seconds": round(ingest_seconds, 1),
        "ingest_mb_per_s": round(landing / 2**20 / ingest_seconds, 1) if ingest_seconds else None,
    }
    tasks = [json.loads(line) for line in metrics.read_text().splitlines()]
    result["total_seconds"] = round(total, 1)
    result["tasks"] = [{k: t[k] for k in ("task_id", "seconds", "cpu_seconds", "peak_rss_mb", "rows_in", "rows_out")}
                       | ({"map_index": t["map_index"]} if t["map_index"] >= 0 else {}) for t in tasks]  # fmt: skip
    result["task_seconds"] = round(sum(t["seconds"] for t in tasks), 1)
    result["max_peak_rss_mb"] = max(t["peak_rss_mb"] for t in tasks)
    baseline = run_baseline(lake_url, PIPELINE_END, baseline_timeout, baseline_memory_gb)
    result["baseline"] = baseline
    result["baseline_seconds"] = round(baseline["seconds"], 1)
    result["ratio"] = round(baseline["seconds"] / total, 2)
    return result


def format_pipeline(result: dict[str, Any], command: str) -> str:
    """The Markdown section of docs/benchmarks.md for one harness result."""
    import platform
    from datetime import date

    rows = ["| task | wall s | CPU s | peak RSS MB | rows in | rows out |", "|---|---|---|---|---|---|"]
    for t in result["tasks"]:
        name = t["task_id"] + (f"[{t['map_index']}]" if "map_index" in t else "")
        rows.append(f"| {name} | {t['seconds']:.1f} | {t['cpu_seconds']:.1f} | {t['peak_rss_mb']:,.0f} | "
                    f"{t['rows_in'] if t['rows_in'] is None else format(t['rows_in'], ',')} | "
                    f"{t['rows_out'] if t['rows_out'] is None else format(t['rows_out'], ',')} |")  # fmt: skip
    baseline = result["baseline"]
    load = result["historical_load"]
    return "\n".join([
        _DOCS_START,
        f"Measured {date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}:",
        "", "```bash", command, "```", "",
        f"Feed: {result['users']:,} users, {result['days']} days, seed {result['seed']}, "
        f"{result['feed'].get('orders', 0):,} orders, {result['landing_mb']:,} MB of landing CSV.",
        "",
        f"* **Daily run of {result['ds']}** (`airflow dags test`, history already ingested): "
        f"**{result['total_seconds']:.1f} s** wall in all ({result['task_seconds']:.1f} s inside tasks), "
        f"peak RSS of any task **{result['max_peak_rss_mb']:,.0f} MB**"
        + _sharding_note(result) + ".",
        f"* **Historical load** (the run of the day before, ingesting every drop): {load['seconds']:.1f} s; "
        f"ingest tasks {load['ingest_seconds']:.1f} s = {load['ingest_mb_per_s']} MB/s of CSV.",
        f"* **Notebook baseline** on the same data: {baseline['seconds']:.1f} s, {baseline['status']} "
        f"(steps: {', '.join(f'{k} {v:.0f} s' for k, v in baseline['steps'].items()) or '—'}); "
        f"ratio baseline / daily run = {result['ratio']}.",
        "", *rows, _DOCS_END,
    ])  # fmt: skip


def _sharding_note(result: dict[str, Any]) -> str:
    shards, workers = result.get("user_shards", 1), result.get("dask_workers", 0)
    if shards <= 1:
        return ""
    note = f"; {shards} user shards (split beforehand in {result['history_split_seconds']:.1f} s)"
    if workers:
        peaks = ", ".join(f"{p:,.0f}" for p in result["dask_worker_peak_rss_mb"])
        note += f" on {workers} Dask workers (peak RSS {peaks} MB)"
    return note


def update_docs(section: str, path: Any) -> None:
    """Replace the harness's section of docs/benchmarks.md (appending it the first time)."""

    path = Path(path)
    text = path.read_text()
    if _DOCS_START in text and _DOCS_END in text:
        head, rest = text.split(_DOCS_START, 1)
        text = head + section + rest.split(_DOCS_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## The whole daily run at scale (`bench pipeline`)\n\n" + section + "\n"
    path.write_text(text)


def plot_scaling(results: list[dict[str, Any]], path: Any) -> None:
    """Wall seconds and peak RSS of each task of the daily run against the number of users (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    results = sorted(results, key=lambda r: r["users"])
    users = [r["users"] for r in results]

    def slowest(name: str) -> float:
        return -max(sum(t["seconds"] for t in r["tasks"] if t["task_id"] == name) for r in results)

    tasks = sorted({t["task_id"] for r in results for t in r["tasks"]}, key=slowest)
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    seconds_ax, memory_ax = fig.subplots(1, 2)
    for name in tasks[:8]:
        per_run = [[t for t in r["tasks"] if t["task_id"] == name] for r in results]
        seconds_ax.plot(users, [sum(t["seconds"] for t in ts) for ts in per_run], "o-", label=name)
        memory_ax.plot(
            users, [max((t["peak_rss_mb"] for t in ts), default=0) / 1024 for ts in per_run], "o-", label=name
        )
    seconds_ax.plot(users, [r["total_seconds"] for r in results], "k--", label="whole run (wall)")
    seconds_ax.set(xlabel="users", ylabel="seconds", title="Daily run: time per task")
    memory_ax.set(xlabel="users", ylabel="peak RSS (GB)", title="Daily run: peak memory per task")
    seconds_ax.legend(fontsize=7)
    memory_ax.legend(fontsize=7)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
