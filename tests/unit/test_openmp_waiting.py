"""A task's OpenMP threads sleep while they wait instead of spinning on the CPU another task needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

INCLUDE = Path(__file__).resolve().parents[2] / "include"


def _spin_counts(environment: dict[str, str]) -> list[int]:
    """GOMP_SPINCOUNT of each OpenMP runtime a worker loads (scikit-learn's and LightGBM's), as the
    runtimes print it themselves: 0 when waiting threads sleep at once."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"OMP_DISPLAY_ENV": "VERBOSE", "PYTHONPATH": str(INCLUDE), **environment}
    done = subprocess.run(
        [sys.executable, "-c", "import basket_insights.preload, lightgbm, sklearn.cluster"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [int(n) for n in re.findall(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr)]


def test_the_package_makes_waiting_openmp_threads_sleep() -> None:
    counts = _spin_counts({})
    assert len(counts) >= 2 and set(counts) == {0}


def test_a_wait_policy_the_environment_sets_is_kept() -> None:
    assert min(_spin_counts({"OMP_WAIT_POLICY": "ACTIVE"})) > 0
