"""Raw sockets to the real gateway, for the tests of hostile and slow clients: what a
well-behaved HTTP client would never send, and the answer read back as bytes."""

from __future__ import annotations

import socket

from tests.helpers import RunningGateway


def connect(gateway: RunningGateway) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def read_answer(sock: socket.socket, wait: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one answer on ``sock`` (read until it closes)."""
    sock.settimeout(wait)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
