"""Typed records of webhook endpoints, deliveries and events, as services return them.

Each has ``public()``: the JSON-ready view the HTTP API and ``--json`` show (the same
fields the dict-returning functions in ``endpoints.py`` and ``outbox.py`` give), and a
``from_row`` that reads a store row. An endpoint's secrets are never in a record.
Nothing here needs the server's packages: the CLI builds these records from a remote
gateway's answers on the base install.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hokusai.timestamps import as_utc

# The states of a delivery in the outbox.
PENDING, FAILED, DELIVERED, DEAD = "pending", "failed", "delivered", "dead"
DELIVERY_STATUSES = (PENDING, FAILED, DELIVERED, DEAD)


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value else None


def _utc(value: Any) -> datetime:
    converted = as_utc(value)
    assert converted is not None, "a required time column was empty"
    return converted


@dataclass(frozen=True)
class EndpointRecord:
    id: str
    workspace: str  # it receives only this workspace's events
    url: str
    description: str
    event_types: tuple[str, ...]  # empty: every event
    model_filter: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    # Until then the previous secret also signs (a rotation's grace); None: no rotation.
    secret_rotation_until: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EndpointRecord:
        return cls(
            id=row["id"],
            workspace=row["workspace"],
            url=row["url"],
            description=row["description"],
            event_types=tuple(json.loads(row["event_types"])),
            model_filter=row["model_filter"],
            enabled=bool(row["enabled"]),
            disabled_reason=row["disabled_reason"],
            created_at=_utc(row["created_at"]),
            updated_at=_utc(row["updated_at"]),
            secret_rotation_until=(
                as_utc(row["previous_secret_expires_at"])
                if row["previous_secret_encrypted"]
                else None
            ),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspace": self.workspace,
            "url": self.url,
            "description": self.description,
            "event_types": list(self.event_types),
            "model_filter": self.model_filter,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "secret_rotation_until": _iso(self.secret_rotation_until),
        }


@dataclass(frozen=True)
class EndpointSecret:
    """An endpoint at the one moment its signing secret is shown (added or rotated)."""

    endpoint: EndpointRecord
    secret: str


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_snippet: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AttemptRecord:
        return cls(
            id=int(row["id"]),
            attempted_at=_utc(row["attempted_at"]),
            status_code=row["status_code"],
            latency_ms=int(row["latency_ms"]),
            response_snippet=row["response_snippet"],
            error=row["error"],
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "attempted_at": self.attempted_at.isoformat(),
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
            "response_snippet": self.response_snippet,
            "error": self.error,
        }


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    event_id: str
    event_seq: int
    event_type: str
    model_name: str | None
    model_version: str | None
    workspace: str  # its event's (and endpoint's)
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    lease_until: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    attempt_log: tuple[AttemptRecord, ...]

    @classmethod
    def from_row(cls, row: dict[str, Any], attempts: list[AttemptRecord]) -> DeliveryRecord:
        return cls(
            id=int(row["id"]),
            event_id=row["event_id"],
            event_seq=int(row["event_seq"]),
            event_type=row["event_type"],
            model_name=row["model_name"],
            model_version=row["model_version"],
            workspace=row["workspace"],
            endpoint_id=row["endpoint_id"],
            status=row["status"],
            attempts=int(row["attempts"]),
            next_attempt_at=as_utc(row["next_attempt_at"]),
            lease_until=as_utc(row["lease_until"]),
            last_status_code=row["last_status_code"],
            last_error=row["last_error"],
            created_at=_utc(row["created_at"]),
            updated_at=_utc(row["updated_at"]),
            attempt_log=tuple(attempts),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_seq": self.event_seq,
            "event_id": self.event_id,
            "workspace": self.workspace,
            "endpoint_id": self.endpoint_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "lease_until": _iso(self.lease_until),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "event_type": self.event_type,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "attempt_log": [a.public() for a in self.attempt_log],
        }


@dataclass(frozen=True)
class EventRecord:
    seq: int
    id: str
    type: str
    occurred_at: datetime
    key_id: str | None
    model_name: str | None
    model_version: str | None
    payload: dict[str, Any]
    dedupe_key: str | None
    source: str
    workspace: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EventRecord:
        return cls(
            seq=int(row["seq"]),
            id=row["id"],
            type=row["type"],
            occurred_at=_utc(row["occurred_at"]),
            key_id=row["key_id"],
            model_name=row["model_name"],
            model_version=row["model_version"],
            payload=json.loads(row["payload"]),
            dedupe_key=row["dedupe_key"],
            source=row["source"],
            workspace=row["workspace"],
        )

    def public(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "key_id": self.key_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "payload": self.payload,
            "dedupe_key": self.dedupe_key,
            "source": self.source,
            "workspace": self.workspace,
        }


@dataclass(frozen=True)
class DeliveryTestOutcome:
    """What a test delivery did: its event, and the receiver's answer or the error."""

    event_id: str
    delivered: bool
    status_code: int | None
    latency_ms: int
    error: str | None
    response_snippet: str | None

    def public(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "delivered": self.delivered,
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "response_snippet": self.response_snippet,
        }
