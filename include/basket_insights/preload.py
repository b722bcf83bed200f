"""Third-party libraries the tasks use, imported once in a worker's parent process.

Airflow forks every task process from its worker, so a module the worker has imported is already
there when a task starts. Great Expectations alone takes 2–5 s to import on a 2-core machine, most
of a daily ingest task. The Celery workers import this module at start-up (``imports`` in
:mod:`basket_insights.celery_config`).

Only libraries, never this project's own modules: a task must run the code deployed when it
starts, not the code the worker started with.
"""

import importlib
import logging

LIBRARIES = (
    "great_expectations",
    "matplotlib",
    "pandas",
    "pyarrow.csv",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "scipy.sparse",
    "sklearn.cluster",
    "sklearn.feature_extraction.text",
)

logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its import logs a line per API it registers
for _name in LIBRARIES:
    importlib.import_module(_name)
