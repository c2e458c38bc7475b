"""A store that already holds endpoints with URLs the validation now refuses (added by an
older version): every delivery to them fails on its own, with the reason in its attempt
log, while deliveries to a healthy endpoint in the same rounds go through; `/test` on such
an endpoint answers its failed outcome, never 500."""

from __future__ import annotations

import json
import secrets

import pytest

from hokusai.db.schema import webhook_endpoints
from hokusai.timestamps import utcnow
from hokusai.webhooks.signing import SecretBox, new_secret
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Hooks, unique

pytestmark = pytest.mark.integration

# What the old validation let through, with what the attempt log must say about each.
STORED_BEFORE_THE_CHECK = {
    "http://example.com:99999/": "Port out of range",
    "http://example.com:abc/": "port can't be converted",
    "http://" + "a" * 70 + ".example.com/": "Label too long",
    "http://[::1": "Invalid IPv6 URL",
}


def insert_endpoint_directly(hooks: Hooks, url: str) -> str:
    """As an older install would have stored it: straight into the table."""
    endpoint_id = "wh_" + secrets.token_hex(8)
    box = SecretBox(hooks.settings.resolved_secret)
    now = utcnow()
    with hooks.engine.begin() as conn:
        conn.execute(
            webhook_endpoints.insert().values(
                id=endpoint_id,
                url=url,
                description="stored before URLs were checked",
                event_types=json.dumps([]),
                model_filter=None,
                secret_encrypted=box.seal(new_secret()),
                previous_secret_encrypted=None,
                previous_secret_expires_at=None,
                enabled=True,
                disabled_reason=None,
                created_at=now,
                updated_at=now,
            )
        )
    return endpoint_id


def test_bad_stored_urls_fail_alone_and_healthy_deliveries_succeed(
    hooks: Hooks, receiver: Receiver
) -> None:
    bad = {
        insert_endpoint_directly(hooks, url): reason
        for url, reason in STORED_BEFORE_THE_CHECK.items()
    }
    healthy, _ = hooks.add_endpoint(receiver.url("/healthy"))
    models = [unique("isolated") for _ in range(3)]
    for name in models:
        hooks.create_model(name)
    hooks.create_version(models[0])

    received = receiver.wait_for("/healthy", 4, timeout=30, settle=0.5)
    assert len(received) == 4, [r.payload for r in received]
    delivered = hooks.wait_deliveries(
        lambda found: len(found) == 4 and all(d["status"] == "delivered" for d in found),
        "the healthy endpoint's four deliveries delivered",
        endpoint_id=healthy["id"],
    )
    assert all(len(d["attempt_log"]) == 1 for d in delivered)

    for endpoint_id, reason in bad.items():
        failed = hooks.wait_deliveries(
            lambda found: len(found) == 4 and all(d["attempt_log"] for d in found),
            f"each delivery to {endpoint_id} attempted",
            endpoint_id=endpoint_id,
        )
        for delivery in failed:
            assert delivery["status"] in ("failed", "dead"), delivery
            for attempt in delivery["attempt_log"]:
                assert attempt["status_code"] is None
                assert attempt["error"].startswith("invalid endpoint URL: "), attempt
                assert reason in attempt["error"], attempt
            assert reason in delivery["last_error"]

        # `/test` reports the failure as the outcome of the test: 200, not 500.
        tested = hooks.client.post(f"/api/v1/webhooks/{endpoint_id}/test")
        assert tested.status_code == 200, tested.text
        outcome = tested.json()
        assert outcome["delivered"] is False and outcome["status_code"] is None
        assert reason in outcome["error"]

    # The healthy endpoint's own test still goes through, in the same store.
    tested = hooks.client.post(f"/api/v1/webhooks/{healthy['id']}/test")
    assert tested.status_code == 200 and tested.json()["delivered"] is True, tested.text
