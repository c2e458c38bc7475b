"""``hokusai doctor``: walk the hops to the registry and name the one that fails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hokusai.cli.client import ApiKey, ApiUrl, Profile
from hokusai.cli.context import DataDir, settings_for
from hokusai.cli.lazy_commands import server_extra
from hokusai.doctor.client_checks import TIMEOUT, ClientDoctor
from hokusai.doctor.report import Report


def doctor(
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write", help="Also make (and remove) a scratch run: needs the write scope."
        ),
    ] = False,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook", help="Also send a test event to this webhook endpoint (admin key)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Also check this version (NAME@ALIAS or NAME/VERSION): every file against "
            "the manifest recorded at registration, and how it loads.",
        ),
    ] = None,
    server: Annotated[
        bool, typer.Option("--server", help="Check this server's own dependencies instead.")
    ] = False,
    data_dir: DataDir = None,
    mlflow_url: Annotated[
        str | None,
        typer.Option(
            "--mlflow-url",
            envvar="HOKUSAI_MLFLOW_URL",
            help="With --server: MLflow's URL (default: the running server's, from "
            "DATA_DIR/runtime.json).",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer."),
    ] = TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check each hop in order (config, dns, connect, health, auth, proxy_read, write,
    webhooks, model) and stop at the first failure with its fix. Exit 0 only when all pass."""
    if server:
        with server_extra("hokusai doctor --server"):
            report = server_report(data_dir, mlflow_url, timeout)
    else:
        report = ClientDoctor(
            api_url, api_key, profile, write=write, webhook=webhook, model=model, timeout=timeout
        ).run()
    if as_json:
        print(report.as_json())
    else:
        report.print(Console())
    raise typer.Exit(0 if report.ok else 1)


def server_report(data_dir: Path | None, mlflow_url: str | None, timeout: float) -> Report:
    """The server-side checks: this server's store, runtime file and dispatchers. They
    need the ``server`` extra, so they are imported only here."""
    from hokusai.doctor.server_checks import ServerDoctor
    from hokusai.server.runtime_file import RUNTIME_FILE, read_runtime

    settings = settings_for(data_dir)
    runtime = read_runtime(settings.home)
    source = "the default: no runtime file"
    if mlflow_url:
        settings.mlflow_url, source = mlflow_url, "--mlflow-url / HOKUSAI_MLFLOW_URL"
    elif runtime is not None:
        settings.mlflow_url = runtime.mlflow_url
        source = f"the running server's {settings.home / RUNTIME_FILE}"
    return ServerDoctor(settings, runtime, mlflow_source=source, timeout=timeout).run()
