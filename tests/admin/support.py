"""The admin services on one migrated auth store, as the admin-service tests drive them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Table, func, select

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.services import AdminServices
from hokusai.audit_records import AuditRecord
from hokusai.db.schema import audit_log
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyService


@dataclass
class Admin:
    """The services on one store, an operator, and key actors of each scope."""

    engine: Engine
    services: AdminServices
    verifier: KeyService
    operator: Actor
    revoked: list[str] = field(default_factory=list)
    # (scope, workspace; None: a platform admin key) -> the plain key
    keys: dict[tuple[Scope, str | None], str] = field(default_factory=dict)

    def key_actor(
        self, scope: Scope, path: str = "/api/v1/keys", workspace: str = "default"
    ) -> Actor:
        """An HTTP caller holding a key of ``scope`` in ``workspace`` (made once each)."""
        return self._actor(scope, workspace, path)

    def platform_actor(self, path: str = "/api/v1/keys") -> Actor:
        """An HTTP caller holding a platform admin key (every workspace)."""
        return self._actor(Scope.ADMIN, None, path)

    def workspace(self, name: str) -> None:
        """Add workspace ``name`` to the store (the platform's row only: MLflow's side is
        the workspace service's, tested against a real MLflow)."""
        from hokusai.timestamps import utcnow
        from hokusai.workspaces import store
        from hokusai.workspaces.records import DEFAULT_PROTECTED_ALIASES, WorkspaceRecord

        now = utcnow()
        with self.engine.begin() as conn:
            store.insert_workspace(
                conn,
                record=WorkspaceRecord(name, "", DEFAULT_PROTECTED_ALIASES, False, now, now),
            )

    def _actor(self, scope: Scope, workspace: str | None, path: str) -> Actor:
        if (scope, workspace) not in self.keys:
            issued = self.services.keys.create(
                self.operator,
                name=f"{scope} key of {workspace or 'the platform'}",
                scope=scope,
                workspace=workspace,
                platform=workspace is None,
            )
            self.keys[scope, workspace] = issued.key
        record = self.verifier.authenticate(self.keys[scope, workspace])
        origin = Origin.http(
            request_id=f"req-{scope.value}-{workspace}",
            method="POST",
            path=path,
            client="127.0.0.1",
        )
        return Actor.for_key(record, origin)

    def count(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def rows(self, table: Table) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table))]

    def audit(self) -> list[AuditRecord]:
        """Every audit row, newest first."""
        return self.services.audit.query(self.operator, limit=10_000)

    def last_audit(self) -> AuditRecord:
        entries = self.audit()
        assert entries, "no audit row"
        return entries[0]

    def break_audit_log(self) -> None:
        """Make every audit insert fail for real: the table is gone."""
        audit_log.drop(self.engine)
