"""Hostile request heads, without any key, over raw sockets to the real gateway: huge
headers are cut off at the cap in bounded memory and never reach MLflow, heads sent a
byte at a time are timed out, and connections beyond the bound are refused at once."""

from __future__ import annotations

import json
import select
import time
import uuid
from pathlib import Path

import httpx
import pytest

from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import MLFLOW_API, MakeGateway, RunningGateway
from tests.raw_http import connect, read_answer

pytestmark = pytest.mark.integration


@pytest.fixture
def guarded(
    mlflow_server: MlflowProcess, make_gateway: MakeGateway, tmp_path: Path
) -> RunningGateway:
    return make_gateway(
        f"sqlite:///{tmp_path / 'hokusai.db'}",
        mlflow_server.url,
        max_header_bytes=16 * 1024,
        header_timeout=1.0,
        max_connections=6,
    )


def assert_mlflow_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, body
    error = json.loads(body)
    assert error["error_code"] == "BAD_REQUEST" or expected == 503
    assert error["request_id"] == headers["x-request-id"]
    return str(error["message"])


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_200_mib_header_is_cut_off_in_bounded_memory(guarded: RunningGateway) -> None:
    before = rss_bytes()
    sock = connect(guarded)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Big: ")
    chunk = b"a" * 65536
    sent, answered = 0, False
    while sent < 200 * 1024 * 1024:
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
        if select.select([sock], [], [], 0)[0]:
            answered = True
            break
    status, headers, body = read_answer(sock)
    sock.close()
    growth = rss_bytes() - before
    message = assert_mlflow_error(status, headers, body, 431)
    assert "16384 bytes" in message
    assert answered or sent < 200 * 1024 * 1024
    # What the client pushed before it saw the answer (kernel buffers, and the input the
    # gateway drains unread while it closes) is far below the 200 MiB it meant to send.
    assert sent < 64 * 1024 * 1024, f"the client sent {sent} bytes before an answer"
    assert growth < 32 * 1024 * 1024, f"RSS grew {growth / 2**20:.0f} MiB"


def test_a_1_mb_header_never_reaches_mlflow(guarded: RunningGateway) -> None:
    key = guarded.create_key()
    name = f"big-header-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        guarded.url + MLFLOW_API + "experiments/create",
        json={"name": name},
        headers={"Authorization": f"Bearer {key}", "X-Pad": "p" * 1_000_000},
        timeout=60,
    )
    assert response.status_code == 431
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    found = httpx.get(
        guarded.url + MLFLOW_API + "experiments/get-by-name",
        params={"experiment_name": name},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert found.status_code == 404, found.text
    assert found.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # Headers under the cap still pass.
    ok = httpx.get(guarded.url + "/health", headers={"X-Pad": "p" * 8000})
    assert ok.status_code == 200


def test_a_head_sent_a_byte_at_a_time_is_timed_out(guarded: RunningGateway) -> None:
    slow = connect(guarded)
    idle = connect(guarded)
    started = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"s" * 100
    answer: tuple[int, dict[str, str], bytes] | None = None
    for byte in request:
        try:
            slow.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        if select.select([slow], [], [], 0.2)[0]:
            answer = read_answer(slow)
            break
    elapsed = time.monotonic() - started
    assert answer is not None, "the trickled head was never cut off"
    message = assert_mlflow_error(*answer, 408)
    assert "1 s" in message
    assert elapsed < 5
    # A connection that sends nothing at all is closed too, without an answer.
    idle.settimeout(5)
    assert idle.recv(100) == b""
    slow.close()
    idle.close()


def test_connections_beyond_the_bound_are_refused_at_once(guarded: RunningGateway) -> None:
    held = [connect(guarded) for _ in range(6)]
    time.sleep(0.2)  # all six accepted by the server
    extra = connect(guarded)
    status, headers, body = read_answer(extra, wait=3)
    assert_mlflow_error(status, headers, body, 503)
    assert headers["retry-after"] == "1"
    extra.close()
    for sock in held:
        sock.close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the closed connections, then accepts again
        response = httpx.get(guarded.url + "/health")
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code == 200
