"""Basket Insights: customer segments, product clusters, association rules and recommendations
from Instacart-shaped grocery orders, as plain functions the Airflow DAG calls.

Modules: :mod:`config` (settings), :mod:`lake` (partitioned storage), :mod:`synth` (synthetic
feed), :mod:`replay` (Kaggle snapshot replay), :mod:`ingest` and :mod:`validation` (validated
ingest), :mod:`features` (per-user features).

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it, before
any OpenMP library (LightGBM, scikit-learn) starts its threads: two tasks share a worker's cores, and
OpenMP threads that spin while waiting take the CPU the other task needs (docs/benchmarks.md, "The
daily run now").
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
