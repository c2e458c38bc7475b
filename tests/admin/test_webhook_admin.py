"""WebhookAdmin on a real auth store (SQLite, and PostgreSQL when configured), with a real
receiver on a loopback socket for test deliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import anyio
import pytest
from standardwebhooks import Webhook

from hokusai.admin.webhooks import WebhookAdmin
from hokusai.db.schema import deliveries, events, webhook_endpoints
from hokusai.errors import InvalidInput, NotFound, Unavailable
from hokusai.keys.scopes import Scope
from hokusai.timestamps import utcnow
from hokusai.webhooks import outbox
from hokusai.webhooks.dispatcher import DispatcherSettings
from hokusai.webhooks.events import MODEL_VERSION_CREATED, Event
from hokusai.webhooks.records import (
    DeliveryRecord,
    DeliveryTestOutcome,
    EndpointRecord,
    EventRecord,
)
from hokusai.webhooks.signing import SecretBox
from tests.admin.support import Admin
from tests.webhooks.receiver import Answer, Receiver, always, running_receiver

PUBLIC_URL = "https://hooks.example.com/in"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def hooks(admin: Admin) -> WebhookAdmin:
    """The admin's webhook service, allowed to deliver to loopback receivers."""
    return WebhookAdmin(
        admin.engine,
        SecretBox(b"admin-tests-secret"),
        DispatcherSettings(allow_private=True, timeout=5.0),
    )


def emit(admin: Admin, name: str = "LSCOR") -> Event:
    event = Event(MODEL_VERSION_CREATED, {"name": name, "version": "1"})
    assert outbox.emit(admin.engine, [event]) == [event]
    return event


def test_add_returns_a_record_and_the_secret_once_and_audits(admin: Admin) -> None:
    created = admin.services.webhooks.add(
        admin.operator,
        PUBLIC_URL,
        event_types=[MODEL_VERSION_CREATED],
        model_filter="LSCOR*",
        description="deploys",
    )
    endpoint = created.endpoint
    assert isinstance(endpoint, EndpointRecord) and created.secret.startswith("whsec_")
    assert (endpoint.url, endpoint.event_types, endpoint.model_filter) == (
        PUBLIC_URL,
        (MODEL_VERSION_CREATED,),
        "LSCOR*",
    )
    assert endpoint.enabled and endpoint.secret_rotation_until is None
    assert admin.services.webhooks.get(admin.operator, endpoint.id) == endpoint
    assert admin.services.webhooks.list(admin.operator) == [endpoint]
    entry = admin.last_audit()
    assert (entry.action, entry.owner, entry.detail) == (
        "webhooks.add",
        "operator-on-host",
        {"target": endpoint.id, "endpoint": endpoint.id},
    )
    stored = admin.rows(webhook_endpoints)[0]
    assert created.secret not in json.dumps(stored, default=str)
    assert created.secret not in json.dumps([e.public() for e in admin.audit()])
    # The JSON view is what the API has always shown for an endpoint, and its workspace.
    assert endpoint.workspace == "default"
    assert set(endpoint.public()) == {
        "id", "workspace", "url", "description", "event_types", "model_filter", "enabled",
        "disabled_reason", "created_at", "updated_at", "secret_rotation_until",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("url", "fields", "says"),
    [
        ("ftp://example.com/x", {}, "is not an http\\(s\\) URL"),
        ("https://user:pw@example.com/", {}, "must not carry credentials"),
        ("http://127.0.0.1:9/hook", {}, "private, loopback or link-local"),
        (PUBLIC_URL, {"event_types": ["nope.happened"]}, "unknown event type"),
        (PUBLIC_URL, {"model_filter": "bad{glob"}, "is not a model name or glob"),
        (PUBLIC_URL, {"description": "d" * 1001}, "longer than 1000"),
    ],
)
def test_invalid_endpoints_are_refused_and_nothing_is_stored(
    admin: Admin, url: str, fields: dict[str, object], says: str
) -> None:
    audit_before = len(admin.audit())
    with pytest.raises(InvalidInput, match=says):
        admin.services.webhooks.add(admin.operator, url, **fields)  # type: ignore[arg-type]
    assert admin.count(webhook_endpoints) == 0
    assert len(admin.audit()) == audit_before


def test_disable_enable_remove_are_audited(admin: Admin) -> None:
    service = admin.services.webhooks
    endpoint = service.add(admin.operator, PUBLIC_URL).endpoint

    disabled = service.disable(admin.operator, endpoint.id)
    assert (disabled.enabled, disabled.disabled_reason) == (False, "disabled by an admin")
    enabled = service.enable(admin.operator, endpoint.id)
    assert (enabled.enabled, enabled.disabled_reason) == (True, None)
    removed = service.remove(admin.operator, endpoint.id)
    assert removed.id == endpoint.id
    with pytest.raises(NotFound, match=f"no webhook endpoint '{endpoint.id}'"):
        service.get(admin.operator, endpoint.id)

    actions = [e.action for e in admin.audit() if e.detail and e.detail["target"] == endpoint.id]
    assert actions == ["webhooks.remove", "webhooks.enable", "webhooks.disable", "webhooks.add"]
    for change in (service.disable, service.enable, service.remove, service.rotate_secret):
        with pytest.raises(NotFound):
            change(admin.operator, endpoint.id)


