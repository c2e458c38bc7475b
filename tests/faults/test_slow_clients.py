"""Slow request bodies against the real gateway and the real MLflow, over raw sockets:
the attack that used to hold every upstream connection (``Content-Length: 1000``, a byte
every few seconds, as many connections as the pool) leaves other keys served."""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import MakeGateway
from tests.raw_http import connect, read_answer

pytestmark = pytest.mark.integration

SEARCH = "/api/mlflow/api/2.0/mlflow/runs/search"
POOL = 2
IDLE_TIMEOUT = 4.0


def slow_search(sock: socket.socket, key: str) -> None:
    """Headers announcing 1000 bytes of body, then one byte of it."""
    sock.sendall(
        f"POST {SEARCH} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
    )


def answered(socks: list[socket.socket], wait: float) -> list[socket.socket]:
    ready, _, _ = select.select(socks, [], [], wait)
    return ready


def test_slow_bodies_hold_neither_the_pool_nor_more_than_their_share(
    mlflow_server: MlflowProcess, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    running = make_gateway(
        f"sqlite:///{tmp_path / 'hokusai.db'}",
        mlflow_server.url,
        upstream_pool_size=POOL,
        body_idle_timeout=IDLE_TIMEOUT,
    )
    attackers = [running.create_key(Scope.READ, name=f"slow {i}") for i in range(2)]
    victim = running.create_key(Scope.ADMIN)
    # As many slow connections per attacking key as the whole upstream pool.
    socks = {key: [connect(running) for _ in range(POOL)] for key in attackers}
    for key, held in socks.items():
        for sock in held:
            slow_search(sock, key)
    everything = [s for held in socks.values() for s in held]

    # Each key may have POOL - 1 (= 1) request in flight: its second is refused now.
    deadline = time.monotonic() + 5
    refused: list[socket.socket] = []
    while len(refused) < len(attackers) and time.monotonic() < deadline:
        refused += [s for s in answered(everything, 0.5) if s not in refused]
    assert len(refused) == len(attackers), "each key's extra request should get a 429"
    for sock in refused:
        status, headers, body = read_answer(sock)
        assert status == 429, body
        error = json.loads(body)
        assert error["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "in flight" in error["message"]
        assert headers["retry-after"] == "1"
    held = [s for s in everything if s not in refused]
    assert len(held) == len(attackers)
    for sock in held:
        sock.sendall(b" ")  # a byte now and then: the idle timeout restarts

    # The slow bodies (one per attacking key, POOL of them in all) hold no upstream
    # connection: another key's search goes through at once.
    response = httpx.post(
        running.url + SEARCH,
        json={"experiment_ids": ["0"], "max_results": 1},
        headers={"Authorization": f"Bearer {victim}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text

    # A body that stops arriving is cut off with an MLflow-format 408.
    cut_off = time.monotonic() + IDLE_TIMEOUT + 10
    for sock in held:
        assert answered([sock], max(0.0, cut_off - time.monotonic())), "never cut off"
        status, headers, body = read_answer(sock)
        assert status == 408, body
        error = json.loads(body)
        assert error["error_code"] == "BAD_REQUEST"
        assert f"{IDLE_TIMEOUT:g} s" in error["message"]
        assert error["request_id"] == headers["x-request-id"]
        sock.close()
    for sock in refused:
        sock.close()
    for key in attackers:  # the slots are given back
        key_id = running.gateway.keys.authenticate(key).id
        assert running.gateway.in_flight.held(key_id) == 0
