"""SQL access to the ``workspaces`` table: keyword-only functions, no caching, no policy."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, Row, delete, select, update

from hokusai.db.schema import workspaces
from hokusai.timestamps import as_utc
from hokusai.workspaces.records import WorkspaceRecord


def _record(row: Row[tuple[object, ...]]) -> WorkspaceRecord:
    m = row._mapping
    return WorkspaceRecord(
        name=m["name"],
        description=m["description"],
        protected_aliases=tuple(json.loads(m["protected_aliases"])),
        promotion_gate=bool(m["promotion_gate"]),
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
) -> bool:
    values: dict[str, object] = {"updated_at": at}
    if description is not None:
        values["description"] = description
    if protected_aliases is not None:
        values["protected_aliases"] = json.dumps(list(protected_aliases))
    if promotion_gate is not None:
        values["promotion_gate"] = promotion_gate
    result = conn.execute(update(workspaces).where(workspaces.c.name == name).values(**values))
    return result.rowcount == 1


def delete_workspace(conn: Connection, *, name: str) -> bool:
    result = conn.execute(delete(workspaces).where(workspaces.c.name == name))
    return result.rowcount == 1
