"""``hokusai serve``: MLflow (supervised child) and the gateway, on the embedded default."""

from __future__ import annotations

import errno
import getpass
import logging
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from sqlalchemy import Engine

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.keys import KeyAdmin
from hokusai.cli.console import err, fail
from hokusai.cli.context import DataDir, settings_for
from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.gateway.app import Gateway
from hokusai.gateway.observability import MULTIPROC_ENV
from hokusai.gateway.write_queue import default_concurrency
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyService
from hokusai.logs import configure_logging
from hokusai.server.http_server import run_server, server_config
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.server.runtime_file import Runtime, remove_runtime, write_runtime
from hokusai.settings import ADMIN_KEY_FILE, Settings, write_private_file

log = logging.getLogger("hokusai.serve")
WORKER_STARTUP_SECONDS = 120


def serve(
    data_dir: DataDir = None,
    host: Annotated[
        str, typer.Option(envvar="HOKUSAI_HOST", help="Address the gateway listens on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, envvar="HOKUSAI_PORT", help="Port of the gateway.")
    ] = 8080,
    mlflow_port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            envvar="HOKUSAI_MLFLOW_PORT",
            help="Loopback port of the MLflow child.",
        ),
    ] = 5001,
    mlflow_url: Annotated[
        str | None,
        typer.Option(
            help="Use this MLflow server instead of starting one.", envvar="HOKUSAI_MLFLOW_URL"
        ),
    ] = None,
    backend_store_uri: Annotated[
        str | None, typer.Option(help="MLflow's backend store (default: SQLite in the data dir).")
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(help="MLflow's artifact store (default: a directory in the data dir)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes, for MLflow and the gateway each.")
    ] = 1,
    dispatcher: Annotated[
        bool,
        typer.Option(
            "--dispatcher/--no-dispatcher",
            help="Deliver webhooks in this process (else run `hokusai worker`).",
        ),
    ] = True,
) -> None:
    """Start the platform: MLflow on loopback and the authenticated gateway in front of it."""
    # A busy port is found before anything starts, not after MLflow is up.
    _ensure_free(host, port, "--port / HOKUSAI_PORT", "the gateway")
    if mlflow_url is None:
        _ensure_free("127.0.0.1", mlflow_port, "--mlflow-port / HOKUSAI_MLFLOW_PORT", "MLflow")
    settings = settings_for(data_dir)
    configure_logging(settings.log_level)
    home = settings.home.resolve()
    # The data directory holds the secret, the keys' store and the logs: the owner's alone.
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    settings.home = home
    first_start = _prepare_store(settings, home)

    # SIGTERM must unwind through the `finally` below that stops MLflow. Its default action
    # ends the process on the spot, and uvicorn re-raises the signal after its own graceful
    # shutdown: with this handler that becomes SystemExit instead of an abrupt death.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    mlflow: MlflowProcess | None = None
    if mlflow_url is None:
        mlflow = MlflowProcess(
            port=mlflow_port,
            backend_store_uri=backend_store_uri or f"sqlite:///{home / 'mlflow.db'}",
            artifacts_destination=artifacts_destination or str(home / "artifacts"),
            workers=workers,
            log_file=home / "logs" / "mlflow.log",
        )
        print(f"starting MLflow on {mlflow.url} (log: {mlflow.log_file}) …", file=sys.stderr)
        try:
            mlflow.start()
        except RuntimeError as exc:
            mlflow.stop()
            raise fail(str(exc)) from None
        except BaseException:  # SIGTERM or Ctrl-C while MLflow was starting
            mlflow.stop()
            raise
        mlflow_url = mlflow.url
    settings.mlflow_url = mlflow_url
    settings.dispatcher = dispatcher
    if settings.mlflow_write_concurrency is None:
        # SQLite takes one writer at a time: the gateway queues writes rather than letting
        # them contend inside MLflow (gateway/write_queue.py says why).
        settings.mlflow_write_concurrency = default_concurrency(
            mlflow.backend_store_uri if mlflow is not None else None
        )

    gateway_url = f"http://{_client_host(host)}:{port}"
    runtime = Runtime(
        gateway_url=gateway_url,
        mlflow_url=mlflow_url,
        pid=os.getpid(),
        host=host,
        port=port,
        mlflow_port=mlflow.port if mlflow is not None else None,
    )
    try:
        write_runtime(home, runtime)
        _print_banner(gateway_url, home, first_start)
        if workers == 1:
            run_server(server_config(Gateway(settings), settings, host=host, port=port))
        else:
            # Worker processes build their own Gateway from the environment, and keep their
            # metrics in files that /metrics sums (emptied: a past run's counts are not ours).
            metrics_dir = home / "prometheus-multiproc"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(mode=0o700)
            os.environ[MULTIPROC_ENV] = str(metrics_dir)
            os.environ.update(
                {
                    "HOKUSAI_HOME": str(home),
                    "HOKUSAI_MLFLOW_URL": mlflow_url,
                    "HOKUSAI_DISPATCHER": "1" if dispatcher else "0",
                    "HOKUSAI_MLFLOW_WRITE_CONCURRENCY": str(settings.mlflow_write_concurrency),
                }
            )
            run_server(
                server_config(
                    "hokusai.gateway.app:create_app",
                    settings,
                    host=host,
                    port=port,
                    factory=True,
                    workers=workers,
                    # uvicorn kills a worker that has not answered its health check within
                    # this (5 s by default): a worker still importing on a busy machine was
                    # killed and respawned forever, and the gateway never came up.
                    timeout_worker_healthcheck=WORKER_STARTUP_SECONDS,
                )
            )
    finally:
        remove_runtime(home, runtime.pid)
        if mlflow is not None:
            err.print("stopping MLflow …")
            mlflow.stop()


