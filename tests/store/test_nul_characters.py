"""A NUL character is bad input on every store: PostgreSQL's text cannot hold one (its
driver would fail with DataError, read as a store failure), SQLite would keep it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.audit import AuditReader
from hokusai.errors import InvalidInput


def test_a_statement_with_a_nul_character_is_refused_before_it_runs(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(InvalidInput, match="NUL character"):
        conn.execute(text("SELECT :value"), {"value": "team\x00a"})
    with engine.connect() as conn:  # the connection is still good
        assert conn.execute(text("SELECT :value"), {"value": "team-a"}).scalar() == "team-a"


def test_an_audit_filter_with_a_nul_character_is_invalid_input(engine: Engine) -> None:
    reader = AuditReader(engine)
    with pytest.raises(InvalidInput):
        reader.query(Actor.operator(Origin.command("audit"), "tests"), workspace="team\x00a")
