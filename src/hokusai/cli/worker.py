"""``hokusai worker``: a webhook dispatcher (and reconciler) process of its own."""

from __future__ import annotations

import signal
from typing import Annotated

import anyio
import typer

from hokusai.cli.console import err
from hokusai.cli.context import DataDir, close_with_command, open_store
from hokusai.logs import configure_logging
from hokusai.webhooks.worker import run_background


def worker(
    data_dir: DataDir = None,
    mlflow_url: Annotated[
        str | None,
        typer.Option(help="MLflow server the reconciler reads.", envvar="HOKUSAI_MLFLOW_URL"),
    ] = None,
    reconcile: Annotated[
        bool, typer.Option("--reconcile/--no-reconcile", help="Also run the reconciler.")
    ] = True,
) -> None:
    """Deliver webhooks until SIGINT/SIGTERM. Run as many as you like beside each other."""
    engine, settings = open_store(data_dir)
    close_with_command(engine.dispose)
    configure_logging(settings.log_level)
    if mlflow_url:
        settings.mlflow_url = mlflow_url
    if not reconcile:
        settings.reconcile_interval = 0

    async def main() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(run_background, engine, settings, stop)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()
                    break

    err.print("webhook worker running; SIGINT or SIGTERM stops it")
    anyio.run(main)
