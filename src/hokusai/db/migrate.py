"""Bring the auth store's schema to the newest Alembic revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration the store has not seen yet (safe to call on each start)."""
    command.upgrade(alembic_config(engine), "head")


def pending_revisions(engine: Engine) -> list[str]:
    """Revisions not yet applied: empty when the store is migrated."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    head = script.get_current_head()
    if head is None or head in current:
        return []
    applied = {rev.revision for c in current for rev in script.walk_revisions("base", c)}
    return [
        rev.revision for rev in script.walk_revisions("base", head) if rev.revision not in applied
    ]
