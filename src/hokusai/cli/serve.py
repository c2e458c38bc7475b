"""``hokusai serve``: MLflow (supervised child) and the gateway, on the embedded default."""

from __future__ import annotations

import getpass
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from hokusai.cli.context import DataDir, err, fail, settings_for
from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.gateway.app import Gateway
from hokusai.gateway.observability import configure_logging
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyService
from hokusai.server.http_server import run_server, server_config
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.settings import ADMIN_KEY_FILE, write_private_file

log = logging.getLogger("hokusai.serve")


def serve(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Address the gateway listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the gateway.")] = 8080,
    mlflow_port: Annotated[int, typer.Option(help="Loopback port of the MLflow child.")] = 5001,
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
    settings = settings_for(data_dir)
    configure_logging(settings.log_level)
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings.home = home
    try:
        engine = make_engine(settings.resolved_database_url)
        upgrade(engine)
        keys = KeyService(engine, settings.resolved_secret)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    _first_start_admin_key(keys, home)
    engine.dispose()

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
        err.print(f"starting MLflow on {mlflow.url} (log: {mlflow.log_file}) …")
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

    err.print(
        f"Hokusai gateway on http://{host}:{port}  ·  MLflow tracking URI "
        f"http://{host}:{port}/api/mlflow  ·  data {home}"
    )
    try:
        if workers == 1:
            run_server(server_config(Gateway(settings), settings, host=host, port=port))
        else:
            # Worker processes build their own Gateway from the environment.
            os.environ.update(
                {
                    "HOKUSAI_HOME": str(home),
                    "HOKUSAI_MLFLOW_URL": mlflow_url,
                    "HOKUSAI_DISPATCHER": "1" if dispatcher else "0",
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
                )
            )
    finally:
        if mlflow is not None:
            err.print("stopping MLflow …")
            mlflow.stop()


def _exit_on_signal(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)  # a requested stop is a clean exit, as with --workers > 1


def _first_start_admin_key(keys: KeyService, home: Path) -> None:
    """On the very first start, issue an admin key, show it once, keep it in a 0600 file."""
    key_file = home / ADMIN_KEY_FILE
    if key_file.exists() or keys.count() > 0:
        return
    issued = keys.create(name="initial admin", owner=getpass.getuser(), scope=Scope.ADMIN)
    write_private_file(key_file, issued.key + "\n")
    err.print(
        "\n[bold]First start: created an admin API key.[/bold] It is shown only this once and "
        f"kept in {key_file} (mode 0600):\n"
    )
    print(issued.key, flush=True)
    err.print("\nUse it with: export HOKUSAI_API_KEY=$(cat " + str(key_file) + ")\n")
