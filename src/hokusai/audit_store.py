"""SQL access to the ``audit_log`` table on a caller's connection.

Taking the connection is the point: a service writes its change and the change's audit
row in one transaction, so a change without its row (or a row without its change)
cannot be committed. Keyword-only functions, no policy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from hokusai.audit_records import AuditRecord, AuditRow
from hokusai.db.schema import audit_log
from hokusai.timestamps import as_utc, utcnow

MAX_READ = 10_000


def insert_entry(conn: Connection, *, entry: AuditRow, at: datetime | None = None) -> None:
    conn.execute(
        audit_log.insert().values(
            at=at or utcnow(),
            request_id=entry.request_id,
            key_id=entry.key_id,
            owner=entry.owner,
            action=entry.action,
            method=entry.method,
            path=entry.path,
            status=entry.status,
            client=entry.client,
            detail=json.dumps(entry.detail) if entry.detail else None,
            workspace=entry.workspace,
        )
    )


def query(
    conn: Connection,
    *,
    key_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    workspace: str | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """Entries matching every filter given, newest first, at most ``limit`` (≤ 10 000)."""
    statement = (
        select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(limit, MAX_READ)))
    )
    if key_id:
        statement = statement.where(audit_log.c.key_id == key_id)
    if action:
        statement = statement.where(audit_log.c.action == action)
    if workspace:
        statement = statement.where(audit_log.c.workspace == workspace)
    if since:
        # Compare in UTC: SQLite compares the stored UTC text and ignores an offset.
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since
        statement = statement.where(audit_log.c.at >= since.astimezone(UTC))
    return [_record(dict(row._mapping)) for row in conn.execute(statement)]


def _record(m: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        id=int(m["id"]),
        at=as_utc(m["at"]),  # type: ignore[arg-type]
        request_id=m["request_id"],
        key_id=m["key_id"],
        owner=m["owner"],
        action=m["action"],
        method=m["method"],
        path=m["path"],
        status=int(m["status"]),
        client=m["client"],
        detail=json.loads(m["detail"]) if m["detail"] else None,
        workspace=m["workspace"],
    )
