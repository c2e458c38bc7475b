"""The audit log: who changed what through the gateway, and when.

Written for every authenticated write and every admin action, before the client
receives the answer, so an answered write always has its audit row.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from hokusai.db.schema import audit_log
from hokusai.gateway.observability import redact


@dataclass(frozen=True)
class AuditEntry:
    request_id: str
    key_id: str | None
    owner: str | None
    action: str
    method: str
    path: str
    status: int
    client: str | None
    detail: dict[str, Any] | None = None


def _valid_client(client: str | None) -> str | None:
    """Only an IP address (or "unknown") is written as the client: never a forged text."""
    if client is None or client == "unknown":
        return client
    try:
        return str(ipaddress.ip_address(client))
    except ValueError:
        return None


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, entry: AuditEntry) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(
                    at=datetime.now(UTC),
                    request_id=entry.request_id,
                    key_id=entry.key_id,
                    owner=entry.owner,
                    action=entry.action,
                    method=entry.method,
                    # The gateway refuses a key in the URL before anything is audited;
                    # redacting here too means no path can ever carry one into the log.
                    path=redact(entry.path),
                    status=entry.status,
                    client=_valid_client(entry.client),
                    detail=json.dumps(entry.detail) if entry.detail else None,
                )
            )

    def read(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(limit, 10_000)))
        if key_id:
            query = query.where(audit_log.c.key_id == key_id)
        if since:
            # Compare in UTC: SQLite compares the stored UTC text and ignores an offset.
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            query = query.where(audit_log.c.at >= since.astimezone(UTC))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            m = dict(row._mapping)
            at = m["at"]
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            m["at"] = at.isoformat()
            m["detail"] = json.loads(m["detail"]) if m["detail"] else None
            out.append(m)
        return out
