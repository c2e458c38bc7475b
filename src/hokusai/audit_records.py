"""The audit log's entries: one to write (:class:`AuditRow`) and one read back
(:class:`AuditRecord`).

Plain records with no store behind them: ``audit_store.py`` writes and reads them on a
connection, and the CLI's remote services (``cli/remote.py``) build them from a
gateway's ``/api/v1/audit`` answer on the base install, without the server's packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AuditRow:
    """One entry to write: who (``key_id``/``owner``), what (``action``, ``detail``),
    through which request (``request_id``, ``method``, ``path``, ``client``) and its
    ``status`` (the HTTP status, or 0 for a change made on the local store)."""

    request_id: str
    key_id: str | None
    owner: str | None
    action: str
    method: str
    path: str
    status: int
    client: str | None
    detail: dict[str, Any] | None = None
    # The workspace acted in; None: platform-wide.
    workspace: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One entry as read back."""

    id: int
    at: datetime
    request_id: str
    key_id: str | None
    owner: str | None
    action: str
    method: str
    path: str
    status: int
    client: str | None
    detail: dict[str, Any] | None
    workspace: str | None = None

    def public(self) -> dict[str, Any]:
        """The JSON-ready view ``/api/v1/audit`` and ``hokusai audit --json`` show."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "request_id": self.request_id,
            "key_id": self.key_id,
            "owner": self.owner,
            "action": self.action,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "client": self.client,
            "detail": self.detail,
            "workspace": self.workspace,
        }
