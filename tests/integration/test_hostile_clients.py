"""What a hostile client cannot do through the gateway: forge its address, lock a valid key
out, smuggle a path past the router in another encoding, put a key into any log, or get an
answer outside the error format.

Longer than most test modules (about 430 lines): one attack per test, each against the
real gateway.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from hokusai.keys.format import generate_key
from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import MLFLOW_API, MakeGateway, RunningGateway, auth
from tests.helpers import assert_error as assert_mlflow_error
from tests.raw_http import exchange

pytestmark = pytest.mark.integration

# Generous: the suite shares small machines; nothing here asserts on time.
http = httpx.Client(timeout=60)
SEARCH = MLFLOW_API + "experiments/search?max_results=1"


@pytest.fixture(autouse=True)
def _server_believes_no_proxy_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # The gateway decides who the client is; the ASGI server must hand it the real peer
    # (`hokusai serve` runs uvicorn without proxy headers). This turns uvicorn's own
    # X-Forwarded-For handling off for the servers these tests start.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "")


def assert_error(response: httpx.Response, status: int, code: str, *phrases: str) -> str:
    """The error format, sent as JSON."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return assert_mlflow_error(response, status, code, *phrases)


def audit_rows(running: RunningGateway) -> list[dict[str, Any]]:
    admin = running.create_key(Scope.ADMIN)
    response = http.get(running.url + "/api/v1/audit?limit=1000", headers=auth(admin))
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def create_experiment(running: RunningGateway, key: str, headers: dict[str, str]) -> str:
    name = "hostile-" + generate_key()[-12:]
    response = http.post(
        running.url + MLFLOW_API + "experiments/create",
        json={"name": name},
        headers={**auth(key), **headers},
    )
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


@pytest.fixture
def proxied(
    store_url: str, mlflow_server: MlflowProcess, make_gateway: MakeGateway
) -> RunningGateway:
    """A gateway told that loopback is its reverse proxy."""
    return make_gateway(store_url, mlflow_server.url, trusted_proxies="127.0.0.1/32")


# ---- client addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        {"X-Forwarded-For": "<script>alert(1)</script>"},
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
    ],
)
def test_forwarded_headers_are_not_believed_by_default(
    gateway: RunningGateway, forged: dict[str, str]
) -> None:
    request_id = create_experiment(gateway, gateway.create_key(), forged)

    [row] = [r for r in audit_rows(gateway) if r["request_id"] == request_id]
    assert row["client"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        # A client's own entries are left of what the trusted proxy appended.
        (["198.51.100.1, 203.0.113.5"], "203.0.113.5"),
        (["198.51.100.1", "203.0.113.5"], "203.0.113.5"),  # two headers: one list
        (["203.0.113.5, 127.0.0.1"], "203.0.113.5"),  # trusted hops are skipped
        (["2001:DB8::1"], "2001:db8::1"),  # normal form
        (["<script>"], "127.0.0.1"),  # not an address: only the proxy is known
        (["203.0.113.5, <script>"], "127.0.0.1"),
    ],
)
def test_behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client(
    proxied: RunningGateway, forwarded_for: list[str], client: str
) -> None:
    key = proxied.create_key()
    headers = [*auth(key).items(), *(("X-Forwarded-For", v) for v in forwarded_for)]
    response = http.post(
        proxied.url + MLFLOW_API + "experiments/create",
        json={"name": "proxied-" + generate_key()[-12:]},
        headers=headers,
    )
    assert response.status_code == 200, response.text

    [row] = [r for r in audit_rows(proxied) if r["request_id"] == response.headers["x-request-id"]]
    assert row["client"] == client


