"""SQL access to the ``api_keys`` table: keyword-only functions, no caching, no policy."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, Row, func, or_, select, update

from hokusai.db.schema import api_keys
from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope
from hokusai.timestamps import as_utc


def _record(row: Row[tuple[object, ...]]) -> KeyRecord:
    m = row._mapping
    return KeyRecord(
        id=m["id"],
        display_prefix=m["display_prefix"],
        name=m["name"],
        owner=m["owner"],
        scope=Scope(m["scope"]),
        env=m["env"],
        created_at=as_utc(m["created_at"]),  # type: ignore[arg-type]
        expires_at=as_utc(m["expires_at"]),
        revoked_at=as_utc(m["revoked_at"]),
        last_used_at=as_utc(m["last_used_at"]),
        rotated_from=m["rotated_from"],
        workspace=m["workspace"],
        models=tuple(json.loads(m["model_patterns"])) if m["model_patterns"] else (),
        subject=m["subject"],
    )


_COLUMNS = [c for c in api_keys.c if c.name != "key_hash"]
_RECORD_COLUMNS = [c for c in _COLUMNS if c.name != "model_patterns"]


def insert_key(conn: Connection, *, record: KeyRecord, key_hash: str) -> None:
    conn.execute(
        api_keys.insert().values(
            key_hash=key_hash,
            model_patterns=json.dumps(list(record.models)) if record.models else None,
            **{c.name: getattr(record, c.name) for c in _RECORD_COLUMNS},
        )
    )


def get_by_hash(conn: Connection, *, key_hash: str) -> KeyRecord | None:
    row = conn.execute(select(*_COLUMNS).where(api_keys.c.key_hash == key_hash)).first()
    return _record(row) if row else None


def find(
    conn: Connection,
    *,
    key_id: str | None = None,
    prefix: str | None = None,
    key_hash: str | None = None,
) -> list[KeyRecord]:
    """Keys matching any of the given identifiers."""
    conditions = []
    if key_id:
        conditions.append(api_keys.c.id == key_id)
    if prefix:
        conditions.append(api_keys.c.display_prefix == prefix)
    if key_hash:
        conditions.append(api_keys.c.key_hash == key_hash)
    if not conditions:
        return []
    rows = conn.execute(select(*_COLUMNS).where(or_(*conditions))).all()
    return [_record(r) for r in rows]


def list_keys(
    conn: Connection, *, include_revoked: bool, workspace: str | None = None
) -> list[KeyRecord]:
    """Keys, oldest first; only ``workspace``'s when it is given."""
    query = select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id)
    if workspace is not None:
        query = query.where(api_keys.c.workspace == workspace)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return [_record(r) for r in conn.execute(query).all()]


def count_keys(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(api_keys)).scalar_one())


def mark_revoked(conn: Connection, *, key_id: str, at: datetime) -> bool:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount == 1


def touch_last_used(conn: Connection, *, key_id: str, at: datetime) -> None:
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at))


def get_by_subject(conn: Connection, *, subject: str) -> KeyRecord | None:
    """The row of the person signed in with single sign-on as ``subject``, if any."""
    row = conn.execute(select(*_COLUMNS).where(api_keys.c.subject == subject)).first()
    return _record(row) if row else None


def update_person(
    conn: Connection,
    *,
    key_id: str,
    name: str,
    owner: str,
    scope: Scope,
    workspace: str,
    at: datetime,
) -> None:
    """A person's name and access as their provider and the role map say at this sign-in."""
    conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(name=name, owner=owner, scope=scope.value, workspace=workspace, last_used_at=at)
    )
