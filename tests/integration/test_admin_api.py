"""The Hokusai API under /api/v1, over real HTTP, in front of a real MLflow, on each store:
whoami, the key lifecycle, key validation, the audit log, the docs and request ids.

Longer than most test modules (about 500 lines): one or more tests per operation of the
API, on each store.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hokusai.keys import service as key_service
from hokusai.keys.format import generate_key, parse_key
from hokusai.keys.scopes import Scope
from tests.helpers import MovedClock, RunningGateway, auth, keys_sharing_a_prefix
from tests.helpers import assert_error as assert_mlflow_error

pytestmark = pytest.mark.integration

GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
CREATE_EXPERIMENT = "/api/mlflow/api/2.0/mlflow/experiments/create"


def assert_error(response: httpx.Response, status: int, code: str, *phrases: str) -> str:
    """An error in MLflow's format (never FastAPI's ``{"detail": ...}``)."""
    message = assert_mlflow_error(response, status, code, *phrases)
    # A refusal also carries its details (what refused it, who can grant it).
    body = response.json()
    assert set(body) - {"details"} == {"error_code", "message", "request_id"}, body
    return message


def key_id(gateway: RunningGateway, key: str) -> str:
    return gateway.gateway.keys.resolve(key).id


def all_keys(gateway: RunningGateway) -> list[str]:
    return sorted(k.id for k in gateway.gateway.keys.list(include_revoked=True))


def mlflow_status(gateway: RunningGateway, key: str) -> httpx.Response:
    return httpx.get(gateway.url + GET_BY_NAME, headers=auth(key))


def assert_never_shows(text: str, *keys: str) -> None:
    """Neither a whole key nor the secret part after its display prefix is in ``text``."""
    for key in keys:
        assert key not in text
        assert key[len(parse_key(key).display_prefix) :][:12] not in text


# ---- whoami -------------------------------------------------------------------------------


def test_whoami_for_each_scope(gateway: RunningGateway) -> None:
    for scope in Scope:
        key = gateway.create_key(scope, name=f"who {scope.value}", owner=f"owner-{scope.value}")
        response = httpx.get(gateway.url + "/api/v1/whoami", headers=auth(key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == key_id(gateway, key)
        assert body["scope"] == scope.value
        assert body["owner"] == f"owner-{scope.value}"
        assert body["name"] == f"who {scope.value}"
        assert body["state"] == "active"
        assert body["display_prefix"] == parse_key(key).display_prefix
        assert_never_shows(response.text, key)

    response = httpx.get(gateway.url + "/api/v1/whoami")
    assert_error(response, 401, "UNAUTHENTICATED", "No API key")
    revoked = gateway.create_key(Scope.ADMIN)
    gateway.gateway.keys.revoke(revoked)
    response = httpx.get(gateway.url + "/api/v1/whoami", headers=auth(revoked))
    assert_error(response, 401, "UNAUTHENTICATED", "was revoked")


# ---- the key lifecycle --------------------------------------------------------------------


def test_create_list_get_revoke_rotate(gateway: RunningGateway) -> None:
    admin = gateway.create_key(Scope.ADMIN, owner="platform")
    with httpx.Client(base_url=gateway.url, headers=auth(admin)) as api:
        # Create: the key is shown once, with its record.
        response = api.post(
            "/api/v1/keys",
            json={"name": "ci training", "scope": "write", "owner": "ml-team", "expires_in": "30d"},
        )
        assert response.status_code == 201, response.text
        created = response.json()
        new_key, record = created["key"], created["record"]
        assert parse_key(new_key).display_prefix == record["display_prefix"]
        assert new_key.startswith("hk_live_")
        assert (record["name"], record["owner"], record["scope"], record["state"]) == (
            "ci training",
            "ml-team",
            "write",
            "active",
        )
        expires_at = datetime.fromisoformat(record["expires_at"])
        assert abs(expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
        assert record["id"] == key_id(gateway, new_key)

        # The new key works against MLflow through the gateway, writes included.
        assert mlflow_status(gateway, new_key).status_code == 200
        response = httpx.post(
            gateway.url + CREATE_EXPERIMENT,
            json={"name": f"created-by-api-key-{uuid.uuid4().hex[:8]}"},
            headers=auth(new_key),
        )
        assert response.status_code == 200, response.text

        # Without an owner, the key belongs to the admin who created it; env test is honoured.
        response = api.post(
            "/api/v1/keys", json={"name": "scratch", "scope": "read", "env": "test"}
        )
        assert response.status_code == 201, response.text
        scratch = response.json()
        assert scratch["record"]["owner"] == "platform"
        assert scratch["key"].startswith("hk_test_")

        # List and get: records only, never a key.
        response = api.get("/api/v1/keys")
        assert response.status_code == 200
        listed = {k["id"]: k for k in response.json()["keys"]}
        assert set(listed) == {key_id(gateway, admin), record["id"], scratch["record"]["id"]}
        assert_never_shows(response.text, admin, new_key, scratch["key"])
        for reference in (record["id"], record["display_prefix"]):
            response = api.get(f"/api/v1/keys/{reference}")
            assert response.status_code == 200, response.text
            assert response.json()["id"] == record["id"]
            assert_never_shows(response.text, new_key)

        # Revoke: the key is refused at once, and listed only on request.
        response = api.post(f"/api/v1/keys/{record['id']}/revoke")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "revoked"
        assert response.json()["revoked_at"]
        assert_error(mlflow_status(gateway, new_key), 401, "UNAUTHENTICATED", "was revoked")
        assert record["id"] not in {k["id"] for k in api.get("/api/v1/keys").json()["keys"]}
        everything = api.get("/api/v1/keys", params={"include_revoked": "true"}).json()["keys"]
        assert {k["id"]: k["state"] for k in everything}[record["id"]] == "revoked"

        # Rotate (by display prefix): a new key with the same name, owner, scope and lifetime;
        # the old one is refused.
        response = api.post(
            "/api/v1/keys", json={"name": "nightly", "scope": "read", "expires_in": "7d"}
        )
        old_key, old = response.json()["key"], response.json()["record"]
        assert mlflow_status(gateway, old_key).status_code == 200
        response = api.post(f"/api/v1/keys/{old['display_prefix']}/rotate")
        assert response.status_code == 200, response.text
        rotated_key, rotated = response.json()["key"], response.json()["record"]
        assert rotated_key != old_key and rotated["id"] != old["id"]
        assert rotated["rotated_from"] == old["id"]
        assert (rotated["name"], rotated["owner"], rotated["scope"]) == (
            "nightly",
            "platform",
            "read",
        )
        lifetime = datetime.fromisoformat(rotated["expires_at"]) - datetime.now(UTC)
        assert timedelta(days=6, hours=23) < lifetime <= timedelta(days=7)
        assert mlflow_status(gateway, rotated_key).status_code == 200
        assert_error(mlflow_status(gateway, old_key), 401, "UNAUTHENTICATED", "was revoked")
        assert api.get(f"/api/v1/keys/{old['id']}").json()["state"] == "revoked"

        # A revoked key cannot be rotated back to life.
        response = api.post(f"/api/v1/keys/{old['id']}/rotate")
        assert_error(response, 400, "INVALID_PARAMETER_VALUE", "is revoked")


NON_ADMIN_SCOPES = [Scope.READ, Scope.WRITE, Scope.PROMOTE]


@pytest.mark.parametrize("scope", NON_ADMIN_SCOPES, ids=[s.value for s in NON_ADMIN_SCOPES])
def test_non_admin_keys_are_refused_and_change_nothing(
    gateway: RunningGateway, scope: Scope
) -> None:
    caller = gateway.create_key(scope)
    victim = gateway.create_key(Scope.WRITE, name="victim")
    victim_id = key_id(gateway, victim)
    before = all_keys(gateway)
    requests = [
        ("GET", "/api/v1/keys", None),
        ("POST", "/api/v1/keys", {"name": "sneaky", "scope": "admin"}),
        ("GET", f"/api/v1/keys/{victim_id}", None),
        ("POST", f"/api/v1/keys/{victim_id}/revoke", None),
        ("POST", f"/api/v1/keys/{victim_id}/rotate", None),
        ("GET", "/api/v1/audit", None),
    ]
    for method, path, body in requests:
        response = httpx.request(method, gateway.url + path, json=body, headers=auth(caller))
        assert_error(
            response,
            403,
            "PERMISSION_DENIED",
            f"{method} {path} needs the 'admin' role in workspace 'default'",
            f"has '{scope.value}' in workspace 'default'",
        )
    assert all_keys(gateway) == before
    assert mlflow_status(gateway, victim).status_code == 200
    # Each refused attempt is audited as "denied" under the caller's key; nothing else.
    entries = gateway.gateway.audit.read()
    assert [(e["action"], e["method"], e["path"], e["status"]) for e in reversed(entries)] == [
        ("denied", method, path, 403) for method, path, _ in requests
    ]
    assert {e["key_id"] for e in entries} == {key_id(gateway, caller)}


def test_bad_input_is_an_mlflow_error_and_creates_nothing(gateway: RunningGateway) -> None:
    admin = gateway.create_key(Scope.ADMIN)
    with httpx.Client(base_url=gateway.url, headers=auth(admin)) as api:
        before = all_keys(gateway)
        bodies: list[tuple[Any, tuple[str, ...]]] = [
            ({"name": "x", "scope": "owner"}, ("scope", "'read', 'write', 'promote' or 'admin'")),
            ({"name": "x", "expires_in": "soon"}, ("'soon' is not a duration", "30d")),
            ({"name": "x", "expires_in": "0d"}, ("'0d' is not a duration",)),
            ({"name": "x", "expires_in": "-5d"}, ("'-5d' is not a duration",)),
            ({"scope": "read"}, ("name", "required")),
            ({"name": ""}, ("name",)),
            ({"name": "x", "env": "prod"}, ("env",)),
            (["name", "x"], ("Invalid request",)),
        ]
        for body, phrases in bodies:
            response = api.post("/api/v1/keys", json=body)
            assert_error(response, 400, "INVALID_PARAMETER_VALUE", *phrases)
            assert "detail" not in response.json()
        response = api.post(
            "/api/v1/keys", content=b'{"name": ', headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "INVALID_PARAMETER_VALUE", "JSON")

        unknown_key = generate_key("live")
        for reference in ("key_0000000000000000", "hk_live_ZZZZZZ", unknown_key):
            for method, path in (
                ("GET", f"/api/v1/keys/{reference}"),
                ("POST", f"/api/v1/keys/{reference}/revoke"),
                ("POST", f"/api/v1/keys/{reference}/rotate"),
            ):
                response = api.request(method, path)
                if reference == unknown_key:
                    # A whole key in a URL would reach logs: refused before anything else.
                    message = assert_error(
                        response, 400, "INVALID_PARAMETER_VALUE", "found in the URL's path"
                    )
                else:
                    message = assert_error(
                        response, 404, "RESOURCE_DOES_NOT_EXIST", "no key matches"
                    )
                assert unknown_key not in message

        response = api.get("/api/v1/audit", params={"limit": "many"})
        assert_error(response, 400, "INVALID_PARAMETER_VALUE", "limit")
        response = api.delete("/api/v1/keys")
        assert_error(response, 405, "ENDPOINT_NOT_FOUND", "does not accept DELETE")

        assert all_keys(gateway) == before
        assert gateway.gateway.audit.read() == []


def test_ambiguous_prefix_is_refused(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = gateway.create_key(Scope.ADMIN)
    crafted = iter(keys_sharing_a_prefix(2))
    with monkeypatch.context() as patch:
        patch.setattr(key_service, "generate_key", lambda env="live": next(crafted))
        first, second = gateway.create_key(), gateway.create_key()
    prefix = parse_key(first).display_prefix
    assert parse_key(second).display_prefix == prefix

    for method, path in (
        ("GET", f"/api/v1/keys/{prefix}"),
        ("POST", f"/api/v1/keys/{prefix}/revoke"),
        ("POST", f"/api/v1/keys/{prefix}/rotate"),
    ):
        response = httpx.request(method, gateway.url + path, headers=auth(admin))
        assert_error(
            response,
            400,
            "INVALID_PARAMETER_VALUE",
            "matches several keys",
            key_id(gateway, first),
            key_id(gateway, second),
        )
    assert mlflow_status(gateway, first).status_code == 200
    assert mlflow_status(gateway, second).status_code == 200


# ---- key validation -----------------------------------------------------------------------


def test_validate_names_the_key_and_never_echoes_it(
    gateway: RunningGateway, clock: MovedClock
) -> None:
    caller = gateway.create_key(Scope.READ, name="checker")
    good = gateway.create_key(Scope.WRITE, owner="svc-a")
    revoked = gateway.create_key(Scope.ADMIN, owner="svc-b")
    gateway.gateway.keys.revoke(revoked)
    expiring = gateway.gateway.keys.create(
        name="brief", owner="svc-c", scope=Scope.READ, expires_in=timedelta(milliseconds=200)
    ).key
    unknown = generate_key("test")
    mistyped = good[:-1] + ("a" if good[-1] != "a" else "b")
    clock.advance(timedelta(seconds=1))

    def validate(key: str) -> dict[str, Any]:
        response = httpx.post(
            gateway.url + "/api/v1/keys/validate", json={"key": key}, headers=auth(caller)
        )
        assert response.status_code == 200, response.text
        assert key not in response.text
        if key.startswith("hk_") and len(key) > 30:
            assert key[len("hk_live_") + 6 :] not in response.text
        return dict(response.json())

    answer = validate(good)
    assert answer["valid"] is True and answer["reason"] is None
    assert answer["id"] == key_id(gateway, good)
    assert (answer["owner"], answer["scope"], answer["state"]) == ("svc-a", "write", "active")
    assert answer["display_prefix"] == parse_key(good).display_prefix

    answer = validate(revoked)
    assert (answer["valid"], answer["reason"], answer["state"]) == (False, "revoked", "revoked")
    assert (answer["id"], answer["owner"], answer["scope"]) == (
        key_id(gateway, revoked),
        "svc-b",
        "admin",
    )

    answer = validate(expiring)
    assert (answer["valid"], answer["reason"], answer["state"]) == (False, "expired", "expired")
    assert (answer["id"], answer["owner"]) == (key_id(gateway, expiring), "svc-c")

    answer = validate(unknown)
    assert (answer["valid"], answer["reason"]) == (False, "unknown")
    assert "id" not in answer and "owner" not in answer

    for malformed in (mistyped, good[:-4], "sk-live-0123456789", "hk_live_"):
        answer = validate(malformed)
        assert (answer["valid"], answer["reason"]) == (False, "malformed"), answer
        assert "id" not in answer
    assert "checksum" in validate(mistyped)["message"]

    # The caller must itself be authenticated; a body without a key is a clear 400.
    response = httpx.post(gateway.url + "/api/v1/keys/validate", json={"key": good})
    assert_error(response, 401, "UNAUTHENTICATED")
    response = httpx.post(gateway.url + "/api/v1/keys/validate", json={}, headers=auth(caller))
    assert_error(response, 400, "INVALID_PARAMETER_VALUE", "key")


# ---- audit --------------------------------------------------------------------------------


def test_audit_lists_admin_actions_and_mlflow_writes(gateway: RunningGateway) -> None:
    admin = gateway.create_key(Scope.ADMIN)
    admin_id = key_id(gateway, admin)
    with httpx.Client(base_url=gateway.url, headers=auth(admin)) as api:
        created = api.post("/api/v1/keys", json={"name": "writer", "scope": "write"})
        assert created.status_code == 201
        writer, writer_id = created.json()["key"], created.json()["record"]["id"]

        experiment = f"audited-{uuid.uuid4().hex[:8]}"
        write = httpx.post(
            gateway.url + CREATE_EXPERIMENT, json={"name": experiment}, headers=auth(writer)
        )
        assert write.status_code == 200, write.text
        duplicate = httpx.post(
            gateway.url + CREATE_EXPERIMENT, json={"name": experiment}, headers=auth(writer)
        )
        assert duplicate.status_code == 400  # MLflow's own RESOURCE_ALREADY_EXISTS
        read = httpx.get(gateway.url + GET_BY_NAME, headers=auth(writer))
        assert read.status_code == 200

        rotated = api.post(f"/api/v1/keys/{writer_id}/rotate")
        assert rotated.status_code == 200
        replacement_id = rotated.json()["record"]["id"]
        revoked = api.post(f"/api/v1/keys/{replacement_id}/revoke")
        assert revoked.status_code == 200

        response = api.get("/api/v1/audit")
        assert response.status_code == 200
        entries = response.json()["entries"]
        assert_never_shows(response.text, admin, writer, rotated.json()["key"])
        by_request = {e["request_id"]: e for e in entries}

        expected = [  # oldest first
            (created, "keys.create", admin_id, "POST", "/api/v1/keys", 201),
            (write, "mlflow.write", writer_id, "POST", "/api/2.0/mlflow/experiments/create", 200),
            (
                duplicate,
                "mlflow.write",
                writer_id,
                "POST",
                "/api/2.0/mlflow/experiments/create",
                400,
            ),
            (rotated, "keys.rotate", admin_id, "POST", f"/api/v1/keys/{writer_id}/rotate", 200),
            (
                revoked,
                "keys.revoke",
                admin_id,
                "POST",
                f"/api/v1/keys/{replacement_id}/revoke",
                200,
            ),
        ]
        for answer, action, key, method, path, status in expected:
            entry = by_request[answer.headers["x-request-id"]]
            assert (entry["action"], entry["key_id"], entry["method"]) == (action, key, method)
            assert (entry["path"], entry["status"]) == (path, status)
            assert entry["client"] == "127.0.0.1"
        assert by_request[created.headers["x-request-id"]]["detail"]["created"] == writer_id
        assert by_request[rotated.headers["x-request-id"]]["detail"] == {
            "target": writer_id,
            "rotated": writer_id,
            "replacement": replacement_id,
        }
        assert by_request[revoked.headers["x-request-id"]]["detail"]["revoked"] == replacement_id
        # Newest first, and nothing else: reads and listing are not audited.
        assert [e["request_id"] for e in entries] == [
            answer.headers["x-request-id"] for answer, *_ in reversed(expected)
        ]
        assert read.headers["x-request-id"] not in by_request

        only_writer = api.get("/api/v1/audit", params={"key_id": writer_id}).json()["entries"]
        assert [e["request_id"] for e in only_writer] == [
            duplicate.headers["x-request-id"],
            write.headers["x-request-id"],
        ]
        newest = api.get("/api/v1/audit", params={"limit": 1}).json()["entries"]
        assert [e["request_id"] for e in newest] == [revoked.headers["x-request-id"]]
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert api.get("/api/v1/audit", params={"since": future}).json()["entries"] == []
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        assert len(api.get("/api/v1/audit", params={"since": past}).json()["entries"]) == 5


# ---- docs and request ids -----------------------------------------------------------------


def test_docs_and_openapi_are_served(gateway: RunningGateway) -> None:
    docs = httpx.get(gateway.url + "/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "/api/v1/openapi.json" in docs.text
    schema = httpx.get(gateway.url + "/api/v1/openapi.json")
    assert schema.status_code == 200
    spec = schema.json()
    assert spec["info"]["title"] == "Hokusai API"
    assert {
        "/api/v1/whoami",
        "/api/v1/keys",
        "/api/v1/keys/{reference}",
        "/api/v1/keys/{reference}/revoke",
        "/api/v1/keys/{reference}/rotate",
        "/api/v1/keys/validate",
        "/api/v1/audit",
    } <= set(spec["paths"])
    assert "post" in spec["paths"]["/api/v1/keys"]


def test_request_id_is_echoed_and_forwarded(gateway: RunningGateway) -> None:
    key = gateway.create_key(Scope.WRITE)

    given = f"client-{uuid.uuid4().hex[:12]}"
    response = httpx.get(gateway.url + "/api/v1/whoami", headers=auth(key, given))
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == [given]

    # Through to MLflow: echoed once, and it is the id of the audit row of the write.
    given = f"client.write_{uuid.uuid4().hex[:12]}"
    response = httpx.post(
        gateway.url + CREATE_EXPERIMENT,
        json={"name": f"rid-{uuid.uuid4().hex[:8]}"},
        headers=auth(key, given),
    )
    assert response.status_code == 200, response.text
    assert response.headers.get_list("x-request-id") == [given]
    rows = [e for e in gateway.gateway.audit.read() if e["request_id"] == given]
    assert [(r["action"], r["path"], r["status"]) for r in rows] == [
        ("mlflow.write", "/api/2.0/mlflow/experiments/create", 200)
    ]

    # An error carries the given id in its body too.
    given = f"client-denied-{uuid.uuid4().hex[:8]}"
    response = httpx.get(gateway.url + "/api/v1/audit", headers=auth(key, given))
    assert_error(response, 403, "PERMISSION_DENIED")
    assert response.json()["request_id"] == given

    # An id the gateway cannot use safely (spaces, too long) is replaced by its own.
    for unusable in ("has spaces in it", "x" * 65, "semi;colon"):
        response = httpx.get(gateway.url + "/api/v1/whoami", headers=auth(key, unusable))
        assert response.status_code == 200
        [request_id] = response.headers.get_list("x-request-id")
        assert request_id != unusable and len(request_id) == 32
        int(request_id, 16)