def test_forwarded_proto_and_host_only_from_a_trusted_proxy(
    gateway: RunningGateway, proxied: RunningGateway
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"}

    trusted = http.get(proxied.url + "/nowhere", headers=forwarded)
    untrusted = http.get(gateway.url + "/nowhere", headers=forwarded)
    forged_host = http.get(gateway.url + "/nowhere", headers={"Host": "<script>"})

    assert_error(trusted, 404, "ENDPOINT_NOT_FOUND", "https://registry.example.com/api/mlflow")
    message = assert_error(untrusted, 404, "ENDPOINT_NOT_FOUND", f"{gateway.url}/api/mlflow")
    assert "registry.example.com" not in message
    assert "<script>" not in forged_host.text


def test_failed_attempts_never_lock_out_a_valid_key(
    store_url: str, mlflow_server: MlflowProcess, make_gateway: MakeGateway
) -> None:
    running = make_gateway(store_url, mlflow_server.url, auth_failures_per_minute=3)
    good = running.create_key(Scope.READ)
    # Well-formed keys with a valid checksum that were never issued: the costly kind.
    statuses = []
    for n in range(6):
        forged = {**auth(generate_key()), "X-Forwarded-For": f"203.0.113.{n}"}
        statuses.append(http.get(running.url + SEARCH, headers=forged).status_code)
    # Changing X-Forwarded-For does not open a new window.
    assert statuses == [401, 401, 401, 429, 429, 429]

    for _ in range(3):
        assert http.get(running.url + SEARCH, headers=auth(good)).status_code == 200
        assert http.get(running.url + "/api/v1/whoami", headers=auth(good)).status_code == 200
    # The window still slows down what fails, and says why this attempt failed.
    assert_error(
        http.get(running.url + SEARCH, headers=auth(generate_key())),
        429,
        "REQUEST_LIMIT_EXCEEDED",
        "from 127.0.0.1",
        "Unknown API key",
    )
    assert_error(
        http.get(running.url + SEARCH),
        429,
        "REQUEST_LIMIT_EXCEEDED",
        "No API key was sent",
    )


def test_missing_key_names_both_headers(gateway: RunningGateway) -> None:
    assert_error(
        http.get(gateway.url + SEARCH),
        401,
        "UNAUTHENTICATED",
        "Authorization: Bearer hk_live_",
        "X-API-Key: hk_live_",
    )


# ---- one representation of the path ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/mlflo%77/api/2.0/mlflow/experiments/search?max_results=1",
        "/api/%6Dlflow/api/2.0/mlflow/experiments/search?max_results=1",
        "/%61pi/mlflow/api/2.0/mlflow/experiments/search?max_results=1",
        "/api/mlflow/api/2.0/mlflow/experiments/s%65arch?max_results=1",
        "/api/%32.0/mlflow/experiments/search?max_results=1",
        "/api/2.0/ml%66low/experiments/search?max_results=1",
        "/api/mlflow/api/2.0/mlflow/experiments/get%2Dby%2Dname?experiment_name=Default",
    ],
)
def test_encoded_letters_in_mlflow_prefixes_reach_mlflow(
    gateway: RunningGateway, path: str
) -> None:
    response = http.get(gateway.url + path, headers=auth(gateway.create_key(Scope.READ)))

    assert response.status_code == 200, response.text
    assert "error_code" not in response.json()


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/heal%74h", 200, "status"),
        ("/%68ealth", 200, "status"),
        ("/re%61dy", 200, "checks"),
        ("/api/v%31/whoami", 200, "id"),
        ("/api/%76%31/whoami", 200, "id"),
        ("/api/v1/who%61mi", 200, "id"),
    ],
)
def test_encoded_letters_in_the_gateways_own_paths(
    gateway: RunningGateway, path: str, status: int, field: str
) -> None:
    response = http.get(gateway.url + path, headers=auth(gateway.create_key(Scope.READ)))

    assert response.status_code == status, response.text
    assert field in response.json()


def test_the_policy_decides_on_the_decoded_path(gateway: RunningGateway) -> None:
    read = gateway.create_key(Scope.READ)
    response = http.post(
        gateway.url + "/api/mlflo%77/api/2.0/mlflow/registered-models/cr%65ate",
        json={"name": "never-" + generate_key()[-12:]},
        headers=auth(read),
    )
    assert_error(response, 403, "PERMISSION_DENIED", "registered-models/create", "'write'")