def _exit_on_signal(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)  # a requested stop is a clean exit, as with --workers > 1


def _ensure_free(host: str, port: int, option: str, what: str) -> None:
    """Fail, naming the port, when something already listens on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise fail(
                    f"port {port} on {host} is already in use (another `hokusai serve`?): "
                    f"{what} cannot listen there; stop the other process or choose another "
                    f"port with {option}"
                ) from None
            raise fail(f"{what} cannot listen on {host}:{port}: {exc.strerror}") from None


def _client_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _print_banner(gateway_url: str, home: Path, first_start: bool) -> None:
    """Lines to copy into a shell: printed plainly, never wrapped or styled."""
    key_file = home / ADMIN_KEY_FILE
    lines = [
        "",
        f"Hokusai gateway on {gateway_url}  (data {home})",
        "",
        "For the SDK and the CLI:",
        f"  export HOKUSAI_API_URL={gateway_url}",
    ]
    if key_file.exists():
        lines.append(f"  export HOKUSAI_API_KEY=$(cat {key_file})")
    lines += [
        "For the stock MLflow client (MLFLOW_TRACKING_TOKEN: a key from `hokusai keys create`):",
        f"  export MLFLOW_TRACKING_URI={gateway_url}/api/mlflow",
        f"API reference: {gateway_url}/docs",
        "",
    ]
    if first_start:
        lines.insert(1, f"The admin key above is kept in {key_file} (mode 0600).")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _prepare_store(settings: Settings, home: Path) -> bool:
    """Migrate the auth store and, on the very first start, issue the admin key (True
    then). The engine is disposed however this ends: the gateway opens its own."""
    try:
        engine = make_engine(settings.resolved_database_url)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    try:
        try:
            upgrade(engine)
            keys = KeyService(engine, settings.resolved_secret)
        except RuntimeError as exc:
            raise fail(str(exc)) from None
        return _first_start_admin_key(engine, keys, home)
    finally:
        engine.dispose()


def _first_start_admin_key(engine: Engine, keys: KeyService, home: Path) -> bool:
    """On the very first start, issue an admin key, show it once, keep it in a 0600 file.

    Issued by the operator through the key service, so it has its audit row like any key.
    """
    key_file = home / ADMIN_KEY_FILE
    if key_file.exists() or keys.count() > 0:
        return False
    operator = Actor.operator(Origin.command("serve"))
    issued = KeyAdmin(engine, keys).create(
        operator,
        name="initial admin",
        owner=getpass.getuser(),
        scope=Scope.ADMIN,
        platform=True,
    )
    write_private_file(key_file, issued.key + "\n")
    print(
        "\nFirst start: created an admin API key. It is shown only this once:\n",
        file=sys.stderr,
        flush=True,
    )
    print(issued.key, flush=True)
    return True
