"""The servers the benchmarks start, each a process of its own on loopback: MLflow (plain,
or its basic-auth app), the gateway with a key in its store, a scratch PostgreSQL database,
and the registry content the read benchmarks are seeded with.

``hokusai`` is imported inside the functions that need it, as in ``_common.py``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hokusai.server.mlflow_process import server_command

# A gateway whose per-key limit is shared by replicas (PostgreSQL or Redis) gets this rate:
# a replica then leases one token at a time from the shared bucket (a tenth of a second's
# worth rounds down to 1), a shared-store round trip on every request, the limiter's worst
# case. The burst is too large to run out during a run.
SHARED_LIMIT_RATE = "5"
SHARED_LIMIT_BURST = "1000000000"
ARTIFACT_ENDPOINT = "/api/2.0/mlflow-artifacts/artifacts/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen[Any]) -> None:
    """Stop a process started in a session of its own, with everything it started: SIGTERM,
    then SIGKILL for what is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_file: Path
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, path: str, seconds: float = 180.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited while starting:\n{tail(self.log_file)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not start in {seconds:g} s:\n{tail(self.log_file)}")

    def stop(self) -> None:
        """Stop the server's whole process group (MLflow starts worker processes)."""
        stop_process_group(self.process)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def spawn(name: str, command: list[str], env: dict[str, str], log_file: Path, url: str) -> Server:
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    return Server(name, url, process, log_file)


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    """Stops the servers, the last started first, however the block ends; servers
    appended to the list inside the block are stopped too."""
    try:
        yield
    finally:
        for server in reversed(servers):
            server.stop()


def base_env() -> dict[str, str]:
    """The environment of every server: no HOKUSAI_* or MLFLOW_* settings of the caller's,
    and MLflow's background job runner off (it is not on any request's path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def start_mlflow(root: Path, workers: int, *, basic_auth: bool) -> Server:
    """``mlflow server`` on SQLite with served artifacts, all under ``root``; with
    ``basic_auth``, MLflow's own authentication app, as its admin user."""
    root.mkdir(parents=True)
    port = free_port()
    env = base_env()
    # As the platform runs it, with workspaces: the gateway names a workspace on every
    # request, and direct requests land in the default one. (MLflow's basic-auth server,
    # the other comparison, runs as its users would run it, without.)
    command = server_command(
        port=port,
        backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifacts_destination=str(root / "artifacts"),
        workers=workers,
        workspaces=not basic_auth,
    )
    headers: dict[str, str] = {}
    if basic_auth:
        # MLflow ships no admin password: it creates the admin user on first start with
        # the one given here. Its user database lives in this run's directory too.
        password = secrets.token_urlsafe(18)
        config = root / "basic_auth.ini"
        config.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(config),
            MLFLOW_AUTH_ADMIN_PASSWORD=password,
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(32),
        )
        command += ["--app-name", "basic-auth"]
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
        )
    name = "basic-auth" if basic_auth else "mlflow"
    server = spawn(name, command, env, root / "server.log", f"http://127.0.0.1:{port}")
    server.headers = headers
    return server


def start_gateway(
    root: Path,
    mlflow_url: str,
    *,
    name: str = "gateway",
    database_url: str | None = None,
    redis_url: str | None = None,
    settings_env: dict[str, str] | None = None,
) -> Server:
    """``hokusai serve --mlflow-url`` in a process of its own, with a write key in its store
    (``settings_env``: more HOKUSAI_* settings for it).

    The in-memory per-key rate limit is raised out of the way (its check still runs on every
    request): at its default of 100 requests/s a single key would be refused, not measured.
    With ``database_url`` (PostgreSQL) or ``redis_url`` the limit is the shared one, at a rate
    that makes every request take its token from the shared store (``SHARED_LIMIT_RATE``).
    """
    from hokusai.db.engine import make_engine
    from hokusai.db.migrate import upgrade
    from hokusai.keys.scopes import Scope
    from hokusai.keys.service import KeyService
    from hokusai.settings import Settings

    home = root / name
    home.mkdir(parents=True)
    secret = secrets.token_urlsafe(32)
    settings = Settings(home=home, database_url=database_url, secret_key=secret)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    issued = KeyService(engine, settings.resolved_secret).create(
        name="benchmark", owner="benchmark", scope=Scope.WRITE
    )
    engine.dispose()

    port = free_port()
    env = base_env()
    env.update(
        HOKUSAI_HOME=str(home),
        HOKUSAI_SECRET_KEY=secret,
        HOKUSAI_RATE_LIMIT_PER_SECOND="1000000000",
        HOKUSAI_RATE_LIMIT_BURST="1000000000",
    )
    if database_url or redis_url:
        env.update(
            HOKUSAI_RATE_LIMIT_PER_SECOND=SHARED_LIMIT_RATE,
            HOKUSAI_RATE_LIMIT_BURST=SHARED_LIMIT_BURST,
        )
    env.update(settings_env or {})
    if database_url:
        env["HOKUSAI_DATABASE_URL"] = database_url
    if redis_url:
        env["HOKUSAI_REDIS_URL"] = redis_url
    command = [
        sys.executable,
        "-m",
        "hokusai.cli.main",
        "serve",
        "--mlflow-url",
        mlflow_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server = spawn(name, command, env, root / f"{name}.log", f"http://127.0.0.1:{port}")
    server.headers = {"Authorization": f"Bearer {issued.key}"}
    return server


# ---- the registry content of the read benchmarks -------------------------------------------

EXPERIMENT = "hokusai-bench"
REGISTERED_MODELS = 20
MODEL = "bench-model-00"  # has a version and the alias "production"
ENDPOINTS = {
    "get-by-name": f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}",
    "search": "/api/2.0/mlflow/registered-models/search",
    "alias": f"/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=production",
    "version": f"/api/2.0/mlflow/model-versions/get?name={MODEL}&version=1",
}


def seed(server: Server) -> None:
    """The same registry content on every MLflow: one experiment, some registered models."""
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        client.post(
            "/api/2.0/mlflow/experiments/create", json={"name": EXPERIMENT}
        ).raise_for_status()
        for i in range(REGISTERED_MODELS):
            client.post(
                "/api/2.0/mlflow/registered-models/create",
                json={"name": f"bench-model-{i:02d}", "description": "benchmark model"},
            ).raise_for_status()
        client.post(
            "/api/2.0/mlflow/model-versions/create",
            json={"name": MODEL, "source": "s3://bench/model"},
        ).raise_for_status()
        client.post(
            "/api/2.0/mlflow/registered-models/alias",
            json={"name": MODEL, "alias": "production", "version": "1"},
        ).raise_for_status()


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``server_url`` for this run; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from hokusai.db.engine import normalise_url

    admin = create_engine(normalise_url(server_url), isolation_level="AUTOCOMMIT")
    name = "hk_bench_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(normalise_url(server_url)).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
