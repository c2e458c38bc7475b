"""How CLI commands find the server's stores: ``--data-dir``/``HOKUSAI_HOME`` or
``HOKUSAI_DATABASE_URL`` (with ``HOKUSAI_SECRET_KEY``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine

from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.gateway.admin_api import DurationOutOfRange, parse_duration, time_in_range
from hokusai.gateway.audit import AuditLog
from hokusai.keys.service import KeyService
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

err = Console(stderr=True)


def settings_for(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings.home = data_dir
    return settings


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def open_store(data_dir: Path | None) -> tuple[Engine, Settings]:
    """The migrated auth store and the settings it was found with."""
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
    upgrade(engine)
    return engine, settings


def open_keys(data_dir: Path | None) -> tuple[KeyService, AuditLog]:
    engine, settings = open_store(data_dir)
    return KeyService(engine, settings.resolved_secret, cache_seconds=0), AuditLog(engine)


def parse_since(since: str) -> datetime:
    """``--since``: a duration back from now (``1h``, ``7d``) or an ISO time (UTC if naive)."""
    try:
        return datetime.now(UTC) - parse_duration(since)
    except DurationOutOfRange as exc:
        raise fail(f"--since: {exc}", 2) from None
    except ValueError:
        pass
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise fail(f"--since {since!r} is neither a duration (1h, 7d) nor an ISO time", 2) from None
    try:
        return time_in_range(start)
    except ValueError as exc:
        raise fail(f"--since: {exc}", 2) from None
