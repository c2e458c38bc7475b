"""The gateway's own audit writes: who changed what through the MLflow path, and when.

Written for every authenticated write (and every refusal by scope), before the client
receives the answer, so an answered write always has its audit row. Admin operations are
audited by the services, in their own transactions; both go through ``audit_store.py``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from hokusai import audit_store
from hokusai.audit_records import AuditRow
from hokusai.logs import redact
from hokusai.timestamps import utcnow

# One row to write; the same shape the services write.
AuditEntry = AuditRow


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
        # The gateway refuses a key in the URL before anything is audited; redacting here
        # too means no path can ever carry one into the log.
        safe = dataclasses.replace(
            entry, path=redact(entry.path), client=_valid_client(entry.client)
        )
        with self._engine.begin() as conn:
            audit_store.insert_entry(conn, entry=safe, at=utcnow())

    def read(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first, as ``/api/v1/audit`` shows entries."""
        with self._engine.connect() as conn:
            found = audit_store.query(conn, key_id=key_id, since=since, limit=limit)
        return [entry.public() for entry in found]
