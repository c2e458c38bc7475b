"""The production shape on loopback: nginx terminating TLS in front of two gateway replicas,
one MLflow tracking server on PostgreSQL with S3 artifacts (moto's S3 server), the auth
store on PostgreSQL, and two webhook dispatchers.

Used by the test suite (tests/topology/) and by ``make topology``: the two never drift.
Every process gets the environment of its file in deploy/env/, filled in.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx

from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyService

from .config_files import environment, render
from .processes import Service
from .tls import CertificateAuthority

BUCKET = "hokusai-artifacts"
# moto accepts any credentials; they exist only in the MLflow child's environment.
S3_ACCESS_KEY_ID = "topology-access-key"
S3_SECRET_ACCESS_KEY = "topology-secret-key"
PROXY_ADDRESS = "127.0.0.1"  # where nginx connects to the replicas from
# Generous: MLflow alone takes a minute or more to start on a busy two-core machine.
STARTUP_SECONDS = 300.0
WORKER_RUNNING = "webhook worker running"

DatabaseFactory = Callable[[], AbstractContextManager[str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not found:
        raise RuntimeError("nginx is not installed: run scripts/setup-test-deps.sh as root")
    return found


def _base_environment() -> dict[str, str]:
    """This process's environment without any platform, MLflow or cloud setting: each child
    gets only what its own environment file says."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HOKUSAI_", "MLFLOW_", "AWS_"))
    }


