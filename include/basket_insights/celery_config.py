"""Celery settings of the workers: Airflow's defaults, plus the libraries to import at start-up.

Selected with ``[celery] celery_config_options = basket_insights.celery_config.CELERY_CONFIG``
(``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS``). Celery imports ``imports`` in the worker's main
process before it forks its pool, so every task process starts with them (:mod:`basket_insights.preload`).
"""

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), "basket_insights.preload"],
}
