"""Receivers that fail: retried on the (compressed) Svix schedule with every attempt
recorded; 410 disables the endpoint; a dead letter is delivered again by a replay with the
same webhook-id; a redirect is a failure; a receiver that hangs is cut at the timeout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.webhooks.receiver import Answer, Receiver, always, failing_first
from tests.webhooks.support import Hooks, MakeHooks, unique

pytestmark = pytest.mark.integration

SCHEDULE_ATTEMPTS = 8  # Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h


def only(deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(deliveries) == 1, deliveries
    return deliveries[0]


def status_is(status: str) -> Any:
    return lambda found: bool(found) and all(d["status"] == status for d in found)


def test_a_failing_receiver_that_recovers_gets_the_event(hooks: Hooks, receiver: Receiver) -> None:
    failure = b"receiver down: " + b"x" * 400
    receiver.on("/flaky", failing_first(2, Answer(500, failure)))
    endpoint, secret = hooks.add_endpoint(receiver.url("/flaky"))
    name = unique("flaky")
    hooks.create_model(name)

    delivery = only(
        hooks.wait_deliveries(status_is("delivered"), "delivered", endpoint_id=endpoint["id"])
    )
    requests = receiver.wait_for("/flaky", 3, settle=0.3)
    assert len(requests) == 3
    assert {r.webhook_id for r in requests} == {delivery["event_id"]}, "one webhook-id"
    for request in requests:  # each attempt signed afresh
        assert Webhook(secret).verify(request.body, request.headers)["data"]["name"] == name

    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200
    log = delivery["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 500, 200]
    assert [a["error"] for a in log] == ["answered 500", "answered 500", None]
    assert [a["response_snippet"] for a in log] == [failure[:200].decode()] * 2 + ["ok"]
    assert all(isinstance(a["latency_ms"], int) and 0 <= a["latency_ms"] < 2000 for a in log)
    times = [datetime.fromisoformat(a["attempted_at"]) for a in log]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    assert delivery["next_attempt_at"] is None and delivery["lease_until"] is None


def test_410_disables_the_endpoint(hooks: Hooks, receiver: Receiver) -> None:
    receiver.on("/gone", always(Answer(410, b"this hook is gone")))
    endpoint, _ = hooks.add_endpoint(receiver.url("/gone"))
    first, second = unique("gone"), unique("gone")
    hooks.create_model(first)

    delivery = only(hooks.wait_deliveries(status_is("dead"), "dead", endpoint_id=endpoint["id"]))
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 410
    assert delivery["attempt_log"][0]["response_snippet"] == "this hook is gone"
    state = hooks.endpoint(endpoint["id"])
    assert state["enabled"] is False
    assert "410" in state["disabled_reason"]

    hooks.create_model(second)
    assert [e["model_name"] for e in hooks.events()] == [second, first]
    assert len(receiver.wait_for("/gone", 1, settle=0.5)) == 1, "nothing more to a gone endpoint"
    assert len(hooks.deliveries(endpoint_id=endpoint["id"])) == 1


def test_dead_letter_then_replay_with_the_same_webhook_id(
    make_hooks: MakeHooks, receiver: Receiver
) -> None:
    hooks = make_hooks(webhook_retry_scale=0.00003)  # the whole schedule in about 3 s
    up = False
    receiver.on("/down", lambda _nth: Answer() if up else Answer(503, b"maintenance"))
    endpoint, secret = hooks.add_endpoint(receiver.url("/down"))
    hooks.add_endpoint(receiver.url("/bystander"))
    names = [unique("dead"), unique("dead")]
    for name in names:
        hooks.create_model(name)

    dead = hooks.wait_deliveries(
        lambda found: len(found) == 2 and status_is("dead")(found),
        "both dead letters",
        timeout=60,
        endpoint_id=endpoint["id"],
    )
    for delivery in dead:
        assert delivery["attempts"] == SCHEDULE_ATTEMPTS
        assert [a["status_code"] for a in delivery["attempt_log"]] == [503] * SCHEDULE_ATTEMPTS
    event_ids = {d["model_name"]: d["event_id"] for d in dead}
    tried = receiver.wait_for("/down", 2 * SCHEDULE_ATTEMPTS, settle=0.3)
    assert len(tried) == 2 * SCHEDULE_ATTEMPTS
    assert {r.webhook_id for r in tried} == set(event_ids.values())
    assert len(hooks.deliveries(status="dead")) == 2
    bystander_got = len(receiver.requests("/bystander"))
    assert bystander_got == 2

    up = True
    response = hooks.client.post("/api/v1/replay", json={"event_id": event_ids[names[0]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"queued": 2}  # to both endpoints that want the event
    redelivered = receiver.wait_for("/down", 2 * SCHEDULE_ATTEMPTS + 1)[-1]
    assert redelivered.webhook_id == event_ids[names[0]]
    assert Webhook(secret).verify(redelivered.body, redelivered.headers)["data"]["name"] == names[0]
    delivery = only(hooks.deliveries(endpoint_id=endpoint["id"], event_id=event_ids[names[0]]))
    assert delivery["status"] in ("delivered", "pending")

    result = hooks.cli("webhooks", "replay", event_ids[names[1]], "--endpoint", endpoint["id"])
    assert "queued 1 deliveries" in result.stderr
    redelivered = receiver.wait_for("/down", 2 * SCHEDULE_ATTEMPTS + 2)[-1]
    assert redelivered.webhook_id == event_ids[names[1]]

    result = hooks.cli("webhooks", "replay", "--since", "1h", "--endpoint", endpoint["id"])
    assert "queued 2 deliveries" in result.stderr
    again = receiver.wait_for("/down", 2 * SCHEDULE_ATTEMPTS + 4, settle=0.3)
    assert len(again) == 2 * SCHEDULE_ATTEMPTS + 4
    assert sorted(r.webhook_id for r in again[-2:]) == sorted(event_ids.values())
    hooks.wait_deliveries(status_is("delivered"), "all delivered", endpoint_id=endpoint["id"])
    # The bystander endpoint got the first replay (it asked for every endpoint) only.
    assert len(receiver.wait_for("/bystander", 3, settle=0.2)) == bystander_got + 1

    # A replay names one event or a time, and an event that exists.
    for body, code in (
        ({}, "INVALID_PARAMETER_VALUE"),
        ({"event_id": "evt_x", "since": datetime.now(UTC).isoformat()}, "INVALID_PARAMETER_VALUE"),
        ({"event_id": "evt_nope"}, "RESOURCE_DOES_NOT_EXIST"),
    ):
        response = hooks.client.post("/api/v1/replay", json=body)
        assert response.json()["error_code"] == code, response.text
    hooks.cli("webhooks", "replay", "evt_nope", code=1)


def test_redirects_are_failures_and_hung_receivers_are_cut(
    make_hooks: MakeHooks, receiver: Receiver
) -> None:
    hooks = make_hooks(webhook_timeout=1.0)
    receiver.on("/moved", always(Answer(307, b"", headers={"location": receiver.url("/target")})))
    receiver.on("/hangs", failing_first(1, Answer(delay=30)))
    receiver.on("/drips", failing_first(1, Answer(body=b"y" * 200, drip=0.1)))
    moved, _ = hooks.add_endpoint(receiver.url("/moved"))
    hangs, _ = hooks.add_endpoint(receiver.url("/hangs"))
    drips, _ = hooks.add_endpoint(receiver.url("/drips"))
    hooks.create_model(unique("slow"))

    redirected = only(
        hooks.wait_deliveries(
            lambda found: bool(found) and found[0]["attempts"] >= 2,
            "two attempts at the redirecting endpoint",
            endpoint_id=moved["id"],
        )
    )
    assert redirected["status"] in ("failed", "pending")
    first = redirected["attempt_log"][0]
    assert first["status_code"] == 307
    assert "not followed" in first["error"] and receiver.url("/target") in first["error"]
    assert receiver.requests("/target") == []

    for endpoint, path in ((hangs, "/hangs"), (drips, "/drips")):
        delivery = only(
            hooks.wait_deliveries(status_is("delivered"), path, endpoint_id=endpoint["id"])
        )
        cut, retried = delivery["attempt_log"]
        assert cut["status_code"] is None
        assert cut["error"] == "no answer within 1 s"
        assert 900 <= cut["latency_ms"] < 3000, cut
        assert retried["status_code"] == 200
        requests = receiver.requests(path)
        assert len(requests) == 2 and requests[0].webhook_id == requests[1].webhook_id


def test_a_slow_receiver_gets_a_models_burst_over_several_rounds_in_order(
    make_hooks: MakeHooks, receiver: Receiver
) -> None:
    hooks = make_hooks(webhook_timeout=1.0)
    started = datetime.now(UTC).isoformat()
    name = unique("slow-burst")
    hooks.create_model(name)
    hooks.create_version(name)
    for step in range(6):
        hooks.mlflow(
            "POST",
            "model-versions/set-tag",
            json={"name": name, "version": "1", "key": "step", "value": str(step)},
        )
    receiver.on("/slow", always(Answer(delay=0.4)))
    slow, secret = hooks.add_endpoint(receiver.url("/slow"))
    # All eight due at once, for one model: they go one after the other, and a round spends
    # at most a timeout (1 s) starting them; the rest waits for the next round, first in line.
    response = hooks.client.post(
        "/api/v1/replay", json={"since": started, "endpoint_id": slow["id"]}
    )
    assert response.json() == {"queued": 8}, response.text
    received = receiver.wait_for("/slow", 8, timeout=30, settle=0.5)
    assert len(received) == 8
    in_order = [e["id"] for e in reversed(hooks.events(model_name=name))]
    assert [r.webhook_id for r in received] == in_order
    for request in received:
        Webhook(secret).verify(request.body, request.headers)
    found = hooks.wait_deliveries(
        lambda found: len(found) == 8 and status_is("delivered")(found),
        "eight delivered",
        endpoint_id=slow["id"],
    )
    # A delivery given back unsent does not count as an attempt.
    assert [(d["attempts"], len(d["attempt_log"])) for d in found] == [(1, 1)] * 8