def _answers(url: str, ca_bundle: str | None = None) -> bool:
    """Whether ``url`` answers 200; over https trusting only ``ca_bundle`` (httpx takes the
    bundle as an SSL context: a path given as is is deprecated)."""
    verify = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else False
    try:
        return httpx.get(url, timeout=2.0, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Topology:
    """Start with :meth:`start` (a context manager); everything stops on leaving it."""

    workdir: Path
    make_database: DatabaseFactory
    # Extra settings per role ("gateway", "worker"), e.g. loopback webhooks in tests.
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    ca: CertificateAuthority = field(init=False)
    auth_store_url: str = field(init=False)
    mlflow_store_url: str = field(init=False)
    s3_url: str = field(init=False)
    mlflow_url: str = field(init=False)
    url: str = field(init=False)  # https://127.0.0.1:<port>, nginx
    admin_key: str = field(init=False)
    s3: Service = field(init=False)
    mlflow: Service = field(init=False)
    gateways: list[Service] = field(init=False, default_factory=list)
    gateway_urls: list[str] = field(init=False, default_factory=list)
    workers: list[Service] = field(init=False, default_factory=list)
    nginx: Service = field(init=False)
    _services: list[Service] = field(init=False, default_factory=list)

    @property
    def tracking_uri(self) -> str:
        return self.url + "/api/mlflow"

    @property
    def ca_bundle(self) -> Path:
        return self.ca.bundle

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def values(self) -> dict[str, str]:
        """What the placeholders of deploy/ are filled with."""
        return {
            "AUTH_STORE_URL": self.auth_store_url,
            "MLFLOW_STORE_URL": self.mlflow_store_url,
            "SECRET_KEY": self.secret_key,
            "MLFLOW_URL": self.mlflow_url,
            "TRUSTED_PROXIES": PROXY_ADDRESS,
            "BUCKET": BUCKET,
            "S3_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
        }

    def _env(self, env_file: str, role: str) -> dict[str, str]:
        env = _base_environment()
        env.update(environment(env_file, self.values()))
        env.update(self.overrides.get(role, {}))
        return env

    def s3_client(self) -> object:
        """boto3 on moto's S3 server, over a real socket."""
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=S3_ACCESS_KEY_ID,
            aws_secret_access_key=S3_SECRET_ACCESS_KEY,
            region_name="us-east-1",
        )

    def create_key(self, scope: Scope, name: str = "topology") -> str:
        engine = make_engine(self.auth_store_url)
        try:
            return (
                KeyService(engine, self.secret_key.encode())
                .create(name=name, owner="topology", scope=scope)
                .key
            )
        finally:
            engine.dispose()

    # ---- bring-up ---------------------------------------------------------------------

    @contextlib.contextmanager
    def start(self) -> Iterator[Topology]:
        """Every process is started at once and then waited for: MLflow takes longest, and
        the others do not need it to come up."""
        with ExitStack() as stack:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.ca = CertificateAuthority(self.workdir / "tls")
            self.auth_store_url = stack.enter_context(self.make_database())
            self.mlflow_store_url = stack.enter_context(self.make_database())
            self.s3_url = f"http://127.0.0.1:{free_port()}"
            self.mlflow_url = f"http://127.0.0.1:{free_port()}"
            self.gateway_urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
            self.url = f"https://127.0.0.1:{free_port()}"
            self._prepare_auth_store()
            # Stopped before the databases are dropped; all are told at once, then awaited.
            stack.callback(self._stop_all)

            self.s3 = self._service("s3", self._s3_command(), _base_environment())
            self.mlflow = self._service(
                "mlflow", self._mlflow_command(), self._env("env/mlflow.env", "mlflow")
            )
            self.gateways = [
                self._service(
                    f"gateway-{name}",
                    self.gateway_command(name, url),
                    self._env("env/gateway.env", "gateway"),
                )
                for name, url in zip("ab", self.gateway_urls, strict=True)
            ]
            self.workers = [
                self._service(
                    f"worker-{name}",
                    self.worker_command(),
                    self._env("env/worker.env", "worker"),
                )
                for name in "12"
            ]
            self.nginx = self._service("nginx", self._nginx_command(), _base_environment())

            self.s3.wait_until(
                lambda: _answers(self.s3_url + "/moto-api/"), STARTUP_SECONDS, "answering"
            )
            self.s3_client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            self.mlflow.wait_until(
                lambda: _answers(self.mlflow_url + "/health"), STARTUP_SECONDS, "answering"
            )
            for index in range(len(self.gateways)):
                self.wait_gateway(index)
            for index in range(len(self.workers)):
                self.wait_worker(index)
            bundle = str(self.ca.bundle)
            self.nginx.wait_until(lambda: _answers(self.url + "/health", bundle), 30, "answering")
            yield self

    def _service(self, name: str, command: list[str], env: dict[str, str]) -> Service:
        # Run in the work directory: nothing a process writes lands anywhere else.
        service = Service(name, command, env, self.logs / f"{name}.log", self.workdir)
        self._services.append(service)
        service.start()
        return service

    def _stop_all(self) -> None:
        for service in self._services:
            service.terminate()
        for service in reversed(self._services):
            service.stop()

    def _s3_command(self) -> list[str]:
        port = self.s3_url.rsplit(":", 1)[1]
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port]

    def _mlflow_command(self) -> list[str]:
        port = self.mlflow_url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        # Each team is one of MLflow's workspaces: the gateway names one on every request.
        options = ["--serve-artifacts", "--enable-workspaces", "--workers", "1"]
        return [*command, "--port", port, *options]

    def _prepare_auth_store(self) -> None:
        """Migrate once, before any replica starts, and issue the first admin key (the
        replicas then see a store in use and issue none of their own)."""
        engine = make_engine(self.auth_store_url)
        try:
            upgrade(engine)
            self.admin_key = (
                KeyService(engine, self.secret_key.encode())
                .create(name="topology admin", owner="topology", scope=Scope.ADMIN)
                .key
            )
        finally:
            engine.dispose()

    def gateway_command(self, name: str, url: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hokusai.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            url.rsplit(":", 1)[1],
            "--mlflow-url",
            self.mlflow_url,
            "--no-dispatcher",
            "--data-dir",
            str(self.workdir / f"gateway-{name}"),
        ]

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "hokusai.cli.main", "worker"]

    def wait_gateway(self, index: int) -> None:
        url = self.gateway_urls[index]
        self.gateways[index].wait_until(lambda: _answers(url + "/ready"), STARTUP_SECONDS, "ready")

    def restart_gateway(self, index: int) -> None:
        """Start replica ``index`` again (after a kill) on its port; wait until it is ready."""
        self.gateways[index].stop()
        self.gateways[index].start()
        self.wait_gateway(index)

    def wait_worker(self, index: int, seen: int = 0) -> None:
        """Until the log has more than ``seen`` start messages (a dispatcher listens on no
        port; a restart appends to the same log)."""
        service = self.workers[index]
        service.wait_until(
            lambda: service.output().count(WORKER_RUNNING) > seen, STARTUP_SECONDS, "running"
        )

    def restart_worker(self, index: int) -> None:
        self.workers[index].stop()
        seen = self.workers[index].output().count(WORKER_RUNNING)
        self.workers[index].start()
        self.wait_worker(index, seen)

    def _nginx_command(self) -> list[str]:
        runtime = self.workdir / "nginx"
        runtime.mkdir(exist_ok=True)
        server = self.ca.issue("server")
        values = {
            "RUNTIME_DIR": str(runtime),
            "LISTEN": self.url.removeprefix("https://"),
            "SERVER_NAME": "localhost 127.0.0.1",
            "CERTIFICATE": str(server.certificate),
            "CERTIFICATE_KEY": str(server.key),
            "GATEWAY_A": self.gateway_urls[0].removeprefix("http://"),
            "GATEWAY_B": self.gateway_urls[1].removeprefix("http://"),
        }
        (runtime / "nginx.conf").write_text(render("nginx/nginx.conf", values))
        (runtime / "hokusai.conf").write_text(render("nginx/hokusai.conf", values))
        command = [nginx_binary(), "-p", str(runtime), "-c", str(runtime / "nginx.conf")]
        return [*command, "-g", "daemon off;"]
