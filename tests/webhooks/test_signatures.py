"""Deliveries are signed per Standard Webhooks: the reference library verifies them, and
refuses a changed body, an old or future timestamp and a wrong secret. After a secret
rotation both the old and the new secret verify, until the grace period ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from hokusai.db.schema import webhook_endpoints
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Hooks, unique

pytestmark = pytest.mark.integration


def test_deliveries_verify_and_forgeries_do_not(hooks: Hooks, receiver: Receiver) -> None:
    endpoint, secret = hooks.add_endpoint(receiver.url("/signed"))
    assert secret.startswith("whsec_")
    name = unique("signed")
    hooks.create_model(name)
    version = hooks.create_version(name)

    first, second = receiver.wait_for("/signed", 2, settle=0.3)
    assert len(receiver.requests("/signed")) == 2
    webhook = Webhook(secret)
    payloads = []
    for request in (first, second):
        payload = webhook.verify(request.body, request.headers)
        payloads.append(payload)
        assert payload["id"] == request.webhook_id
        assert request.headers["content-type"] == "application/json"
        # Signed at the time of sending, by one secret.
        assert abs(int(request.headers["webhook-timestamp"]) - request.received_at) < 5
        assert len(request.headers["webhook-signature"].split()) == 1
    assert [p["type"] for p in payloads] == ["registered_model.created", "model_version.created"]
    assert payloads[1]["data"]["version"] == version["version"]

    # A body changed by one character no longer matches its signature.
    tampered = second.body.replace(
        f'"version": "{version["version"]}"'.encode(),
        f'"version": "{int(version["version"]) + 1}"'.encode(),
    )
    assert tampered != second.body
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        webhook.verify(tampered, second.headers)
    # Nor does another delivery's signature, or a signature by another secret.
    swapped = {**second.headers, "webhook-signature": first.headers["webhook-signature"]}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        webhook.verify(second.body, swapped)
    other_secret = hooks.add_endpoint(receiver.url("/other"))[1]
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(other_secret).verify(second.body, second.headers)

    # A replayed capture more than 5 minutes old is refused, even correctly signed for
    # its time; so is one from the future.
    sent = int(second.headers["webhook-timestamp"])
    for shift, reason in ((-310, "too old"), (-3600, "too old"), (+360, "too new")):
        moved = {**second.headers, "webhook-timestamp": str(sent + shift)}
        with pytest.raises(WebhookVerificationError, match=reason):
            webhook.verify(second.body, moved)
        moved["webhook-signature"] = webhook.sign(
            second.webhook_id, datetime.fromtimestamp(sent + shift, UTC), second.body.decode()
        )
        with pytest.raises(WebhookVerificationError, match=reason):
            webhook.verify(second.body, moved)
    # Within the tolerance the same re-signing verifies: the timestamp alone was the reason.
    moved = {**second.headers, "webhook-timestamp": str(sent - 60)}
    moved["webhook-signature"] = webhook.sign(
        second.webhook_id, datetime.fromtimestamp(sent - 60, UTC), second.body.decode()
    )
    assert webhook.verify(second.body, moved)["id"] == second.webhook_id

    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        headers = {k: v for k, v in second.headers.items() if k != missing}
        with pytest.raises(WebhookVerificationError, match="Missing required headers"):
            webhook.verify(second.body, headers)
    assert endpoint["id"].startswith("wh_")


def test_rotation_signs_with_old_and_new_secret_during_the_grace(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint, old = hooks.add_endpoint(receiver.url("/rotated"))
    name = unique("rotated")
    hooks.create_model(name)
    [before] = receiver.wait_for("/rotated", 1)
    Webhook(old).verify(before.body, before.headers)

    result = hooks.cli("webhooks", "rotate-secret", endpoint["id"])
    [new] = result.stdout.split()
    assert new.startswith("whsec_") and new != old
    assert "old and the new secret" in " ".join(result.stderr.split())
    until = datetime.fromisoformat(hooks.endpoint(endpoint["id"])["secret_rotation_until"])
    assert timedelta(hours=23, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=24)

    hooks.create_version(name)
    during = receiver.wait_for("/rotated", 2)[1]
    assert len(during.headers["webhook-signature"].split()) == 2
    assert Webhook(old).verify(during.body, during.headers)["type"] == "model_version.created"
    assert Webhook(new).verify(during.body, during.headers)["type"] == "model_version.created"
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(before.body, before.headers)

    # When the grace period is over, only the new secret signs.
    with hooks.engine.begin() as conn:
        conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint["id"])
            .values(previous_secret_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    hooks.create_version(name)
    after = receiver.wait_for("/rotated", 3)[2]
    assert len(after.headers["webhook-signature"].split()) == 1
    assert Webhook(new).verify(after.body, after.headers)["data"]["version"] == "2"
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(old).verify(after.body, after.headers)
