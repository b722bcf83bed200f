"""Benchmarks: run pipeline steps on an existing lake, each in a fresh process, and report
wall seconds, CPU seconds and peak resident memory (median of several runs).

``python -m basket_insights bench tasks --lake URL --ds D [--runs 3] [--tasks a,b]``

Each run is a separate Python process, so peak RSS is the step's own (imports included) and
no cache survives between runs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from typing import Any

#: step name -> Python statement run with ``lake`` and ``ds`` bound (settings from the environment).
STEPS: dict[str, str] = {
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
