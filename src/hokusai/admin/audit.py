"""``AuditReader``: the audit log, filtered, for admins on every front-end."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from hokusai import audit_store
from hokusai.admin.actor import Actor
from hokusai.admin.transaction import reading
from hokusai.audit_records import AuditRecord
from hokusai.authorization import Action
from hokusai.durations import check_time, parse_since


class AuditReader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def query(
        self,
        actor: Actor,
        *,
        key_id: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Entries matching every filter given, newest first.

        ``since``: a datetime, or text as people type it (``"2h"``, ``"2030-01-01"``);
        ``limit`` is held to 1 … 10 000, as deliveries' and events' limits are.
        """
        if isinstance(since, str):
            start = parse_since(since) if since else None
        else:
            start = check_time(since, "since") if since else None
        with reading(self._engine, actor, Action.AUDIT_READ) as conn:
            return audit_store.query(
                conn, key_id=key_id or None, action=action or None, since=start, limit=limit
            )
