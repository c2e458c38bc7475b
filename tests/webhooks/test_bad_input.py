"""Invalid endpoints are refused with a message that says why, by the CLI and by the API,
and nothing is stored; private destinations are refused unless allowed, also when a name
only turns out to be loopback when a delivery resolves it; only admins manage webhooks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hokusai.db.schema import deliveries, events, webhook_endpoints
from hokusai.keys.scopes import Scope
from tests.helpers import auth
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Hooks, MakeHooks, unique

pytestmark = pytest.mark.integration

# (URL, options of `hokusai webhooks add`, the same as API fields, what the message says)
REFUSED: list[tuple[str, list[str], dict[str, Any], str]] = [
    ("ftp://example.com/hook", [], {}, "not an http(s) URL"),
    ("example.com/hook", [], {}, "not an http(s) URL"),
    ("https://", [], {}, "not an http(s) URL"),
    ("https://user:pw@example.com/hook", [], {}, "must not carry credentials"),
    ("https://user@example.com/hook", [], {}, "must not carry credentials"),
    ("http://example.com:99999/hook", [], {}, "Port out of range"),
    ("http://example.com:abc/hook", [], {}, "port can't be converted to integer"),
    ("http://example.com:0/hook", [], {}, "a port is 1 to 65535"),
    ("http://" + "a" * 64 + ".example.com/", [], {}, "Label too long"),
    ("http://" + "abcdefgh." * 30 + "com/", [], {}, "Domain too long"),
    ("http://[::1", [], {}, "Invalid IPv6 URL"),
    ("http://[v1.x]/hook", [], {}, "brackets that hold no IPv6 address"),
    ("http://[fe80::1%25eth0]/hook", [], {}, "has an IPv6 zone"),
    ("http://:8080/hook", [], {}, "host is required"),
    ("http:///hook", [], {}, "not an http(s) URL with a host"),
    ("http://exa mple.com/hook", [], {}, "is not a valid host name"),
    ("http://a..b.example.com/hook", [], {}, "Empty Label"),
    ("http://-a.example.com/hook", [], {}, "must not start or end with a hyphen"),
    ("http://127.1/hook", [], {}, "neither a host name nor a dotted IPv4 address"),
    ("http://0x7f000001/hook", [], {}, "neither a host name nor a dotted IPv4 address"),
    ("https://example.com/hook#part", [], {}, "no #fragment"),
    (
        "https://example.com/hook",
        ["--event", "model_version.created", "--event", "model.exploded"],
        {"event_types": ["model_version.created", "model.exploded"]},
        "unknown event type(s) model.exploded",
    ),
    (
        "https://example.com/hook",
        ["--model", "lscor;rm -rf"],
        {"model_filter": "lscor;rm -rf"},
        "is not a model name or glob",
    ),
    (
        "https://example.com/hook",
        ["--model", "lscor-[ab"],
        {"model_filter": "lscor-[ab"},
        "is not a model name or glob",
    ),
    ("http://127.0.0.1:9000/hook", [], {}, "127.0.0.1 is a private, loopback or link-local"),
    ("http://10.1.2.3/hook", [], {}, "10.1.2.3 is a private"),
    ("http://192.168.0.10:8080/hook", [], {}, "HOKUSAI_WEBHOOK_ALLOW_PRIVATE=1"),
    ("http://169.254.169.254/latest/meta-data", [], {}, "link-local"),
    ("http://[::1]:9000/hook", [], {}, "::1 is a private"),
    ("http://0.0.0.0/hook", [], {}, "0.0.0.0 is a private"),
]


def message_of(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def strict(make_hooks: MakeHooks) -> Hooks:
    """A gateway that refuses private destinations (the default)."""
    return make_hooks(webhook_allow_private=False)


def test_cli_refuses_and_stores_nothing(strict: Hooks) -> None:
    kept = strict.cli("webhooks", "add", "https://hooks.example.com/registry")
    before = strict.rows(webhook_endpoints)
    assert len(before) == 1
    for url, options, _, phrase in REFUSED:
        result = strict.cli("webhooks", "add", url, *options, code=2)
        assert phrase in message_of(result.stderr), (url, result.stderr)
        assert "whsec_" not in result.stdout + result.stderr
        assert strict.rows(webhook_endpoints) == before, url
    assert kept.stdout.startswith("whsec_")


def test_api_refuses_with_mlflow_errors_and_stores_nothing(strict: Hooks) -> None:
    before = strict.rows(webhook_endpoints)
    assert before == []
    for url, _, fields, phrase in REFUSED:
        response = strict.client.post("/api/v1/webhooks", json={"url": url, **fields})
        assert response.status_code == 400, (url, response.text)
        body = response.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert phrase in body["message"], (url, body)
        assert body["request_id"] == response.headers["x-request-id"]
        assert "secret" not in body
    for body in ({}, {"url": 42}, {"url": "https://example.com/h", "event_types": "all"}):
        response = strict.client.post("/api/v1/webhooks", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "Invalid request" in response.json()["message"]
    assert strict.rows(webhook_endpoints) == before

    missing = strict.client.get("/api/v1/webhooks/wh_0000000000000000")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "wh_0000000000000000" in missing.json()["message"]
    bad_status = strict.client.get("/api/v1/deliveries", params={"status": "lost"})
    assert bad_status.status_code == 400
    assert "pending, failed, delivered, dead" in bad_status.json()["message"]


def test_webhooks_need_the_admin_role(strict: Hooks) -> None:
    endpoint, _ = strict.add_endpoint("https://hooks.example.com/registry")
    before = strict.rows(webhook_endpoints)
    keys = {"write": strict.write_key, "read": strict.running.create_key(Scope.READ)}
    for scope, key in keys.items():
        with httpx.Client(base_url=strict.url, headers=auth(key), timeout=10) as caller:
            for method, path, body in (
                ("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/other"}),
                ("GET", "/api/v1/webhooks", None),
                ("GET", f"/api/v1/webhooks/{endpoint['id']}", None),
                ("POST", f"/api/v1/webhooks/{endpoint['id']}/disable", None),
                ("POST", f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", None),
                ("DELETE", f"/api/v1/webhooks/{endpoint['id']}", None),
                ("GET", "/api/v1/deliveries", None),
                ("GET", "/api/v1/events", None),
                ("POST", "/api/v1/replay", {"since": "2020-01-01T00:00:00Z"}),
            ):
                response = caller.request(method, path, json=body)
                assert response.status_code == 403, (method, path, response.text)
                answer = response.json()
                assert answer["error_code"] == "PERMISSION_DENIED"
                assert "needs the 'admin' role in workspace 'default'" in answer["message"]
                assert f"has '{scope}' in workspace 'default'" in answer["message"]
    unauthenticated = httpx.get(strict.url + "/api/v1/webhooks", timeout=10)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error_code"] == "UNAUTHENTICATED"
    assert strict.rows(webhook_endpoints) == before


def test_a_name_that_resolves_to_loopback_is_refused_when_delivering(
    strict: Hooks, receiver: Receiver
) -> None:
    port = receiver.base_url.rsplit(":", 1)[1]
    endpoint, _ = strict.add_endpoint(f"http://localhost:{port}/named")
    strict.create_model(unique("named"))
    delivery = strict.wait_deliveries(
        lambda found: bool(found) and found[0]["attempts"] >= 2,
        "two refused attempts",
        endpoint_id=endpoint["id"],
    )[0]
    assert delivery["status"] in ("failed", "pending")
    for attempt in delivery["attempt_log"]:
        assert attempt["status_code"] is None
        assert attempt["response_snippet"] is None
        assert (
            "localhost resolves to a private, loopback or link-local address" in (attempt["error"])
        )
        assert "HOKUSAI_WEBHOOK_ALLOW_PRIVATE=1" in attempt["error"]
    assert receiver.requests() == [], "not one byte reached the receiver"
    assert len(strict.rows(events)) == 1 and len(strict.rows(deliveries)) == 1