def test_remove_keeps_made_deliveries_and_drops_pending_ones(admin: Admin) -> None:
    endpoint = admin.services.webhooks.add(admin.operator, PUBLIC_URL).endpoint
    emit(admin)
    assert [d["status"] for d in admin.rows(deliveries)] == ["pending"]
    admin.services.webhooks.remove(admin.operator, endpoint.id)
    assert admin.rows(deliveries) == []


def test_rotate_secret_keeps_the_old_one_signing_for_the_grace(admin: Admin) -> None:
    created = admin.services.webhooks.add(admin.operator, PUBLIC_URL)
    rotated = admin.services.webhooks.rotate_secret(
        admin.operator, created.endpoint.id, grace=timedelta(hours=2)
    )
    assert rotated.secret != created.secret and rotated.secret.startswith("whsec_")
    until = rotated.endpoint.secret_rotation_until
    assert until is not None and abs(until - utcnow() - timedelta(hours=2)) < timedelta(minutes=1)
    entry = admin.last_audit()
    assert entry.action == "webhooks.rotate_secret" and rotated.secret not in str(entry.detail)


def test_a_test_delivery_reaches_the_receiver_signed_and_is_audited(
    admin: Admin, hooks: WebhookAdmin, receiver: Receiver
) -> None:
    created = hooks.add(admin.operator, receiver.url("/ok"))
    actor = admin.key_actor(Scope.ADMIN, path=f"/api/v1/webhooks/{created.endpoint.id}/test")

    outcome = anyio.run(hooks.test, actor, created.endpoint.id)

    assert isinstance(outcome, DeliveryTestOutcome)
    assert (outcome.delivered, outcome.status_code, outcome.error) == (True, 200, None)
    [request] = receiver.requests("/ok")
    assert request.webhook_id == outcome.event_id
    Webhook(created.secret).verify(request.body, request.headers)
    assert request.payload["type"] == "webhook.test" and request.payload["key_id"] == actor.key_id
    entry = admin.last_audit()
    assert (entry.action, entry.key_id) == ("webhooks.test", actor.key_id)
    assert entry.detail == {
        "target": created.endpoint.id,
        "endpoint": created.endpoint.id,
        "event_id": outcome.event_id,
    }
    [delivery] = hooks.deliveries(admin.operator, event_id=outcome.event_id)
    assert isinstance(delivery, DeliveryRecord)
    assert (delivery.status, delivery.event_type, len(delivery.attempt_log)) == (
        "delivered",
        "webhook.test",
        1,
    )
    assert delivery.attempt_log[0].status_code == 200


def test_a_failed_test_delivery_is_dead_at_once_with_its_reason(
    admin: Admin, hooks: WebhookAdmin, receiver: Receiver
) -> None:
    receiver.on("/down", always(Answer(status=500, body=b"broken")))
    endpoint = hooks.add(admin.operator, receiver.url("/down")).endpoint
    outcome = anyio.run(hooks.test, admin.operator, endpoint.id)
    assert (outcome.delivered, outcome.status_code) == (False, 500)
    [delivery] = hooks.deliveries(admin.operator, status="dead")
    assert delivery.attempt_log[0].response_snippet == "broken"
    with pytest.raises(NotFound):
        anyio.run(hooks.test, admin.operator, "wh_missing")


def test_deliveries_and_events_are_typed_and_filtered(admin: Admin) -> None:
    service = admin.services.webhooks
    endpoint = service.add(admin.operator, PUBLIC_URL).endpoint
    event = emit(admin)
    [delivery] = service.deliveries(admin.operator, endpoint_id=endpoint.id)
    assert (delivery.event_id, delivery.model_name, delivery.status) == (
        event.id,
        "LSCOR",
        "pending",
    )
    assert service.deliveries(admin.operator, status="dead") == []
    with pytest.raises(InvalidInput, match="status must be one of pending, failed"):
        service.deliveries(admin.operator, status="lost")
    [found] = service.events(admin.operator, since="1h", model_name="LSCOR")
    assert isinstance(found, EventRecord) and found.id == event.id
    assert found.payload["data"] == {"name": "LSCOR", "version": "1", "workspace": "default"}
    assert found.workspace == delivery.workspace == "default"
    with pytest.raises(InvalidInput, match="out of range"):
        service.events(admin.operator, since="9999-12-31T12:00")


