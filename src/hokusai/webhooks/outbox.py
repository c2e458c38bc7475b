"""The outbox: events, their fan-out into deliveries, and the delivery bookkeeping.

Events fan out only within their workspace: an event's deliveries go to the enabled
endpoints of the same workspace (whose filters match), on emit and on replay alike.

Every function here is one transaction. Claiming uses ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so dispatchers in any number of processes never take the same delivery;
SQLite has one writer at a time, which gives the same guarantee.

Longer than most modules (about 450 lines) because every transaction on the outbox's
tables is here: the locking rules (``SKIP LOCKED``, leases) are read in one place.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from hokusai.db.schema import deliveries, delivery_attempts, events, webhook_endpoints
from hokusai.timestamps import as_utc, utcnow
from hokusai.webhooks.delivery import AttemptResult
from hokusai.webhooks.events import Event
from hokusai.webhooks.records import DEAD, DELIVERED, FAILED, PENDING


def endpoint_wants(endpoint: dict[str, Any], event_type: str, model_name: str | None) -> bool:
    types = json.loads(endpoint["event_types"])
    if types and event_type not in types:
        return False
    pattern = endpoint["model_filter"]
    return not pattern or (model_name is not None and fnmatch.fnmatchcase(model_name, pattern))


def emit(engine: Engine, new_events: list[Event]) -> list[Event]:
    """Store events and their deliveries, atomically per event; the events stored.

    An event whose dedupe key is already stored is skipped: that is how the reconciler
    and the gateway never emit the same change twice.
    """
    stored = []
    for event in new_events:
        try:
            with engine.begin() as conn:
                _insert_event(conn, event)
            stored.append(event)
        except IntegrityError:
            continue
    return stored


def _insert_event(conn: Connection, event: Event) -> None:
    result = conn.execute(
        events.insert().values(
            id=event.id,
            type=event.type,
            occurred_at=event.occurred_at,
            key_id=event.key_id,
            model_name=event.model_name,
            model_version=event.model_version,
            payload=event.body(),
            dedupe_key=event.dedupe_key,
            source=event.source,
            workspace=event.workspace,
        )
    )
    seq = result.inserted_primary_key[0]  # type: ignore[index]
    endpoints = conn.execute(
        select(webhook_endpoints).where(
            webhook_endpoints.c.enabled, webhook_endpoints.c.workspace == event.workspace
        )
    ).all()
    now = utcnow()
    rows = [
        {
            "event_seq": seq,
            "event_id": event.id,
            "endpoint_id": e.id,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for e in endpoints
        if endpoint_wants(dict(e._mapping), event.type, event.model_name)
    ]
    if rows:
        conn.execute(deliveries.insert(), rows)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    event_id: str
    event_seq: int
    attempts: int
    payload: str
    endpoint: dict[str, Any]
    model_name: str | None = None


_FREE = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("now"))


@functools.cache
def _due_query(limit: int, skip_locked: bool) -> Select[tuple[Any]]:
    """The ids of up to ``limit`` due deliveries, oldest first (``now`` bound at execution).

    Built once: every dispatcher asks this several times a second while idle, and building
    the statement cost more than running it on an empty outbox."""
    due = (
        select(deliveries.c.id)
        .join(webhook_endpoints, webhook_endpoints.c.id == deliveries.c.endpoint_id)
        .where(
            deliveries.c.status.in_((PENDING, FAILED)),
            deliveries.c.next_attempt_at <= bindparam("now"),
            _FREE,
            webhook_endpoints.c.enabled,
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.event_seq)
        .limit(limit)
    )
    return due.with_for_update(skip_locked=True, of=deliveries) if skip_locked else due


def claim_due(engine: Engine, *, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for this dispatcher, oldest event first."""
    now = utcnow()
    with engine.begin() as conn:
        due = _due_query(limit, conn.dialect.name == "postgresql")
        candidates = conn.execute(due, {"now": now}).scalars().all()
        if not candidates:
            return []
        # One conditional update for the batch: of two dispatchers that saw the same rows
        # (possible on SQLite), only one takes each, and RETURNING says which.
        ids = list(
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id.in_(candidates),
                    deliveries.c.status.in_((PENDING, FAILED)),
                    _FREE,
                )
                .values(lease_until=now + lease, attempts=deliveries.c.attempts + 1, updated_at=now)
                .returning(deliveries.c.id),
                {"now": now},
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        rows = conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.event_id,
                deliveries.c.event_seq,
                deliveries.c.attempts,
                events.c.payload,
                events.c.model_name,
                webhook_endpoints,
            )
            .join(events, events.c.id == deliveries.c.event_id)
            .join(webhook_endpoints, webhook_endpoints.c.id == deliveries.c.endpoint_id)
            .where(deliveries.c.id.in_(ids))
            .order_by(deliveries.c.event_seq)
        ).all()
    claimed = []
    for row in rows:
        m = row._mapping
        endpoint = {c.name: m[c.name] for c in webhook_endpoints.c if c.name in m}
        endpoint["id"] = m[webhook_endpoints.c.id]
        claimed.append(
            Claimed(
                m["id"],
                m["event_id"],
                m["event_seq"],
                m["attempts"],
                m["payload"],
                endpoint,
                m["model_name"],
            )
        )
    return claimed


