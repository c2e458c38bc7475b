"""Shared test machinery: real servers on loopback ports, real databases."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import httpx
import mlflow
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hokusai.db.engine import make_engine, normalise_url
from hokusai.db.migrate import upgrade
from hokusai.gateway.app import Gateway
from hokusai.keys.format import checksum
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyService
from hokusai.server.http_server import server_config
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.settings import Settings
from hokusai.timestamps import system_clock

POSTGRES_ENV = "HOKUSAI_TEST_POSTGRES_URL"
SERVE_STARTUP_SECONDS = 300.0  # 10-30 s usually; minutes on a 2-core machine under load


# MLflow's REST API as the gateway serves it (MLflow's own /api/2.0/mlflow/, behind /api/mlflow).
MLFLOW_API = "/api/mlflow/api/2.0/mlflow/"


def auth(key: str, request_id: str | None = None) -> dict[str, str]:
    """The headers of a request made with ``key`` (and with ``request_id`` when given)."""
    headers = {"Authorization": f"Bearer {key}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    return headers


def assert_error(response: httpx.Response, status: int, code: str, *phrases: str) -> str:
    """``response`` is the gateway's error in MLflow's format, with ``status``, ``code``, its
    request id and each of ``phrases`` in its message; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    for phrase in phrases:
        assert phrase in body["message"], body["message"]
    return str(body["message"])


def accepted_until_refused(
    send: Callable[[], httpx.Response], *, since: float, bound: float = 5.0
) -> tuple[float, httpx.Response]:
    """Send requests until one is refused: how long after ``since`` (a ``time.monotonic``
    moment) the last accepted request was sent, 0.0 when none was, and the refusal.

    A revocation's promise is about when a gateway decides: nothing it receives later than
    its key cache's lifetime after the revocation is accepted. A request is sent no later
    than the gateway decides about it, so its send time bounds the decision from below,
    and the measure does not count how long a busy machine takes to answer."""
    accepted_for = 0.0
    while True:
        sent = time.monotonic()
        response = send()
        if response.status_code != 200:
            return accepted_for, response
        accepted_for = sent - since
        assert time.monotonic() - since < bound, f"still accepted after {bound} s"
        time.sleep(0.02)


def keys_sharing_a_prefix(count: int) -> list[str]:
    """Well-formed keys whose display prefixes are the same."""
    prefix = "hk_live_" + uuid.uuid4().hex[:6]
    keys = []
    for i in range(count):
        body = prefix + f"{i:02d}" + "A" * 24
        keys.append(body + checksum(body))
    return keys


def reread_tracking_uri() -> None:
    """Make the MLflow client read MLFLOW_TRACKING_URI from the environment again."""
    # None is what resets it; MLflow's own annotation of the argument leaves None out.
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MovedClock:
    """The product's wall clock (``hokusai.timestamps.clock``) as the ``clock`` fixture
    installs it: real time, plus however far a test has moved it forward. A key's expiry
    is then a step of the test, not a sleep."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return system_clock() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards.

    HOKUSAI_TEST_POSTGRES_URL names the server. When it is set and the server cannot be
    reached, that is an error, never a skip.
    """
    base = os.environ[POSTGRES_ENV]
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    name = "hk_test_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(normalise_url(base)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def mlflow_running(root: Path, backend_store_uri: str | None = None) -> Iterator[MlflowProcess]:
    """A real MLflow tracking server (the pinned version) on a loopback port, its artifacts
    and log under ``root`` (its store too, on SQLite, unless ``backend_store_uri``);
    stopped when the block ends, also when it was too slow to start."""
    process = MlflowProcess(
        port=free_port(),
        backend_store_uri=backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
        artifacts_destination=str(root / "artifacts"),
        workers=1,
        log_file=root / "mlflow.log",
    )
    try:
        # MLflow alone takes 10-30 s to start, several minutes on a 2-core machine under load.
        process.start(wait_seconds=300)
        yield process
    finally:
        process.stop()


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def tracking_uri(self) -> str:
        return self.url + "/api/mlflow"

    def create_key(self, scope: Scope = Scope.WRITE, **kwargs: object) -> str:
        kwargs.setdefault("name", f"test {scope.value}")
        kwargs.setdefault("owner", "tests")
        return self.gateway.keys.create(scope=scope, **kwargs).key  # type: ignore[arg-type]

    def revoke_key(self, key: str) -> None:
        """Revoke ``key`` as an admin does: through ``/api/v1``, with an admin key."""
        admin = self.create_key(Scope.ADMIN)
        key_id = self.gateway.keys.resolve(key).id
        revoked = httpx.post(
            f"{self.url}/api/v1/keys/{key_id}/revoke", headers=auth(admin), timeout=30
        )
        assert revoked.status_code == 200, revoked.text

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def gateway_settings(store: str, mlflow_url: str, home: Path, **overrides: object) -> Settings:
    return Settings(
        home=home,
        database_url=store,
        secret_key="test-secret-" + home.name,
        mlflow_url=mlflow_url,
        **overrides,  # type: ignore[arg-type]
    )


