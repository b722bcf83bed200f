# Basket Insights — the two everyday commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEMO_DATE ?= $(shell date -u -d yesterday +%F)
DEMO_USERS ?= 2000
DEMO_DAYS ?= 60
# Segment ids and names are anchored to the segmentation of this date (docs/segments.md): mid-feed, so
# the demo's runs match their segments to a reference with a month of history behind it.
DEMO_REFERENCE_DATE ?= $(shell date -u -d "$(DEMO_DATE) -30 days" +%F)
INSTACART ?= $(abspath ../shared/instacart)
CATALOG_FLAG := $(if $(wildcard $(INSTACART)/products.csv),--catalog $(INSTACART),)

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
# a finished task frees its slot within 1 s, not 5 (basket_insights.config.AIRFLOW_WORKER_SETTINGS)
export AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL ?= 1
# freed memory kept for reuse, not zeroed again by the kernel (basket_insights.config.MALLOC_SETTINGS)
export MALLOC_MMAP_THRESHOLD_ ?= 4294967296
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296
export MALLOC_ARENA_MAX ?= 1
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := True
export BASKET_LAKE_URL ?= file://$(CURDIR)/.lake
export PATH := $(BIN):$(PATH)

.PHONY: help venv venv-dev demo test lint format airflow airflow-db stack stack-down lock clean

help:
	@echo "make demo     install, generate a small feed, run the DAG for $(DEMO_DATE), print the outputs"
	@echo "make test     lint (ruff) and the whole test suite"
	@echo "make airflow  the Airflow UI (airflow standalone) on http://localhost:8080 with this DAG"
	@echo "make stack    the production topology without Docker: Postgres metadata, Celery on Redis, SeaweedFS lake"
	@echo "make stack-down  stop it (state and logs stay in .stack/)"
	@echo "make lock     re-resolve requirements.txt from the top-level packages"

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

$(AIRFLOW_HOME)/airflow.db: | $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/db-migrate.log; exit 1)

airflow-db: $(AIRFLOW_HOME)/airflow.db

demo airflow: export BASKET_SEGMENT_REFERENCE_DATE ?= $(DEMO_REFERENCE_DATE)
demo: venv airflow-db
	@echo "== generating $(DEMO_USERS) users over $(DEMO_DAYS) days ending $(DEMO_DATE) into $(BASKET_LAKE_URL)"
	python -m basket_insights generate --lake $(BASKET_LAKE_URL) --users $(DEMO_USERS) --days $(DEMO_DAYS) \
		--end-date $(DEMO_DATE) --seed 7 $(CATALOG_FLAG) > $(AIRFLOW_HOME)/demo-generate.json
	@echo "== running the basket_insights DAG for $(DEMO_DATE) (log: $(AIRFLOW_HOME)/demo-dag-test.log)"
	airflow dags test basket_insights $(DEMO_DATE) > $(AIRFLOW_HOME)/demo-dag-test.log 2>&1 \
		|| (grep -E "ERROR|Error|error" $(AIRFLOW_HOME)/demo-dag-test.log | tail -20; exit 1)
	@grep -E "rows in =|users with features|: segments |clusters;|rules \(|recommendations \{|evaluate ds|report ds=.*index.html|publish ds=.*committed" $(AIRFLOW_HOME)/demo-dag-test.log \
		| sed -E 's/^[^ ]+ \[[a-z ]+\] //; s/ \[basket_insights[^]]*\].*//' | tail -12 | cut -c1-300
	@echo "== outputs"
	@python -m basket_insights summary --lake $(BASKET_LAKE_URL) --ds $(DEMO_DATE) 2>/dev/null

lint: venv-dev
	ruff check .
	ruff format --check .

format: venv-dev
	ruff format .
	ruff check --fix .

test: venv-dev lint
	python -m pytest

airflow: venv airflow-db
	@echo "Airflow UI: http://localhost:8080  (login: admin; password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	airflow standalone

stack: venv-dev
	python -m basket_insights stack up --dir .stack
	@echo "Airflow UI: $$(python -c 'import json; print(json.load(open(".stack/state.json"))["api"])')  login: admin," \
		"password: $$(python -c 'import json; print(json.load(open(".stack/secrets.json"))["admin_password"])')"
	@echo "Dask scheduler of the sharded steps: $$(python -c 'import json; print(json.load(open(".stack/state.json"))["env"]["BASKET_DASK_ADDRESS"])')" \
		"dashboard: $$(python -c 'import json; print(json.load(open(".stack/state.json"))["dask_dashboard"])')"
	@echo "logs: .stack/logs/   airflow CLI against the stack: source .stack/env.sh"

stack-down: venv
	python -m basket_insights stack down --dir .stack

lock:
	rm -rf /tmp/basket-lock && $(PYTHON) -m venv /tmp/basket-lock
	/tmp/basket-lock/bin/pip install --quiet "apache-airflow==3.3.2" "great-expectations==1.24.1" mlxtend pyarrow pandas \
		scikit-learn lightgbm lleaves "llvmlite<0.45" matplotlib s3fs "apache-airflow-providers-amazon[s3fs]" apache-airflow-providers-postgres psycopg-pool apache-airflow-providers-celery "celery<5.7" jinja2 "dask[distributed]" bokeh
	{ echo "# Runtime dependencies, fully pinned (resolved with pip on Python 3.11; no Airflow constraints file needed)."; \
	  echo "# Regenerate: make lock"; /tmp/basket-lock/bin/pip freeze; } > requirements.txt

clean:
	rm -rf $(AIRFLOW_HOME) .lake .pytest_cache .ruff_cache
