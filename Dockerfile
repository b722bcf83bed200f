# The Airflow image of the deployment: the official image plus this project's pinned requirements.
# Built by `docker compose build` (docker-compose.yaml); the code is mounted, not copied.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
# LightGBM's wheel links the system's OpenMP runtime (scikit-learn bundles its own)
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt
ENV PYTHONPATH=/opt/airflow/include
