"""Basket Insights: customer segments, product clusters, association rules and recommendations
from Instacart-shaped grocery orders, as plain functions the Airflow DAG calls.

Modules: :mod:`config` (settings), :mod:`lake` (partitioned storage), :mod:`synth` (synthetic
feed), :mod:`replay` (Kaggle snapshot replay), :mod:`ingest` and :mod:`validation` (validated
ingest), :mod:`features` (per-user features).
"""

__version__ = "0.1.0"
