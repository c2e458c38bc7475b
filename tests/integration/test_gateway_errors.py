"""Every refusal is an MLflow-format error with the right status, code and a message that
says what to do; and a refused request changes nothing."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hokusai.keys.format import generate_key
from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import (
    MakeGateway,
    MovedClock,
    RunningGateway,
    assert_error,
    free_port,
    reread_tracking_uri,
)

pytestmark = pytest.mark.integration

GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
CREATE_MODEL = "/api/mlflow/api/2.0/mlflow/registered-models/create"


def registered_model_exists(gateway: RunningGateway, name: str) -> bool:
    admin = gateway.create_key(Scope.ADMIN)
    response = httpx.get(
        gateway.url + "/api/mlflow/api/2.0/mlflow/registered-models/get",
        params={"name": name},
        headers={"Authorization": f"Bearer {admin}"},
    )
    return response.status_code == 200


def test_missing_key(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.url + GET_BY_NAME)
    assert_error(
        response, 401, "UNAUTHENTICATED", "HOKUSAI_API_KEY", "Authorization: Bearer", "X-API-Key"
    )


def test_malformed_and_mistyped_keys(gateway: RunningGateway) -> None:
    good = gateway.create_key()
    mistyped = good[:-1] + ("a" if good[-1] != "a" else "b")
    response = httpx.get(gateway.url + GET_BY_NAME, headers={"Authorization": f"Bearer {mistyped}"})
    assert_error(response, 401, "UNAUTHENTICATED", "checksum")
    response = httpx.get(gateway.url + GET_BY_NAME, headers={"X-API-Key": "sk-not-a-hokusai-key"})
    assert_error(response, 401, "UNAUTHENTICATED", "hk_live_")
    response = httpx.get(
        gateway.url + GET_BY_NAME, headers={"Authorization": f"Bearer {good[:-5]}"}
    )
    assert_error(response, 401, "UNAUTHENTICATED", "truncated")


def test_unknown_revoked_and_expired_keys_say_which(
    gateway: RunningGateway, clock: MovedClock
) -> None:
    unknown = generate_key("live")
    response = httpx.get(gateway.url + GET_BY_NAME, headers={"Authorization": f"Bearer {unknown}"})
    assert_error(response, 401, "UNAUTHENTICATED", "Unknown API key")

    revoked = gateway.create_key()
    gateway.gateway.keys.revoke(revoked)
    response = httpx.get(gateway.url + GET_BY_NAME, headers={"Authorization": f"Bearer {revoked}"})
    assert_error(response, 401, "UNAUTHENTICATED", "was revoked")

    issued = gateway.gateway.keys.create(name="short", owner="t", expires_in=timedelta(seconds=1))
    clock.advance(timedelta(seconds=2))
    response = httpx.get(gateway.url + GET_BY_NAME, headers={"X-API-Key": issued.key})
    assert_error(response, 401, "UNAUTHENTICATED", "expired", "hokusai keys rotate")


def test_basic_auth_is_explained(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.url + GET_BY_NAME, auth=("user", "password"))
    assert_error(response, 401, "UNAUTHENTICATED", "MLFLOW_TRACKING_TOKEN")


def test_read_key_on_write_endpoint_names_scope_and_changes_nothing(
    gateway: RunningGateway,
) -> None:
    read_key = gateway.create_key(Scope.READ)
    name = f"denied-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        gateway.url + CREATE_MODEL,
        json={"name": name},
        headers={"Authorization": f"Bearer {read_key}"},
    )
    assert_error(response, 403, "PERMISSION_DENIED", "'write' role", "has 'read'")
    assert response.json()["details"] == {
        "refused_by": "role",
        "needed": "write",
        "role": "read",
        "workspace": "default",
        "key_workspace": "default",
        "granted_by": "an admin of workspace 'default' or a platform admin",
    }
    assert not registered_model_exists(gateway, name)
    # The refused attempt is in the audit log under the read key, with what refused it.
    read_id = gateway.gateway.keys.resolve(read_key).id
    denied = [e for e in gateway.gateway.audit.read(key_id=read_id) if e["action"] == "denied"]
    assert [(e["method"], e["path"], e["status"]) for e in denied] == [("POST", CREATE_MODEL, 403)]
    assert denied[0]["detail"] == response.json()["details"]
    assert denied[0]["workspace"] == "default"
    # The read key still reads.
    response = httpx.get(gateway.url + GET_BY_NAME, headers={"Authorization": f"Bearer {read_key}"})
    assert response.status_code == 200


def test_write_key_cannot_configure_mlflow_webhooks(gateway: RunningGateway) -> None:
    key = gateway.create_key(Scope.WRITE)
    response = httpx.post(
        gateway.url + "/api/mlflow/api/2.0/mlflow/webhooks",
        json={},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert_error(response, 403, "PERMISSION_DENIED", "platform admin key", "'write' in")


def test_wrong_prefix_names_the_tracking_uri(gateway: RunningGateway) -> None:
    key = gateway.create_key()
    for path in (
        "/mlflow/api/2.0/mlflow/experiments/get-by-name",
        "/api/mlflow2/api/2.0/mlflow/experiments/get-by-name",
    ):
        response = httpx.get(gateway.url + path, headers={"Authorization": f"Bearer {key}"})
        assert_error(
            response, 404, "ENDPOINT_NOT_FOUND", f"MLFLOW_TRACKING_URI={gateway.url}/api/mlflow"
        )
    # A tracking URI with the prefix twice.
    response = httpx.get(
        gateway.url + "/api/mlflow/api/mlflow/api/2.0/mlflow/experiments/get-by-name",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert_error(response, 404, "ENDPOINT_NOT_FOUND", "twice", f"{gateway.url}/api/mlflow")
    # Anything else is a 404 in the same format, never {"detail": "Not Found"}.
    response = httpx.get(gateway.url + "/nothing/here")
    assert_error(response, 404, "ENDPOINT_NOT_FOUND", "/api/mlflow")
    response = httpx.get(
        gateway.url + "/api/v1/nothing", headers={"Authorization": f"Bearer {key}"}
    )
    assert_error(response, 404, "ENDPOINT_NOT_FOUND", "/docs")


def test_stock_client_shows_a_readable_error_for_a_wrong_prefix(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gateway.url + "/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", gateway.create_key())
    reread_tracking_uri()
    with pytest.raises(MlflowException) as raised:
        MlflowClient().get_experiment_by_name("Default")
    text = str(raised.value)
    assert "INTERNAL_ERROR" not in text and "Response: {" not in text
    assert f"{gateway.url}/api/mlflow" in text


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/mlflow/api/2.0/mlflow/../mlflow/experiments/get-by-name",
        "/api/mlflow/api/2.0/mlflow/./experiments/get-by-name",
        "/api/mlflow/api/2.0/mlflow%2Fexperiments/get-by-name",
        "/api/mlflow/api/2.0/mlflow/%2e%2e/experiments/get-by-name",
        "/api/mlflow//api/2.0/mlflow/experiments/get-by-name",
        "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/0/..%5c..%5cetc",
    ],
)
def test_non_canonical_paths_are_refused(gateway: RunningGateway, raw_path: str) -> None:
    key = gateway.create_key()
    response = raw_get(gateway.url, raw_path, key)
    assert response["status"] == 400, response
    assert response["body"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "canonical" in response["body"]["message"]


def raw_get(base_url: str, raw_path: str, key: str) -> dict[str, Any]:
    """Send the path byte for byte (HTTP clients normalise dot segments away)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"GET {raw_path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return {"status": int(head.split()[1]), "body": json.loads(body)}


