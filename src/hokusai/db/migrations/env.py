"""Alembic environment: runs against the engine handed over by hokusai.db.migrate."""

from __future__ import annotations

from alembic import context

from hokusai.db.schema import metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