def record_attempts(
    engine: Engine, outcomes: list[tuple[Claimed, AttemptResult]], schedule: list[float]
) -> None:
    """Store each attempt and move its delivery on: delivered, retry later, or dead.

    One multi-row insert and one executemany update for the whole round.
    """
    if not outcomes:
        return
    now = utcnow()
    attempts, changes, gone = [], [], set()
    for claimed, result in outcomes:
        attempts.append(
            {
                "delivery_id": claimed.delivery_id,
                "attempted_at": now,
                "status_code": result.status_code,
                "latency_ms": result.latency_ms,
                "response_snippet": result.response_snippet,
                "error": result.error,
            }
        )
        status, next_at = FAILED, None
        if result.delivered:
            status = DELIVERED
        elif result.gone or claimed.attempts >= len(schedule):
            status = DEAD
            if result.gone:
                gone.add(claimed.endpoint["id"])
        else:
            next_at = now + timedelta(seconds=schedule[claimed.attempts])
        changes.append(
            {
                "b_id": claimed.delivery_id,
                "b_status": status,
                "b_next": next_at,
                "b_code": result.status_code,
                "b_error": result.error,
            }
        )
    with engine.begin() as conn:
        conn.execute(delivery_attempts.insert(), attempts)
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                next_attempt_at=bindparam("b_next"),
                last_status_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                lease_until=None,
                updated_at=now,
            ),
            changes,
        )
        if gone:
            conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id.in_(gone))
                .values(
                    enabled=False, updated_at=now, disabled_reason="the receiver answered 410 Gone"
                )
            )


def release(engine: Engine, unsent: list[Claimed]) -> None:
    """Give back deliveries a round claimed but did not attempt: due again at once, and
    the claim does not count as an attempt."""
    if not unsent:
        return
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_([c.delivery_id for c in unsent]))
            .values(lease_until=None, attempts=deliveries.c.attempts - 1, updated_at=utcnow())
        )


