"""Fixtures of the admin-service tests: a migrated auth store (SQLite, then PostgreSQL),
the services on it, and actors of each kind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.services import build_services
from hokusai.keys.service import KeyService
from hokusai.settings import Settings
from tests.admin.support import Admin


@pytest.fixture
def admin(engine: Engine, tmp_path: Path) -> Admin:
    settings = Settings(
        home=tmp_path, database_url=str(engine.url), secret_key="admin-tests-secret"
    )
    verifier = KeyService(engine, settings.resolved_secret, cache_seconds=0)
    revoked: list[str] = []
    services = build_services(engine, settings, verifier, on_revoked=revoked.append)
    operator = Actor.operator(Origin.command("tests"), name="operator-on-host")
    return Admin(engine, services, verifier, operator, revoked)
