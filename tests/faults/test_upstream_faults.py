"""MLflow failing behind the real gateway: a connection that breaks after the request
was sent, an upstream that answers late, MLflow hung (SIGSTOP) and MLflow killed under
load. Each failure is an MLflow-format answer in bounded time that says whether the
request was sent; traffic recovers without restarting the gateway."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import (
    MLFLOW_API,
    MakeGateway,
    RunningGateway,
    assert_error,
    auth,
    free_port,
    mlflow_running,
)

pytestmark = pytest.mark.integration

SEARCH = MLFLOW_API + "runs/search"
GET_BY_NAME = MLFLOW_API + "experiments/get-by-name?experiment_name=Default"
ARTIFACT = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/late.txt"
LATE_SECONDS = 2.5
API_TIMEOUT = 5.0  # generous: MLflow must answer within it while it runs, on a busy machine


@dataclass
class BreakingUpstream:
    """A loopback HTTP server that reads each request whole, then misbehaves by path:
    ``/runs/search`` and ``get-by-name`` break the connection without answering; any
    other path answers 200 after ``LATE_SECONDS``."""

    port: int = field(default_factory=free_port)
    requests: list[bytes] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self) -> None:
        with socket.create_server(("127.0.0.1", self.port)) as server:
            server.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(head.split(b"\r\n")[0])
            if b"/runs/search" in head or b"get-by-name" in head:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed with a reset, no answer: MLflow may or may not have acted
            time.sleep(LATE_SECONDS)
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")


@pytest.fixture
def breaking(
    make_gateway: MakeGateway, tmp_path: Path
) -> Iterator[tuple[RunningGateway, BreakingUpstream]]:
    upstream = BreakingUpstream()
    thread = threading.Thread(target=upstream.serve, daemon=True)
    thread.start()
    running = make_gateway(
        f"sqlite:///{tmp_path / 'hokusai.db'}",
        upstream.url,
        upstream_api_timeout=1.0,
        upstream_read_timeout=10.0,
    )
    yield running, upstream
    upstream._stop.set()
    thread.join(timeout=5)


def test_sent_outcome_unknown_is_told_apart_from_never_sent(
    breaking: tuple[RunningGateway, BreakingUpstream], make_gateway: MakeGateway, tmp_path: Path
) -> None:
    running, upstream = breaking
    key = running.create_key(Scope.WRITE)

    # Sent, then the connection broke: a write must not be repeated blindly.
    response = httpx.post(running.url + SEARCH, json={"experiment_ids": ["0"]}, headers=auth(key))
    message = assert_error(response, 502, "TEMPORARILY_UNAVAILABLE")
    assert response.headers["x-should-retry"] == "false"
    assert "retry-after" not in response.headers
    assert "may or may not have been applied" in message
    assert any(b"/runs/search" in line for line in upstream.requests)  # it was delivered

    # A read that broke the same way: repeating it is harmless, so no such header.
    response = httpx.get(running.url + GET_BY_NAME, headers=auth(key))
    assert_error(response, 502, "TEMPORARILY_UNAVAILABLE")
    assert "x-should-retry" not in response.headers

    # Sent, then no answer within the API timeout: 504, bounded by that timeout.
    started = time.monotonic()
    response = httpx.post(
        running.url + MLFLOW_API + "runs/create",
        json={"experiment_id": "0"},
        headers=auth(key),
        timeout=30,
    )
    elapsed = time.monotonic() - started
    message = assert_error(response, 504, "DEADLINE_EXCEEDED")
    assert "within 1 s" in message
    assert response.headers["x-should-retry"] == "false"
    assert elapsed < LATE_SECONDS, f"the 1 s API timeout took {elapsed:.1f} s"

    # An artifact transfer has the long read timeout: the same late answer arrives.
    response = httpx.get(running.url + ARTIFACT, headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    assert response.text == "ok"

    # Never sent: nothing listens. 503 with Retry-After, and no upstream URL shown.
    dead = f"http://127.0.0.1:{free_port()}"
    down = make_gateway(f"sqlite:///{tmp_path / 'down.db'}", dead)
    down_key = down.create_key(Scope.WRITE)
    response = httpx.post(down.url + SEARCH, json={}, headers=auth(down_key))
    message = assert_error(response, 503, "TEMPORARILY_UNAVAILABLE")
    assert response.headers["retry-after"] == "1"
    assert "x-should-retry" not in response.headers
    assert "was not sent" in message
    assert dead not in message and "127.0.0.1" not in message


def test_hung_mlflow_fails_api_calls_in_bounded_time_and_keeps_the_pool(
    mlflow_server: MlflowProcess, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    running = make_gateway(
        f"sqlite:///{tmp_path / 'hokusai.db'}",
        mlflow_server.url,
        upstream_api_timeout=API_TIMEOUT,
        upstream_connect_timeout=2.0,  # a pooled connection is waited for up to 10 s
        upstream_pool_size=4,
        max_in_flight_per_key=3,
    )
    keys = [running.create_key(Scope.READ, name=f"reader {i}") for i in range(3)]

    def get(key: str) -> tuple[int, float, httpx.Response]:
        started = time.monotonic()
        response = httpx.get(running.url + GET_BY_NAME, headers=auth(key), timeout=60)
        return response.status_code, time.monotonic() - started, response

    assert mlflow_server.pid is not None
    group = mlflow_server.pid  # MLflow runs in a process group of its own
    first = get(keys[0])
    assert first[0] == 200, first[2].text
    os.killpg(group, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(get, [keys[i % 3] for i in range(8)]))
        ready = httpx.get(running.url + "/ready", timeout=30)
    finally:
        os.killpg(group, signal.SIGCONT)
    for status, elapsed, response in results:
        # Twice the pool: half wait for a connection, then time out in turn.
        assert status == 504, response.text
        assert_error(response, 504, "DEADLINE_EXCEEDED")
        assert elapsed < 4 * API_TIMEOUT, f"a hung MLflow held a request {elapsed:.1f} s"
    assert ready.status_code == 503
    mlflow_check = ready.json()["checks"]["mlflow"]
    assert mlflow_check["ok"] is False
    assert "did not answer" in mlflow_check["detail"]

    # MLflow answers again (once it has worked off what queued while it was stopped):
    # the pool was not used up, every key is served.
    deadline = time.monotonic() + 120
    while get(keys[0])[0] != 200:
        assert time.monotonic() < deadline, "MLflow never answered again"
        time.sleep(0.5)
    with ThreadPoolExecutor(4) as pool:
        after = list(pool.map(get, [keys[i % 3] for i in range(8)]))
    assert [status for status, _, _ in after] == [200] * 8, after[0][2].text


@pytest.fixture
def own_mlflow(tmp_path: Path) -> Iterator[MlflowProcess]:
    """An MLflow of the test's own: the session's must not depend on its restart."""
    with mlflow_running(tmp_path) as process:
        yield process


@pytest.mark.reliability
def test_mlflow_killed_under_load_is_503_then_recovers(
    own_mlflow: MlflowProcess, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    running = make_gateway(
        f"sqlite:///{tmp_path / 'hokusai.db'}", own_mlflow.url, upstream_api_timeout=API_TIMEOUT
    )
    key = running.create_key(Scope.READ)
    seen: list[tuple[int, float, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(5000):  # bounded in count, and by the test's deadline below
                if stop.is_set():
                    return
                started = time.monotonic()
                response = client.get(running.url + GET_BY_NAME, headers=auth(key))
                seen.append(
                    (
                        response.status_code,
                        time.monotonic() - started,
                        response.headers.get("retry-after"),
                    )
                )
                if response.status_code != 200:
                    time.sleep(0.2)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    try:
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        assert own_mlflow.pid is not None
        restarts = own_mlflow.restarts
        os.killpg(own_mlflow.pid, signal.SIGKILL)
        # While MLflow is down: prompt MLflow-format refusals, none hanging.
        deadline = time.monotonic() + 30
        while not any(status == 503 for status, _, _ in seen):
            assert time.monotonic() < deadline, "no 503 while MLflow was down"
            time.sleep(0.2)
        # The supervisor restarts MLflow (its start alone can take minutes on a loaded
        # machine); the gateway is never restarted.
        deadline = time.monotonic() + 420
        while own_mlflow.restarts == restarts or not seen or seen[-1][0] != 200:
            assert time.monotonic() < deadline, "traffic did not recover"
            time.sleep(0.5)
        recovered_at = len(seen)
        time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    failures = [entry for entry in seen if entry[0] != 200]
    assert failures, "killing MLflow went unnoticed"
    # 503 refused; 502 broken mid-request; 504 sent to the restarting MLflow, which takes
    # connections before it answers them.
    assert {status for status, _, _ in failures} <= {502, 503, 504}
    refused = [entry for entry in failures if entry[0] == 503]
    assert refused and all(retry_after == "1" for _, _, retry_after in refused)
    slowest = max(elapsed for _, elapsed, _ in failures)
    assert slowest < API_TIMEOUT + 10, f"a request hung {slowest:.1f} s on a dead MLflow"
    assert all(status == 200 for status, _, _ in seen[recovered_at:])
