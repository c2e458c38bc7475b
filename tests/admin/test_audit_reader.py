"""AuditReader on a real auth store: filters by key, action and time, newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from hokusai.audit_records import AuditRecord
from hokusai.db.schema import audit_log
from hokusai.errors import InvalidInput
from hokusai.timestamps import utcnow
from tests.admin.support import Admin


def test_query_filters_by_key_action_since_and_limit(admin: Admin) -> None:
    actor = admin.platform_actor()  # its creation is audited under the operator
    one = admin.services.keys.create(actor, name="one")
    admin.services.keys.revoke(actor, one.record.id)
    admin.services.webhooks.add(actor, "https://hooks.example.com/in")
    # Age the operator's entry, so a time filter has something to leave out.
    with admin.engine.begin() as conn:
        conn.execute(
            update(audit_log)
            .where(audit_log.c.key_id.is_(None))
            .values(at=datetime(2031, 1, 1, tzinfo=UTC) - timedelta(days=3650))
        )
    reader = admin.services.audit

    mine = reader.query(actor, key_id=actor.key_id)
    assert [e.action for e in mine] == ["webhooks.add", "keys.revoke", "keys.create"]
    assert all(isinstance(e, AuditRecord) and e.at.tzinfo is not None for e in mine)
    assert [e.action for e in reader.query(actor, action="keys.revoke")] == ["keys.revoke"]
    assert len(reader.query(actor, since="1h")) == 3
    assert len(reader.query(actor, since=utcnow() - timedelta(hours=1))) == 3
    assert len(reader.query(actor, since="2000-01-01")) == 4
    assert [e.action for e in reader.query(actor, limit=1)] == ["webhooks.add"]
    assert len(reader.query(actor, limit=0)) == 1  # held to 1 … 10 000, as before
    assert mine[0].public()["at"] == mine[0].at.isoformat()


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"since": "999999999d"}, "between 1s and 3650d"),
        ({"since": "0001-01-01T00:00+05:00"}, "between 0001-01-01T00:00:00Z and 9999-12-31"),
        ({"since": datetime(9999, 12, 31, 1)}, "between 0001-01-01T00:00:00Z and 9999-12-31"),
        ({"since": "yesterday"}, "neither a duration"),
    ],
)
def test_bad_filters_are_invalid_input(admin: Admin, fields: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        admin.services.audit.query(admin.operator, **fields)  # type: ignore[arg-type]
