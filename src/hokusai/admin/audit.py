"""``AuditReader``: the audit log, filtered, for admins on every front-end."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from hokusai import audit_store
from hokusai.admin.actor import Actor
from hokusai.admin.transaction import reading, store_errors
from hokusai.audit_records import AuditRecord
from hokusai.authorization import DENIED, Action
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
        workspace: str | None = None,
    ) -> list[AuditRecord]:
        """Entries matching every filter given, newest first.

        A workspace's admin reads only its workspace's entries; a platform admin (or the
        operator) reads every entry, or one workspace's with ``workspace``.

        ``since``: a datetime, or text as people type it (``"2h"``, ``"2030-01-01"``);
        ``limit`` is held to 1 … 10 000, as deliveries' and events' limits are.
        """
        if isinstance(since, str):
            start = parse_since(since) if since else None
        else:
            start = check_time(since, "since") if since else None
        scope = workspace or actor.workspace
        with reading(self._engine, actor, Action.AUDIT_READ, scope) as conn:
            return audit_store.query(
                conn,
                key_id=key_id or None,
                action=action or None,
                since=start,
                workspace=scope,
                limit=limit,
            )

    def denials(self, actor: Actor, *, limit: int = 20) -> list[AuditRecord]:
        """The acting key's own most recent refusals (audit action ``denied``), newest
        first, with what refused each: any key may read its own, so ``hokusai doctor`` can
        explain them. The operator has no key and so no refusals."""
        if actor.key_id is None:
            return []
        # No authorization: like whoami, this shows a key only what concerns itself.
        with store_errors(), self._engine.connect() as conn:
            return audit_store.query(
                conn, key_id=actor.key_id, action=DENIED, limit=max(1, min(limit, 100))
            )