def test_a_path_that_is_not_utf8_once_decoded_is_refused(gateway: RunningGateway) -> None:
    key = gateway.create_key(Scope.READ)
    # An overlong encoding of '.' and a lone continuation byte.
    for path in ("/api/mlflow/api/2.0/mlflow/%C0%AE%C0%AE/x", "/api/mlflow/%80"):
        response = http.get(gateway.url + path, headers=auth(key))
        assert_error(response, 400, "INVALID_PARAMETER_VALUE", "UTF-8", "canonical")


# ---- no key in the URL, the logs or the audit ------------------------------------------


def encoded_forms(key: str) -> list[str]:
    return [
        key.replace("_", "%5F"),
        key.replace("_", "%255F"),
        quote(key, safe="").replace("h", "%68", 1),
        "".join(f"%{ord(c):02X}" for c in key),
    ]


def test_an_encoded_key_in_the_query_is_refused(
    gateway: RunningGateway, mlflow_server: MlflowProcess
) -> None:
    key = gateway.create_key(Scope.READ)
    for form in encoded_forms(key):
        response = http.get(f"{gateway.url}{SEARCH}&filter={form}", headers=auth(key))
        assert_error(response, 400, "INVALID_PARAMETER_VALUE", "found in the URL's query")
        response = http.get(f"{gateway.url}{SEARCH}&{form}=1", headers=auth(key))
        assert_error(response, 400, "INVALID_PARAMETER_VALUE", "found in the URL's query")
    assert key[8:] not in mlflow_server.log_file.read_text(errors="replace")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/3.0/mlflow/traces/{key}"),
        ("GET", "/api/mlflow/api/3.0/mlflow/traces/{key}"),
        ("DELETE", "/api/mlflow/api/2.0/mlflow/logged-models/{key}"),
        ("DELETE", "/api/2.0/mlflow/logged-models/{key}/tags/x"),
        ("GET", "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/0/{key}/model.pkl"),
        ("POST", "/api/v1/keys/{key}/revoke"),
    ],
)
def test_a_key_in_the_path_is_never_forwarded_logged_or_audited(
    gateway: RunningGateway,
    mlflow_server: MlflowProcess,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
) -> None:
    caplog.set_level("DEBUG", logger="hokusai")
    admin = gateway.create_key(Scope.ADMIN)
    exposed = generate_key()
    before = len(audit_rows(gateway))

    for form in [exposed, *encoded_forms(exposed)[:1], exposed.replace("h", "%68", 1)]:
        response = http.request(method, gateway.url + path.format(key=form), headers=auth(admin))
        assert_error(
            response, 400, "INVALID_PARAMETER_VALUE", "API key was found in the URL's path"
        )

    rows = audit_rows(gateway)
    assert len(rows) == before  # nothing of the refused requests was audited
    from hokusai.logs import JsonFormatter

    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for where in (logged, str(rows), mlflow_server.log_file.read_text(errors="replace")):
        assert exposed[8:20] not in where


def test_the_audit_redacts_a_key_that_reached_it(gateway: RunningGateway) -> None:
    # The second line of defence: whatever calls the audit, no key is stored.
    from hokusai.gateway.audit import AuditEntry

    exposed = generate_key()
    for path in (f"/x/{exposed}", f"/x/{exposed.replace('_', '%5F')}"):
        gateway.gateway.audit.record(
            AuditEntry("r", None, None, "test", "GET", path, 200, "<script>")
        )
    rows = gateway.gateway.audit.read(limit=2)
    assert all(exposed[8:] not in row["path"] for row in rows), rows
    assert all(row["client"] is None for row in rows), rows


# ---- every answer in the error format --------------------------------------------------


def test_an_unexpected_failure_in_the_admin_api_is_in_the_format(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    admin = gateway.create_key(Scope.ADMIN)
    # A real fault: a corrupt audit row (its detail is not JSON); the keys still work. (A
    # store that fails outright is a 503 TEMPORARILY_UNAVAILABLE, not this.)
    with gateway.gateway.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (at, request_id, action, method, path, status, detail) "
                "VALUES (:at, 'r', 'corrupt', 'GET', '/', 200, '{not json')"
            ),
            {"at": datetime.now(UTC)},
        )

    response = http.get(gateway.url + "/api/v1/audit", headers=auth(admin))

    request_id = response.headers["x-request-id"]
    assert_error(response, 500, "INTERNAL_ERROR", request_id, "operator's log")
    # The answer is sent before the failure is logged: wait for the line.
    deadline = time.monotonic() + 30
    while not any(
        getattr(r, "fields", {}).get("request_id") == request_id and r.exc_info
        for r in caplog.records
    ):
        assert time.monotonic() < deadline, "the failure is logged under its request id"
        time.sleep(0.05)


