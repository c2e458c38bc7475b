"""``WebhookAdmin``: webhook endpoints, their deliveries and replays, for every front-end.

Every change (add, disable, enable, remove, rotate a secret, send a test, replay) is
authorized, made and audited in one transaction; reads are authorized too. Records come
back typed (:mod:`hokusai.webhooks.records`), never as store rows.

An endpoint belongs to a workspace, and every operation on it is authorized for that
workspace. A workspace admin sees only their workspace's endpoints, deliveries and
events: another workspace's endpoint or event answers as if it did not exist, so that
no team learns what another has. A platform admin (and the operator) sees every
workspace's, or one's with ``workspace``.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Connection, Engine

from hokusai.admin.actor import Actor, Outcome
from hokusai.admin.transaction import Change, change, reading, store_errors
from hokusai.authorization import Action
from hokusai.durations import check_time, parse_since
from hokusai.errors import InvalidInput, NotFound
from hokusai.timestamps import utcnow
from hokusai.webhooks import endpoints as endpoint_store
from hokusai.webhooks import outbox
from hokusai.webhooks.delivery import new_session
from hokusai.webhooks.dispatcher import Dispatcher, DispatcherSettings
from hokusai.webhooks.endpoints import ROTATION_GRACE, EndpointError
from hokusai.webhooks.events import WEBHOOK_TEST, Event
from hokusai.webhooks.records import (
    DELIVERY_STATUSES,
    AttemptRecord,
    DeliveryRecord,
    DeliveryTestOutcome,
    EndpointRecord,
    EndpointSecret,
    EventRecord,
)
from hokusai.webhooks.signing import SecretBox, new_secret
from hokusai.workspaces import store as workspace_store
from hokusai.workspaces.records import DEFAULT_WORKSPACE

DISABLED_BY_ADMIN = "disabled by an admin"


class WebhookAdmin:
    """Webhook administration; every method takes the acting :class:`Actor` first."""

    def __init__(self, engine: Engine, box: SecretBox, dispatch: DispatcherSettings) -> None:
        self._engine = engine
        self._box = box
        self._dispatch = dispatch

    # ---- endpoints -------------------------------------------------------------------

    def add(
        self,
        actor: Actor,
        url: str,
        *,
        event_types: list[str] | None = None,
        model_filter: str | None = None,
        description: str = "",
        workspace: str | None = None,
    ) -> EndpointSecret:
        """A new endpoint and its signing secret (shown only in the answer), in the
        actor's workspace; a platform admin names one (default ``default``)."""
        target = workspace or actor.workspace or DEFAULT_WORKSPACE
        secret = new_secret()
        try:
            row = endpoint_store.new_endpoint_row(
                url,
                event_types=list(event_types or []),
                model_filter=model_filter,
                description=description,
                sealed_secret=self._box.seal(secret),
                allow_private=self._dispatch.allow_private,
                workspace=target,
            )
        except EndpointError as exc:
            raise InvalidInput(str(exc)) from None
        with change(self._engine, actor, Action.WEBHOOKS_ADD, target) as unit:
            if workspace_store.get_workspace(unit.conn, name=target) is None:
                raise NotFound(f"no workspace {target!r}")
            endpoint_store.insert_endpoint(unit.conn, row=row)
            unit.audit(target=row["id"], outcome=Outcome.CREATED, endpoint=row["id"])
            record = self._endpoint(unit.conn, row["id"])
        return EndpointSecret(record, secret)

    def list(self, actor: Actor, *, workspace: str | None = None) -> builtins.list[EndpointRecord]:
        """The endpoints of the actor's workspace; a platform admin's: every workspace's,
        or ``workspace``'s."""
        seen = _seen(actor, workspace)
        with reading(self._engine, actor, Action.WEBHOOKS_LIST, seen) as conn:
            rows = endpoint_store.endpoint_rows(conn, workspace=seen)
        return [EndpointRecord.from_row(r) for r in rows]

    def get(self, actor: Actor, endpoint_id: str) -> EndpointRecord:
        with reading(self._engine, actor, Action.WEBHOOKS_GET, actor.workspace) as conn:
            return EndpointRecord.from_row(self._endpoint_row(conn, actor, endpoint_id))

    def disable(
        self, actor: Actor, endpoint_id: str, *, reason: str | None = None
    ) -> EndpointRecord:
        """Stop deliveries to an endpoint; they wait until it is enabled again."""
        return self._set_enabled(actor, endpoint_id, False, reason or DISABLED_BY_ADMIN)

    def enable(self, actor: Actor, endpoint_id: str) -> EndpointRecord:
        return self._set_enabled(actor, endpoint_id, True, None)

    def remove(self, actor: Actor, endpoint_id: str) -> EndpointRecord:
        """Remove an endpoint and its undelivered deliveries; the endpoint as it was."""
        with change(self._engine, actor, Action.WEBHOOKS_REMOVE, actor.workspace) as unit:
            record = EndpointRecord.from_row(self._target(unit, endpoint_id))
            endpoint_store.delete_endpoint(unit.conn, endpoint_id=endpoint_id)
            unit.audit(target=endpoint_id, endpoint=endpoint_id)
        return record

    def rotate_secret(
        self, actor: Actor, endpoint_id: str, *, grace: timedelta = ROTATION_GRACE
    ) -> EndpointSecret:
        """A new signing secret; the old one also signs (a second signature) for ``grace``."""
        secret = new_secret()
        with change(self._engine, actor, Action.WEBHOOKS_ROTATE_SECRET, actor.workspace) as unit:
            row = self._target(unit, endpoint_id)
            endpoint_store.update_endpoint(
                unit.conn,
                endpoint_id=endpoint_id,
                secret_encrypted=self._box.seal(secret),
                previous_secret_encrypted=row["secret_encrypted"],
                previous_secret_expires_at=utcnow() + grace,
            )
            unit.audit(target=endpoint_id, endpoint=endpoint_id)
            record = self._endpoint(unit.conn, endpoint_id)
        return EndpointSecret(record, secret)

    async def test(self, actor: Actor, endpoint_id: str) -> DeliveryTestOutcome:
        """Send a ``webhook.test`` event to one endpoint now: one attempt, never retried.

        The test event, its delivery and the audit row are stored in one transaction
        before anything is sent; the attempt's outcome is recorded after it.
        """

        def store_test() -> tuple[Event, outbox.Claimed]:
            with change(self._engine, actor, Action.WEBHOOKS_TEST, actor.workspace) as unit:
                row = self._target(unit, endpoint_id)
                # The test event is in the endpoint's workspace, like every event it gets.
                event = Event(
                    WEBHOOK_TEST,
                    {"endpoint_id": endpoint_id, "message": "a test delivery from Hokusai"},
                    actor.key_id,
                    "test",
                    workspace=row["workspace"],
                )
                claimed = outbox.emit_to_endpoint_on(
                    unit.conn, event, endpoint_id, self._dispatch.lease
                )
                unit.audit(target=endpoint_id, endpoint=endpoint_id, event_id=event.id)
            return event, claimed

        event, claimed = await anyio.to_thread.run_sync(store_test)
        # The same attempt as every delivery's (it never raises: a failure is its outcome).
        async with new_session(1) as client:
            result = await Dispatcher(self._engine, self._box, self._dispatch).attempt(
                client, claimed
            )
        # A test is one attempt: a failure goes straight to dead, with its reason.
        with store_errors():
            await anyio.to_thread.run_sync(
                outbox.record_attempts, self._engine, [(claimed, result)], [0.0]
            )
        return DeliveryTestOutcome(
            event_id=event.id,
            delivered=result.delivered,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            response_snippet=result.response_snippet,
        )

    # ---- deliveries and events -------------------------------------------------------

    def deliveries(
        self,
        actor: Actor,
        *,
        status: str | None = None,
        endpoint_id: str | None = None,
        event_id: str | None = None,
        workspace: str | None = None,
        limit: int = 100,
    ) -> builtins.list[DeliveryRecord]:
        """Deliveries with their attempts, newest first: of the actor's workspace; a
        platform admin's: every workspace's, or ``workspace``'s."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
        seen = _seen(actor, workspace)
        with reading(self._engine, actor, Action.WEBHOOKS_DELIVERIES, seen) as conn:
            found = outbox.delivery_rows(
                conn,
                status=status,
                endpoint_id=endpoint_id,
                event_id=event_id,
                workspace=seen,
                limit=limit,
            )
        return [
            DeliveryRecord.from_row(row, [AttemptRecord.from_row(a) for a in attempts])
            for row, attempts in found
        ]

    def events(
        self,
        actor: Actor,
        *,
        since: datetime | str | None = None,
        model_name: str | None = None,
        workspace: str | None = None,
        limit: int = 100,
    ) -> builtins.list[EventRecord]:
        """Registry events, newest first: of the actor's workspace; a platform admin's:
        every workspace's, or ``workspace``'s."""
        start = _since(since)
        seen = _seen(actor, workspace)
        with reading(self._engine, actor, Action.WEBHOOKS_EVENTS, seen) as conn:
            rows = outbox.event_rows(
                conn, since=start, model_name=model_name, workspace=seen, limit=limit
            )
        return [EventRecord.from_row(r) for r in rows]

    def replay(
        self,
        actor: Actor,
        *,
        event_id: str | None = None,
        since: datetime | str | None = None,
        endpoint_id: str | None = None,
        workspace: str | None = None,
    ) -> int:
        """Deliver one event, or every event since a time (``"2h"`` or a datetime), again;
        to every endpoint of its workspace that wants it, or only ``endpoint_id``. A
        workspace admin replays only their workspace's events; a platform admin every
        workspace's, or ``workspace``'s. The count queued."""
        has_since = since is not None and since != ""
        if bool(event_id) == has_since:
            raise InvalidInput("give exactly one of event_id or since")
        start = _since(since)
        seen = _seen(actor, workspace)
        with change(self._engine, actor, Action.WEBHOOKS_REPLAY, seen) as unit:
            if endpoint_id:
                row = self._target(unit, endpoint_id)
                if seen is not None and row["workspace"] != seen:
                    raise NotFound(f"no webhook endpoint {endpoint_id!r} in workspace {seen!r}")
                seen = row["workspace"]
            if event_id:
                found = outbox.event_workspace(unit.conn, event_id=event_id)
                if found is None or (seen is not None and found != seen):
                    raise NotFound(f"no event {event_id!r}")
                unit.within(found)
            try:
                queued = outbox.replay_on(
                    unit.conn,
                    event_id=event_id,
                    since=start,
                    endpoint_id=endpoint_id,
                    workspace=seen,
                )
            except LookupError as exc:
                raise NotFound(str(exc)) from None
            target = event_id or f"since {start.isoformat() if start else ''}"
            unit.audit(target=target, queued=queued, event_id=event_id, endpoint=endpoint_id)
        return queued

    # ---- helpers ---------------------------------------------------------------------

    def _set_enabled(
        self, actor: Actor, endpoint_id: str, enabled: bool, reason: str | None
    ) -> EndpointRecord:
        action = Action.WEBHOOKS_ENABLE if enabled else Action.WEBHOOKS_DISABLE
        with change(self._engine, actor, action, actor.workspace) as unit:
            self._target(unit, endpoint_id)
            endpoint_store.update_endpoint(
                unit.conn, endpoint_id=endpoint_id, enabled=enabled, disabled_reason=reason
            )
            unit.audit(target=endpoint_id, endpoint=endpoint_id)
            return self._endpoint(unit.conn, endpoint_id)

    def _endpoint_row(self, conn: Connection, actor: Actor, endpoint_id: str) -> dict[str, Any]:
        """The endpoint, if the actor may know of it: another workspace's endpoint is
        answered as if it did not exist."""
        row = endpoint_store.endpoint_row(conn, endpoint_id=endpoint_id)
        if row is None or actor.workspace not in (None, row["workspace"]):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        return row

    def _target(self, unit: Change, endpoint_id: str) -> dict[str, Any]:
        """The endpoint a change is made to, with the change authorized (and audited) for
        the endpoint's workspace."""
        row = self._endpoint_row(unit.conn, unit.actor, endpoint_id)
        unit.within(row["workspace"])
        return row

    def _endpoint(self, conn: Connection, endpoint_id: str) -> EndpointRecord:
        row = endpoint_store.endpoint_row(conn, endpoint_id=endpoint_id)
        assert row is not None, "an endpoint read in its own transaction vanished"
        return EndpointRecord.from_row(row)


def _seen(actor: Actor, workspace: str | None) -> str | None:
    """The workspace a listing shows: the actor's own (asking for another is refused by
    authorization, naming it); a platform admin's choice, None for every workspace."""
    return workspace or actor.workspace


def _since(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return parse_since(value)
    return check_time(value, "since")
