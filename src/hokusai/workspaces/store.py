"""SQL access to the ``workspaces`` and ``trusted_keys`` tables: keyword-only functions,
no caching, no policy."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, Row, delete, select, update

from hokusai.db.schema import trusted_keys, workspaces
from hokusai.timestamps import as_utc
from hokusai.workspaces.records import TrustedKeyRecord, WorkspaceRecord


def _record(row: Row[tuple[object, ...]]) -> WorkspaceRecord:
    m = row._mapping
    return WorkspaceRecord(
        name=m["name"],
        description=m["description"],
        protected_aliases=tuple(json.loads(m["protected_aliases"])),
        promotion_gate=bool(m["promotion_gate"]),
        require_signed_versions=bool(m["require_signed_versions"]),
        created_at=as_utc(m["created_at"]),  # type: ignore[arg-type]
        updated_at=as_utc(m["updated_at"]),  # type: ignore[arg-type]
    )


def insert_workspace(conn: Connection, *, record: WorkspaceRecord) -> None:
    conn.execute(
        workspaces.insert().values(
            name=record.name,
            description=record.description,
            protected_aliases=json.dumps(list(record.protected_aliases)),
            promotion_gate=record.promotion_gate,
            require_signed_versions=record.require_signed_versions,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
    )


def get_workspace(conn: Connection, *, name: str) -> WorkspaceRecord | None:
    row = conn.execute(select(workspaces).where(workspaces.c.name == name)).first()
    return _record(row) if row else None


def list_workspaces(conn: Connection) -> list[WorkspaceRecord]:
    rows = conn.execute(select(workspaces).order_by(workspaces.c.name)).all()
    return [_record(r) for r in rows]


def update_workspace(
    conn: Connection,
    *,
    name: str,
    at: datetime,
    description: str | None = None,
    protected_aliases: tuple[str, ...] | None = None,
    promotion_gate: bool | None = None,
    require_signed_versions: bool | None = None,
) -> bool:
    values: dict[str, object] = {"updated_at": at}
    if description is not None:
        values["description"] = description
    if protected_aliases is not None:
        values["protected_aliases"] = json.dumps(list(protected_aliases))
    if promotion_gate is not None:
        values["promotion_gate"] = promotion_gate
    if require_signed_versions is not None:
        values["require_signed_versions"] = require_signed_versions
    result = conn.execute(update(workspaces).where(workspaces.c.name == name).values(**values))
    return result.rowcount == 1


def delete_workspace(conn: Connection, *, name: str) -> bool:
    result = conn.execute(delete(workspaces).where(workspaces.c.name == name))
    return result.rowcount == 1


# ---- trusted keys -------------------------------------------------------------------------


def _trusted(row: Row[tuple[object, ...]]) -> TrustedKeyRecord:
    m = row._mapping
    return TrustedKeyRecord(
        workspace=m["workspace"],
        fingerprint=m["fingerprint"],
        public_key=m["public_key"],
        label=m["label"],
        added_by=m["added_by"],
        added_at=as_utc(m["added_at"]),  # type: ignore[arg-type]
    )


def insert_trusted_key(conn: Connection, *, record: TrustedKeyRecord) -> None:
    conn.execute(
        trusted_keys.insert().values(
            workspace=record.workspace,
            fingerprint=record.fingerprint,
            public_key=record.public_key,
            label=record.label,
            added_by=record.added_by,
            added_at=record.added_at,
        )
    )


def get_trusted_key(
    conn: Connection, *, workspace: str, fingerprint: str
) -> TrustedKeyRecord | None:
    row = conn.execute(
        select(trusted_keys).where(
            trusted_keys.c.workspace == workspace, trusted_keys.c.fingerprint == fingerprint
        )
    ).first()
    return _trusted(row) if row else None


def list_trusted_keys(conn: Connection, *, workspace: str) -> list[TrustedKeyRecord]:
    rows = conn.execute(
        select(trusted_keys)
        .where(trusted_keys.c.workspace == workspace)
        .order_by(trusted_keys.c.added_at, trusted_keys.c.fingerprint)
    ).all()
    return [_trusted(r) for r in rows]


def delete_trusted_key(conn: Connection, *, workspace: str, fingerprint: str) -> bool:
    result = conn.execute(
        delete(trusted_keys).where(
            trusted_keys.c.workspace == workspace, trusted_keys.c.fingerprint == fingerprint
        )
    )
    return result.rowcount == 1


def delete_trusted_keys(conn: Connection, *, workspace: str) -> int:
    """Every key a (deleted) workspace trusted."""
    result = conn.execute(delete(trusted_keys).where(trusted_keys.c.workspace == workspace))
    return int(result.rowcount or 0)
