"""``hokusai doctor``: walk the hops to the registry and name the one that fails."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from hokusai.cli.client import ApiKey, ApiUrl, Profile
from hokusai.cli.context import DataDir, settings_for
from hokusai.doctor.client_checks import ClientDoctor
from hokusai.doctor.server_checks import ServerDoctor


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
    server: Annotated[
        bool, typer.Option("--server", help="Check this server's own dependencies instead.")
    ] = False,
    data_dir: DataDir = None,
    mlflow_url: Annotated[
        str | None,
        typer.Option(
            "--mlflow-url", envvar="HOKUSAI_MLFLOW_URL", help="With --server: MLflow's URL."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check each hop in order — config, dns, connect, health, auth, proxy_read, write,
    webhooks — and stop at the first failure with its fix. Exit 0 only when all pass."""
    if server:
        settings = settings_for(data_dir)
        if mlflow_url:
            settings.mlflow_url = mlflow_url
        report = ServerDoctor(settings).run()
    else:
        report = ClientDoctor(api_url, api_key, profile, write=write, webhook=webhook).run()
    if as_json:
        print(report.as_json())
    else:
        report.print(Console())
    raise typer.Exit(0 if report.ok else 1)
