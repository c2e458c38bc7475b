"""Where CLI commands work: on the server's own store, or through a remote gateway.

- **On the server's own store** (local): only with an explicit ``--data-dir``/
  ``HOKUSAI_HOME`` or ``HOKUSAI_DATABASE_URL`` (with ``HOKUSAI_SECRET_KEY``). Whoever holds
  the store and its secret acts as the operator (:meth:`Actor.operator`).
- **Admin from anywhere** (remote): otherwise, through ``/api/v1`` of the gateway named by
  ``--api-url``/``HOKUSAI_API_URL`` with ``--api-key``/``HOKUSAI_API_KEY``, or the profile
  saved by ``hokusai login`` (the SDK's own resolution, :func:`hokusai.sdk.config.resolve`).
  The key is the actor, and the gateway decides what it may do.

Both give the same services (:class:`AdminServices` or :class:`RemoteServices`), so a
command runs the same code and shows the same output in either place.

Only the local path needs the ``server`` extra (the settings, SQLAlchemy, the stores and
services): it is imported when a store is named, and without the extra the command says
what to install (:func:`hokusai.cli.lazy_commands.server_extra`). The remote path, and
this module, run on the base install.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from typer._click.globals import get_current_context  # typer (>= 0.29) vendors click

from hokusai.admin.actor import Actor, Origin
from hokusai.cli.console import fail
from hokusai.cli.errors import exit_with
from hokusai.cli.lazy_commands import server_extra
from hokusai.durations import parse_duration, parse_since
from hokusai.errors import DomainError, InvalidInput, Unauthenticated, Unavailable

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from hokusai.admin.services import AdminServices
    from hokusai.cli.remote import RemoteServices
    from hokusai.settings import Settings

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="HOKUSAI_HOME",
        help="Data directory of the embedded default (default ./.hokusai).",
        show_default=False,
    ),
]
# For the admin commands: naming the store is what makes a command work on it.
AdminDataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="HOKUSAI_HOME",
        help="Work on this server's own store (as its operator) instead of through a gateway.",
        show_default=False,
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        help="The gateway to manage (default: HOKUSAI_API_URL, then the `hokusai login` profile).",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="An admin API key for that gateway (default: HOKUSAI_API_KEY, then the profile).",
        show_default=False,
    ),
]
Profile = Annotated[str | None, typer.Option("--profile", help="Profile of the config file.")]

NO_STORE_NOR_KEY = (
    "no API key to manage a gateway with: pass --api-key (or set HOKUSAI_API_KEY, or run "
    "`hokusai login`) to work through a gateway, or pass --data-dir (HOKUSAI_HOME) or set "
    "HOKUSAI_DATABASE_URL to work on the server's own store as its operator"
)


# What a command on the local store can do instead, when the server extra is missing.
LOCAL_STORE_HINT = (
    "Without it, manage the server through its gateway: leave out --data-dir (and "
    "HOKUSAI_HOME, HOKUSAI_DATABASE_URL) and pass --api-url and --api-key (or set "
    "HOKUSAI_API_URL and HOKUSAI_API_KEY)."
)


def settings_for(data_dir: Path | None) -> Settings:
    """The server's settings (needs the ``server`` extra: pydantic-settings)."""
    from hokusai.settings import Settings

    settings = Settings()
    if data_dir is not None:
        settings.home = data_dir
    return settings


def open_store(data_dir: Path | None) -> tuple[Engine, Settings]:
    """The migrated auth store and the settings it was found with."""
    from hokusai.db.engine import make_engine
    from hokusai.db.migrate import upgrade

    settings = settings_for(data_dir)
    if not settings.database_url and not settings.home.exists():
        raise fail(
            f"no Hokusai data directory at {settings.home.resolve()}: start the server once "
            "(`hokusai serve`), pass --data-dir, or set HOKUSAI_DATABASE_URL"
        )
    try:
        secret = settings.resolved_secret
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    settings.secret_key = secret.decode()
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine, settings


def close_with_command(close: Callable[[], object]) -> None:
    """Call ``close`` when the running command ends, however it ends: what a command opens
    for its services (a store's connection pool, a gateway's HTTP client) is closed with
    it, also when it runs in-process (a test's ``CliRunner``, an embedding program)."""
    get_current_context().call_on_close(close)


def local_mlflow_url(settings: Settings) -> str:
    """The MLflow server of the store's deployment, for the commands that change MLflow's
    workspaces: ``HOKUSAI_MLFLOW_URL``, else the one the running ``hokusai serve``
    recorded in its runtime file; else a clear refusal (the default URL could be another
    server's)."""
    from hokusai.server.runtime_file import read_runtime

    if "mlflow_url" in settings.model_fields_set:
        return settings.mlflow_url
    runtime = read_runtime(settings.home)
    if runtime is not None and runtime.running:
        return runtime.mlflow_url
    raise Unavailable(
        "this needs the server's MLflow, and no running `hokusai serve` recorded one in "
        f"{settings.home}: start the server (`hokusai serve`), or set HOKUSAI_MLFLOW_URL "
        "to its MLflow URL"
    )


def local_services(engine: Engine, settings: Settings) -> AdminServices:
    from hokusai.admin.services import build_services
    from hokusai.keys.service import KeyService

    verifier = KeyService(engine, settings.resolved_secret, cache_seconds=0)
    return build_services(engine, settings, verifier, mlflow_url=lambda: local_mlflow_url(settings))


@dataclass(frozen=True)
class Admin:
    """The services a command calls, and the actor it calls them as."""

    services: AdminServices | RemoteServices
    actor: Actor
    remote: bool


def admin(
    command: str,
    data_dir: Path | None,
    api_url: str | None,
    api_key: str | None,
    profile: str | None = None,
) -> Admin:
    """Local when a store is named explicitly, else remote; else a clear refusal."""
    actor = Actor.operator(Origin.command(command))
    if data_dir is not None or os.environ.get("HOKUSAI_DATABASE_URL"):
        with server_extra(f"hokusai {command} on the server's own store", LOCAL_STORE_HINT):
            engine, settings = open_store(data_dir)
            close_with_command(engine.dispose)
            services = local_services(engine, settings)
        return Admin(services, actor, remote=False)
    from hokusai.cli.remote import RemoteServices
    from hokusai.sdk.config import resolve
    from hokusai.sdk.errors import ConfigurationError

    try:
        config = resolve(api_key=api_key, api_url=api_url, profile=profile)
    except ConfigurationError as exc:
        # resolve() explains a missing key for the SDK; here there is a second way out.
        message = NO_STORE_NOR_KEY if "No API key" in str(exc) else str(exc)
        raise exit_with(Unauthenticated(message)) from None
    gateway = RemoteServices.connect(config)
    close_with_command(gateway.close)
    return Admin(gateway, actor, remote=True)


def since_option(text: str | None) -> datetime | None:
    """``--since``, checked before any store is opened or request sent: a refused command
    touches nothing."""
    if text is None:
        return None
    try:
        return parse_since(text)
    except InvalidInput as error:
        raise InvalidInput(f"--since {error.message}") from None


def duration_option(text: str | None) -> timedelta | None:
    """A duration option (``--expires-in``), checked before anything is touched."""
    return parse_duration(text) if text else None


P = ParamSpec("P")
R = TypeVar("R")


def domain_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Show a :class:`DomainError` the one way (``cli/errors.py``) and exit with its code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DomainError as error:
            raise exit_with(error) from None

    return run