def test_key_in_query_string_is_refused(gateway: RunningGateway) -> None:
    key = gateway.create_key()
    response = httpx.get(gateway.url + GET_BY_NAME + f"&api_key={key}")
    assert_error(response, 400, "INVALID_PARAMETER_VALUE", "never accepted in the URL", "rotate")
    response = httpx.get(
        gateway.url + GET_BY_NAME + f"&anything={key}", headers={"Authorization": f"Bearer {key}"}
    )
    assert_error(response, 400, "INVALID_PARAMETER_VALUE", "never accepted in the URL")


def test_oversized_body_is_refused_and_changes_nothing(
    store_url: str, mlflow_server: MlflowProcess, make_gateway: MakeGateway
) -> None:
    running = make_gateway(store_url, mlflow_server.url, max_body_bytes=1024)
    key = running.create_key()
    name = f"big-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        running.url + CREATE_MODEL,
        json={"name": name, "description": "x" * 5000},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert_error(response, 400, "INVALID_PARAMETER_VALUE", "larger than", "1024 bytes")

    def chunked():  # no Content-Length: the limit holds while streaming too
        yield json.dumps({"name": name, "description": "y" * 5000}).encode()

    response = httpx.post(
        running.url + CREATE_MODEL,
        content=chunked(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert_error(response, 400, "INVALID_PARAMETER_VALUE", "larger than")
    assert not registered_model_exists(running, name)


def test_mlflow_down_is_a_fast_503(store_url: str, make_gateway: MakeGateway) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    running = make_gateway(store_url, dead)
    key = running.create_key()
    response = httpx.get(
        running.url + GET_BY_NAME, headers={"Authorization": f"Bearer {key}"}, timeout=5
    )
    assert_error(response, 503, "TEMPORARILY_UNAVAILABLE", "not reachable")
    assert response.headers["retry-after"] == "1"
    assert response.elapsed.total_seconds() < 1.0
    ready = httpx.get(running.url + "/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["mlflow"]["ok"] is False
    assert ready.json()["checks"]["auth_store"]["ok"] is True


def test_rate_limit_per_key(
    store_url: str, mlflow_server: MlflowProcess, make_gateway: MakeGateway
) -> None:
    running = make_gateway(
        store_url, mlflow_server.url, rate_limit_per_second=1, rate_limit_burst=3
    )
    key, other = running.create_key(), running.create_key()
    with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"}) as c:
        statuses = [c.get(GET_BY_NAME).status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [429, 429]
        response = c.get(GET_BY_NAME)
        assert_error(response, 429, "REQUEST_LIMIT_EXCEEDED", "rate limit")
        assert int(response.headers["retry-after"]) >= 1
    # Another key is not affected.
    response = httpx.get(running.url + GET_BY_NAME, headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 200
    metrics = httpx.get(running.url + "/metrics").text
    assert 'hokusai_rate_limited_total{limit="key"} 3.0' in metrics


def test_failed_authentications_per_address_are_limited(
    store_url: str, mlflow_server: MlflowProcess, make_gateway: MakeGateway
) -> None:
    running = make_gateway(store_url, mlflow_server.url, auth_failures_per_minute=3)
    good = running.create_key()
    bad = {"Authorization": f"Bearer {generate_key('live')}"}
    statuses = [httpx.get(running.url + GET_BY_NAME, headers=bad).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert_error(
        httpx.get(running.url + GET_BY_NAME, headers=bad),
        429,
        "REQUEST_LIMIT_EXCEEDED",
        "failed authentications",
        "hokusai doctor",
    )
    # The window slows down what fails; a valid key from the same address still works.
    response = httpx.get(running.url + GET_BY_NAME, headers={"Authorization": f"Bearer {good}"})
    assert response.status_code == 200, response.text


def test_no_key_reaches_the_log(gateway: RunningGateway, caplog: pytest.LogCaptureFixture) -> None:
    key = gateway.create_key()
    caplog.set_level("DEBUG", logger="hokusai")
    httpx.get(gateway.url + GET_BY_NAME, headers={"Authorization": f"Bearer {key}"})
    httpx.get(gateway.url + GET_BY_NAME + f"&api_key={key}")
    httpx.get(gateway.url + f"/api/mlflow/api/2.0/mlflow/{key}")
    httpx.get(gateway.url + GET_BY_NAME, headers={"Authorization": f"Bearer {key}x"})
    assert caplog.records, "the gateway logs every request"
    from hokusai.logs import JsonFormatter

    formatted = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert key not in formatted
    assert key[:20] not in formatted
