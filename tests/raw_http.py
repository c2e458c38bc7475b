"""Raw sockets to the real gateway, for the tests of hostile, slow and crafted requests:
what a well-behaved HTTP client would never send, and the answers read back as bytes."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from tests.helpers import RunningGateway


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(gateway: RunningGateway, timeout: float = 5.0) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def receive(sock: socket.socket, wait: float, deadline: float | None = None) -> bytes:
    """What arrives on ``sock`` until it closes, is reset, is quiet for ``wait`` seconds or
    (when given) the ``time.monotonic()`` ``deadline`` has passed."""
    sock.settimeout(wait)
    data = b""
    while deadline is None or time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status (0 when there is none) and the headers, by lower-case name, of a
    response head."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return (int(status_line.split()[1]) if status_line else 0), headers


def read_answer(sock: socket.socket, wait: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one answer on ``sock`` (read until it closes)."""
    head, _, body = receive(sock, wait).partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    return status, headers, body


def exchange(gateway: RunningGateway, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` and read until the server closes the connection (or goes quiet)."""
    with connect(gateway, timeout) as sock:
        sock.sendall(data)
        return receive(sock, timeout, deadline=time.monotonic() + timeout)


def parse_answers(data: bytes) -> list[Answer]:
    """Every HTTP/1.1 response in ``data``, in order (Content-Length or chunked bodies)."""
    answers = []
    while data.strip():
        head, separator, data = data.partition(b"\r\n\r\n")
        assert separator, f"incomplete response head: {head!r}"
        status, headers = parse_head(head)
        if "content-length" in headers:
            length = int(headers["content-length"])
            body, data = data[:length], data[length:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body, data = body + data[:size], data[size + 2 :]
                if size == 0:
                    break
        else:
            body, data = data, b""
        answers.append(Answer(status, headers, body))
    return answers