class MakeGateway(Protocol):
    """The ``make_gateway`` fixture: a gateway on ``store`` in front of ``mlflow_url``,
    with the test's own settings, stopped after the test."""

    def __call__(self, store: str, mlflow_url: str, **overrides: object) -> RunningGateway: ...


class ServeGateway(Protocol):
    """The ``serve_gateway`` fixture: a gateway started with ``settings`` (on ``port`` when
    given), stopped after the test."""

    def __call__(self, settings: Settings, *, port: int | None = None) -> RunningGateway: ...


def start_gateway(settings: Settings, *, port: int | None = None) -> RunningGateway:
    """The real gateway on a real loopback socket, served by uvicorn in a thread; on
    ``port`` when it must be known first (single sign-on's redirect URI names it)."""
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    gateway = Gateway(settings, engine=engine)
    port = port or free_port()
    config = server_config(gateway, settings, host="127.0.0.1", port=port, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    return RunningGateway(f"http://127.0.0.1:{port}", gateway, server, thread)


# ---- `hokusai serve` as separate processes (replicas) ----------------------------------


@contextlib.contextmanager
def sqlite_gateway(home: Path, mlflow_url: str, **overrides: object) -> Iterator[RunningGateway]:
    """A gateway on a SQLite store in ``home``, stopped when the block ends: for fixtures
    wider than a test (``make_gateway`` serves one test)."""
    running = start_gateway(
        gateway_settings(f"sqlite:///{home / 'hokusai.db'}", mlflow_url, home, **overrides)
    )
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def store_keys(store: str, secret: str) -> Iterator[KeyService]:
    """The key service on a shared store (migrated first), as the server's CLI uses it."""
    engine = make_engine(store)
    try:
        upgrade(engine)
        yield KeyService(engine, secret.encode())
    finally:
        engine.dispose()


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVE_STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"replica {self.name} exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"replica {self.name} not ready in {SERVE_STARTUP_SECONDS:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: nothing is left
        self.process.wait(timeout=10)


@contextlib.contextmanager
def replicas(
    names: list[str],
    store: str | None,
    secret: str | None,
    mlflow_url: str,
    tmp_path: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[list[Replica]]:
    """`hokusai serve` processes (in front of one MLflow), each in its own session; every
    process they start is gone afterwards. ``store`` None: each on its own SQLite."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    if store is not None and secret is not None:
        environment.update(HOKUSAI_DATABASE_URL=store, HOKUSAI_SECRET_KEY=secret)
    environment.update(env or {})
    started: list[Replica] = []
    try:
        for name in names:
            port, log = free_port(), tmp_path / f"replica-{name}.log"
            command = [sys.executable, "-m", "hokusai.cli.main", "serve", "--port", str(port)]
            command += ["--mlflow-url", mlflow_url, "--data-dir", str(tmp_path / name)]
            command += ["--workers", str(workers)]
            with log.open("wb") as output:
                process = subprocess.Popen(
                    command,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    cwd=tmp_path,
                    start_new_session=True,
                )
            started.append(Replica(name, process, port, log))
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


# ---- the OpenID provider of the single sign-on tests (tests/oidc/provider.mjs) ----------

OIDC_DIR = Path(__file__).parent / "oidc"
OIDC_STARTUP_SECONDS = 30.0  # under a second usually


@dataclass(frozen=True)
class OidcClient:
    """The one client the provider knows: confidential, PKCE required."""

    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass
class OidcProvider:
    """oidc-provider under Node.js, in its own session; its one user signs in without a form."""

    issuer: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_oidc_provider(
    port: int,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    *,
    log: Path,
    user: dict[str, object] | None = None,
) -> OidcProvider:
    """The provider at ``http://127.0.0.1:<port>`` with one confidential client (PKCE
    required), once its discovery document is served. ``user`` overrides claims of the test
    user (``ana@example.com``, "Ana Lovelace", groups ``["gtm-admins"]``)."""
    node = shutil.which("node")
    if node is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the OpenID provider needs Node.js and `make test-deps` (npm ci in tests/oidc)")
    # Every value as --name=value: a random secret may start with '-', which Node's
    # argument parser would otherwise take for an option of its own.
    command = [node, str(OIDC_DIR / "provider.mjs"), f"--port={port}"]
    command += [f"--client-id={client_id}", f"--client-secret={client_secret}"]
    command += [f"--redirect-uri={redirect_uri}"]
    if user is not None:
        command += [f"--user={json.dumps(user)}"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    provider = OidcProvider(f"http://127.0.0.1:{port}", process, log)
    discovery = provider.issuer + "/.well-known/openid-configuration"
    try:
        deadline = time.monotonic() + OIDC_STARTUP_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the OpenID provider exited: {log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(discovery, timeout=5).status_code == 200:
                    return provider
            time.sleep(0.1)
        pytest.fail(f"no discovery document from the OpenID provider in {OIDC_STARTUP_SECONDS:g} s")
    except BaseException:
        provider.stop()  # nothing outlives a failed start
        raise
