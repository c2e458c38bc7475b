"""What an operator sees of every request: /ready with each dependency's status and latency,
one JSON access log line per request under the request's id, and that id carried from the
client through the gateway to MLflow and into the audit log."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.logs import JsonFormatter
from hokusai.server.mlflow_process import MlflowProcess
from tests.doctor.support import Served
from tests.helpers import MLFLOW_API, MakeGateway, RunningGateway

pytestmark = pytest.mark.integration

GENERATED_ID = re.compile(r"[0-9a-f]{32}\Z")


def wait_for_line(read: Any, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The access log line of ``request_id``: it is written just after the answer."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [entry for entry in read() if entry.get("request_id") == request_id]
        if lines:
            assert len(lines) == 1, lines
            return dict(lines[0])
        assert time.monotonic() < deadline, f"no access log line for {request_id}"
        time.sleep(0.05)


# ---- /ready -----------------------------------------------------------------------------


def test_ready_names_every_dependency_with_its_latency(served: Served) -> None:
    response = httpx.get(served.url + "/ready", timeout=10)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"auth_store", "mlflow", "dispatcher"}
    for name, check in body["checks"].items():
        assert set(check) == {"ok", "ms", "detail"}, (name, check)
        assert check["ok"] is True, (name, check)
        assert isinstance(check["ms"], float | int) and 0 <= check["ms"] < 3000, (name, check)
        assert isinstance(check["detail"], str) and check["detail"], (name, check)
    # Callers learn how MLflow is doing, never where it is.
    assert served.mlflow_url not in response.text
    assert "MLflow answered" in body["checks"]["mlflow"]["detail"]
    assert "sqlite" in body["checks"]["auth_store"]["detail"]


# ---- the access log of a real `hokusai serve` ---------------------------------------------


def test_access_log_line_of_a_served_request(served: Served) -> None:
    key = served.admin_key()
    headers = {"Authorization": f"Bearer {key}"}
    me = httpx.get(served.url + "/api/v1/whoami", headers=headers, timeout=10).json()

    response = httpx.get(
        served.url + MLFLOW_API + "experiments/search",
        params={"max_results": 1},
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert GENERATED_ID.match(request_id), request_id
    line = wait_for_line(served.log_lines, request_id)
    assert line["logger"] == "hokusai.access"
    assert line["key_id"] == me["id"]
    assert line["route_class"] == "tracking"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert isinstance(line["latency_ms"], float | int) and line["latency_ms"] > 0
    assert isinstance(line["upstream_ms"], float | int) and line["upstream_ms"] > 0
    assert line["upstream_ms"] <= line["latency_ms"]
    log_text = served.log.read_text()
    assert key not in log_text and key[:20] not in log_text, "no key ever reaches the log"


def test_access_log_line_of_a_refused_request(served: Served) -> None:
    response = httpx.get(served.url + MLFLOW_API + "experiments/search", timeout=10)

    assert response.status_code == 401
    line = wait_for_line(served.log_lines, response.headers["x-request-id"])
    assert line["status"] == 401 and line["route_class"] == "tracking"
    assert line["key_id"] is None and line["upstream_ms"] is None
    assert line["error"] == "missing"


# ---- the request id, from the client to MLflow and the audit log ---------------------------


@dataclass
class Relay:
    """A loopback relay in front of the real MLflow that notes the headers of each request
    the gateway sends upstream."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    seen: list[dict[str, str]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while size := int(handler.rfile.readline().split(b";")[0], 16):
            body += handler.rfile.read(size)
            handler.rfile.readline()
        while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return body
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


@pytest.fixture
def relay(mlflow_server: MlflowProcess) -> Iterator[Relay]:
    seen: list[dict[str, str]] = []
    upstream = httpx.Client(base_url=mlflow_server.url, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def relay(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append({"path": self.path, **headers})
            body = read_body(self)
            forwarded = {
                k: v
                for k, v in headers.items()
                if k not in ("host", "connection", "transfer-encoding", "content-length")
            }
            answer = upstream.request(self.command, self.path, content=body, headers=forwarded)
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Relay(server, thread, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        upstream.close()


@pytest.fixture
def relayed_gateway(relay: Relay, make_gateway: MakeGateway, tmp_path: Path) -> RunningGateway:
    return make_gateway(f"sqlite:///{tmp_path / 'hokusai.db'}", relay.url)


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    """The gateway's access log, formatted as in production, for this test only."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("hokusai.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_client_request_id_reaches_mlflow_the_audit_log_and_the_access_log(
    relayed_gateway: RunningGateway, relay: Relay, access_log: io.StringIO
) -> None:
    key = relayed_gateway.create_key(Scope.WRITE)
    key_id = relayed_gateway.gateway.keys.resolve(key).id
    request_id = f"doctor-test-{uuid.uuid4().hex[:12]}"

    response = httpx.post(
        relayed_gateway.url + MLFLOW_API + "experiments/create",
        json={"name": f"doctor-request-id-{uuid.uuid4().hex[:8]}"},
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    # Sent upstream, with the key's id and never the key.
    [upstream] = [s for s in relay.seen if s["path"].endswith("/experiments/create")]
    assert upstream["x-request-id"] == request_id
    assert upstream["x-hokusai-key-id"] == key_id
    assert "authorization" not in upstream and "x-api-key" not in upstream
    assert all(key not in value for value in upstream.values())
    # The write's audit row has it.
    [row] = relayed_gateway.gateway.audit.read(key_id=key_id)
    assert row["request_id"] == request_id
    assert row["action"] == "mlflow.write" and row["path"].endswith("/experiments/create")
    # And so does its access log line.

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in access_log.getvalue().splitlines()]

    line = wait_for_line(lines, request_id)
    assert line["logger"] == "hokusai.access"
    assert line["key_id"] == key_id and line["status"] == 200
    assert line["route_class"] == "tracking" and line["method"] == "POST"
    assert line["latency_ms"] >= line["upstream_ms"] > 0
    assert key not in access_log.getvalue()


def test_client_forwarding_headers_do_not_reach_mlflow(
    relayed_gateway: RunningGateway, relay: Relay
) -> None:
    key = relayed_gateway.create_key(Scope.READ)
    forged = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Prefix": "/elsewhere",
        "Forwarded": "for=203.0.113.9;host=evil.example",
        "X-Real-IP": "203.0.113.9",
    }
    response = httpx.get(
        relayed_gateway.url + MLFLOW_API + "experiments/search?max_results=1",
        headers={"Authorization": f"Bearer {key}", **forged},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    upstream = relay.seen[-1]
    assert upstream["path"].endswith("/experiments/search?max_results=1")
    assert not {name.lower() for name in forged} & set(upstream), upstream
    assert all("203.0.113.9" not in v and "evil.example" not in v for v in upstream.values())


def test_unusable_request_id_is_replaced(
    relayed_gateway: RunningGateway, relay: Relay, access_log: io.StringIO
) -> None:
    key = relayed_gateway.create_key(Scope.READ)
    unusable = "not a usable id; " + "x" * 80

    response = httpx.get(
        relayed_gateway.url + MLFLOW_API + "experiments/search",
        params={"max_results": 1},
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": unusable},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert GENERATED_ID.match(request_id), request_id
    assert relay.seen[-1]["x-request-id"] == request_id

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in access_log.getvalue().splitlines()]

    assert wait_for_line(lines, request_id)["route_class"] == "tracking"
    assert unusable not in access_log.getvalue()