@pytest.mark.parametrize("expires_in", ["999999999d", "3651d", "999999999999w", "87601h"])
def test_an_expiry_out_of_range_is_a_400_naming_the_range(
    gateway: RunningGateway, expires_in: str
) -> None:
    admin = gateway.create_key(Scope.ADMIN)
    response = http.post(
        gateway.url + "/api/v1/keys",
        json={"name": "too long", "expires_in": expires_in},
        headers=auth(admin),
    )
    assert_error(response, 400, "INVALID_PARAMETER_VALUE", "between 1s and 3650d")
    ok = http.post(
        gateway.url + "/api/v1/keys",
        json={"name": "ten years", "expires_in": "3650d"},
        headers=auth(admin),
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_out_of_range_is_a_400_naming_the_range(gateway: RunningGateway, since: str) -> None:
    admin = gateway.create_key(Scope.ADMIN)
    for response in (
        http.get(gateway.url + "/api/v1/audit", params={"since": since}, headers=auth(admin)),
        http.get(gateway.url + "/api/v1/events", params={"since": since}, headers=auth(admin)),
        http.post(gateway.url + "/api/v1/replay", json={"since": since}, headers=auth(admin)),
    ):
        assert_error(
            response,
            400,
            "INVALID_PARAMETER_VALUE",
            "out of range",
            "0001-01-01T00:00:00Z and 9999-12-31T00:00:00Z",
        )
    earliest = http.get(
        gateway.url + "/api/v1/audit",
        params={"since": "0001-01-01T00:00:00Z"},
        headers=auth(admin),
    )
    assert earliest.status_code == 200, earliest.text


def test_mlflows_html_error_page_is_answered_in_the_format(gateway: RunningGateway) -> None:
    key = gateway.create_key(Scope.READ)
    direct = http.get(f"{gateway.gateway.settings.mlflow_url}/graphql")
    assert direct.status_code >= 500 and "json" not in direct.headers["content-type"], direct

    response = http.get(gateway.url + "/api/mlflow/graphql", headers=auth(key))

    assert response.status_code == direct.status_code
    assert_error(response, direct.status_code, "INTERNAL_ERROR", response.headers["x-request-id"])


def test_mlflows_own_json_errors_pass_untouched(gateway: RunningGateway) -> None:
    key = gateway.create_key(Scope.READ)
    path = "/api/2.0/mlflow/registered-models/get?name=no-such-model"
    direct = http.get(gateway.gateway.settings.mlflow_url + path)

    response = http.get(gateway.url + path, headers=auth(key))

    assert response.status_code == direct.status_code == 404
    assert response.json() == direct.json()  # MLflow's body, byte for byte in meaning


# ---- internals stay inside ---------------------------------------------------------------


def test_ready_does_not_name_the_upstream(
    gateway: RunningGateway, mlflow_server: MlflowProcess
) -> None:
    response = http.get(gateway.url + "/ready")

    assert response.json()["checks"]["mlflow"]["ok"] is True
    assert mlflow_server.url not in response.text
    assert str(mlflow_server.port) not in response.text


def test_a_trailing_slash_is_a_404_in_the_format_never_a_redirect(gateway: RunningGateway) -> None:
    admin = gateway.create_key(Scope.ADMIN)
    data = exchange(
        gateway,
        b"GET /api/v1/keys/ HTTP/1.1\r\nHost: evil.example\r\n"
        + f"Authorization: Bearer {admin}\r\nConnection: close\r\n\r\n".encode(),
    )
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 404"), head
    assert b"location:" not in head and b"evil.example" not in data
    response = http.get(gateway.url + "/api/v1/keys/", headers=auth(admin))
    assert_error(response, 404, "ENDPOINT_NOT_FOUND", "no trailing slash: /api/v1/keys.")