def test_replay_by_event_and_since_is_audited(admin: Admin) -> None:
    service = admin.services.webhooks
    one = service.add(admin.operator, PUBLIC_URL).endpoint
    event = emit(admin)
    with admin.engine.begin() as conn:
        conn.execute(deliveries.update().values(status="dead", attempts=8))

    assert service.replay(admin.operator, event_id=event.id) == 1
    assert [(d["status"], d["attempts"]) for d in admin.rows(deliveries)] == [("pending", 0)]
    entry = admin.last_audit()
    assert (entry.action, entry.detail) == (
        "webhooks.replay",
        {"target": event.id, "queued": 1, "event_id": event.id, "endpoint": None},
    )
    # An endpoint added later gets the event too; --endpoint limits the replay to it.
    two = service.add(admin.operator, PUBLIC_URL + "/two").endpoint
    assert service.replay(admin.operator, since="1h", endpoint_id=two.id) == 1
    assert service.replay(admin.operator, since=utcnow() - timedelta(hours=1)) == 2
    assert {d["endpoint_id"] for d in admin.rows(deliveries)} == {one.id, two.id}


@pytest.mark.parametrize(
    ("fields", "error", "says"),
    [
        ({}, InvalidInput, "exactly one of event_id or since"),
        ({"event_id": "evt_x", "since": "1h"}, InvalidInput, "exactly one of event_id or since"),
        ({"event_id": "evt_missing"}, NotFound, "no event 'evt_missing'"),
        ({"since": "1h", "endpoint_id": "wh_missing"}, NotFound, "no webhook endpoint"),
        ({"since": "999999999d"}, InvalidInput, "between 1s and 3650d"),
        ({"since": "10000-01-01"}, InvalidInput, "between 0001-01-01T00:00:00Z and 9999-12-31"),
    ],
)
def test_replay_refusals_change_nothing(
    admin: Admin, fields: dict[str, str], error: type[Exception], says: str
) -> None:
    admin.services.webhooks.add(admin.operator, PUBLIC_URL)
    emit(admin)
    before = (admin.rows(deliveries), len(admin.audit()))
    with pytest.raises(error, match=says):
        admin.services.webhooks.replay(admin.operator, **fields)
    assert (admin.rows(deliveries), len(admin.audit())) == before


def test_a_failing_audit_insert_rolls_webhook_changes_back(
    admin: Admin, hooks: WebhookAdmin, receiver: Receiver
) -> None:
    service = admin.services.webhooks
    endpoint = service.add(admin.operator, PUBLIC_URL).endpoint
    local = hooks.add(admin.operator, receiver.url("/never")).endpoint
    event = emit(admin)
    endpoints_before, deliveries_before = admin.rows(webhook_endpoints), admin.rows(deliveries)
    events_before = admin.count(events)
    admin.break_audit_log()

    for attempt in (
        lambda: service.add(admin.operator, PUBLIC_URL + "/new"),
        lambda: service.disable(admin.operator, endpoint.id),
        lambda: service.rotate_secret(admin.operator, endpoint.id),
        lambda: service.remove(admin.operator, endpoint.id),
        lambda: service.replay(admin.operator, event_id=event.id),
        lambda: anyio.run(hooks.test, admin.operator, local.id),
    ):
        with pytest.raises(Unavailable, match="the auth store failed"):
            attempt()

    assert admin.rows(webhook_endpoints) == endpoints_before
    assert admin.rows(deliveries) == deliveries_before
    assert admin.count(events) == events_before
    assert receiver.requests() == []  # the test was not sent: its record was never stored


def test_records_show_the_fields_the_api_has_always_shown(
    admin: Admin, hooks: WebhookAdmin, receiver: Receiver
) -> None:
    """The typed records' JSON views keep the fields the HTTP API and CLI have always
    printed (the store's dict views they replaced had exactly these), and the workspace
    each belongs to."""
    endpoint = hooks.add(admin.operator, receiver.url("/ok")).endpoint
    hooks.rotate_secret(admin.operator, endpoint.id)
    anyio.run(hooks.test, admin.operator, endpoint.id)
    emit(admin)
    [shown] = [e.public() for e in hooks.list(admin.operator)]
    assert list(shown) == [
        "id", "workspace", "url", "description", "event_types", "model_filter", "enabled",
        "disabled_reason", "created_at", "updated_at", "secret_rotation_until",
    ]  # fmt: skip
    assert shown["secret_rotation_until"] is not None
    # The test delivery: the one with an attempt.
    [delivery] = [d.public() for d in hooks.deliveries(admin.operator) if d.attempt_log]
    assert list(delivery) == [
        "id", "event_seq", "event_id", "workspace", "endpoint_id", "status", "attempts",
        "next_attempt_at", "lease_until", "last_status_code", "last_error", "created_at",
        "updated_at", "event_type", "model_name", "model_version", "attempt_log",
    ]  # fmt: skip
    assert list(delivery["attempt_log"][0]) == [
        "id", "attempted_at", "status_code", "latency_ms", "response_snippet", "error",
    ]  # fmt: skip
    event = hooks.events(admin.operator)[0].public()
    assert set(event) == {
        "seq", "id", "type", "occurred_at", "key_id", "model_name", "model_version",
        "payload", "dedupe_key", "source", "workspace",
    }  # fmt: skip