def dispatch_lag_seconds(engine: Engine) -> float:
    """How long the oldest due delivery has waited; 0 when none is due."""
    now = utcnow()
    with engine.connect() as conn:
        oldest = conn.execute(
            select(func.min(deliveries.c.next_attempt_at))
            .join(webhook_endpoints, webhook_endpoints.c.id == deliveries.c.endpoint_id)
            .where(
                deliveries.c.status.in_((PENDING, FAILED)),
                deliveries.c.next_attempt_at <= now,
                webhook_endpoints.c.enabled,
            )
        ).scalar()
    oldest = as_utc(oldest)
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def replay_on(
    conn: Connection,
    *,
    event_id: str | None = None,
    since: datetime | None = None,
    endpoint_id: str | None = None,
    workspace: str | None = None,
) -> int:
    """Queue one event (``event_id``), or every event since a time, again, to the enabled
    endpoints of its workspace that want it (or only ``endpoint_id``); the count queued.
    ``workspace``: only that workspace's events (None: every workspace's). Inside the
    caller's transaction; ``LookupError`` for no such event."""
    now = utcnow()
    query = select(
        events.c.seq, events.c.id, events.c.type, events.c.model_name, events.c.workspace
    )
    if event_id:
        query = query.where(events.c.id == event_id)
    if since:
        query = query.where(events.c.occurred_at >= since)
    if workspace is not None:
        query = query.where(events.c.workspace == workspace)
    chosen = conn.execute(query.order_by(events.c.seq)).all()
    if event_id and not chosen:
        raise LookupError(f"no event {event_id!r}")
    endpoint_query = select(webhook_endpoints).where(webhook_endpoints.c.enabled)
    if endpoint_id:
        endpoint_query = endpoint_query.where(webhook_endpoints.c.id == endpoint_id)
    endpoints = [dict(e._mapping) for e in conn.execute(endpoint_query)]
    queued = 0
    for event in chosen:
        for endpoint in endpoints:
            if endpoint["workspace"] != event.workspace:
                continue
            if not endpoint_wants(endpoint, event.type, event.model_name):
                continue
            reset = conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.event_id == event.id,
                    deliveries.c.endpoint_id == endpoint["id"],
                )
                .values(
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    updated_at=now,
                )
            )
            if reset.rowcount == 0:
                conn.execute(
                    deliveries.insert().values(
                        event_seq=event.seq,
                        event_id=event.id,
                        endpoint_id=endpoint["id"],
                        status=PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
            queued += 1
    return queued


def event_workspace(conn: Connection, *, event_id: str) -> str | None:
    """The workspace of one event; None when there is no such event."""
    found = conn.execute(select(events.c.workspace).where(events.c.id == event_id)).scalar()
    return str(found) if found is not None else None


def emit_to_endpoint_on(
    conn: Connection, event: Event, endpoint_id: str, lease: timedelta
) -> Claimed:
    """:func:`emit_to_endpoint` inside the caller's transaction."""
    now = utcnow()
    seq = conn.execute(
        events.insert().values(
            id=event.id,
            type=event.type,
            occurred_at=event.occurred_at,
            key_id=event.key_id,
            model_name=None,
            model_version=None,
            payload=event.body(),
            dedupe_key=None,
            source=event.source,
            workspace=event.workspace,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    delivery_id = conn.execute(
        deliveries.insert().values(
            event_seq=seq,
            event_id=event.id,
            endpoint_id=endpoint_id,
            status=PENDING,
            attempts=1,
            next_attempt_at=None,
            lease_until=now + lease,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    endpoint = dict(
        conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
        .one()
        ._mapping
    )
    return Claimed(int(delivery_id), event.id, int(seq), 1, event.body(), endpoint)


def delivery_rows(
    conn: Connection,
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    workspace: str | None = None,
    limit: int = 100,
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Deliveries (with their event's type, model and workspace) and each one's attempts,
    as stored, newest first; ``workspace``: only that workspace's (an event's deliveries
    are in its workspace, and stay there after their endpoint is removed)."""
    query = (
        select(
            deliveries,
            events.c.type.label("event_type"),
            events.c.model_name,
            events.c.model_version,
            events.c.workspace,
        )
        .join(events, events.c.id == deliveries.c.event_id)
        .order_by(deliveries.c.id.desc())
        .limit(max(1, min(limit, 10_000)))
    )
    if status:
        query = query.where(deliveries.c.status == status)
    if endpoint_id:
        query = query.where(deliveries.c.endpoint_id == endpoint_id)
    if event_id:
        query = query.where(deliveries.c.event_id == event_id)
    if workspace is not None:
        query = query.where(events.c.workspace == workspace)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    attempts: dict[int, list[dict[str, Any]]] = {}
    ids = [r["id"] for r in rows]
    if ids:
        for a in conn.execute(
            select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id.in_(ids))
            .order_by(delivery_attempts.c.id)
        ):
            entry = dict(a._mapping)
            attempts.setdefault(entry.pop("delivery_id"), []).append(entry)
    return [(row, attempts.get(row["id"], [])) for row in rows]


def event_rows(
    conn: Connection,
    *,
    since: datetime | None = None,
    model_name: str | None = None,
    workspace: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Events as stored, newest first; ``workspace``: only that workspace's."""
    query = select(events).order_by(events.c.seq.desc()).limit(max(1, min(limit, 10_000)))
    if since:
        query = query.where(events.c.occurred_at >= since)
    if model_name:
        query = query.where(events.c.model_name == model_name)
    if workspace is not None:
        query = query.where(events.c.workspace == workspace)
    return [dict(r._mapping) for r in conn.execute(query)]
