"""A webhook receiver on a loopback socket: records every request it gets and answers as
each test tells it to (per path: a status, a body, a delay, a slow drip)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering at all.
    delay: float = 0.0
    # Seconds between single bytes of the answer (status line, headers and body).
    drip: float = 0.0


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float  # time.time()
    nth: int  # 1 for the first request to this path

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


Behaviour = Callable[[int], Answer]


def always(answer: Answer) -> Behaviour:
    return lambda _nth: answer


def failing_first(times: int, failure: Answer, then: Answer | None = None) -> Behaviour:
    """``failure`` for the first ``times`` requests, then ``then`` (default 200)."""
    return lambda nth: failure if nth <= times else (then or Answer())


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._counts: dict[str, int] = {}
        self._behaviours: dict[str, Behaviour] = {}
        self._stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                answer = receiver._record(self.path, dict(self.headers.items()), body)
                if answer.delay and receiver._stopping.wait(answer.delay):
                    return
                head = [f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}"]
                head += [f"{name}: {value}" for name, value in answer.headers.items()]
                body = answer.body
                if answer.status in (204, 304):
                    body = b""  # HTTP forbids a body here; strict clients refuse one
                else:
                    head.append(f"content-length: {len(body)}")
                raw = "\r\n".join([*head, "", ""]).encode() + body
                with contextlib.suppress(OSError):
                    if not answer.drip:
                        self.wfile.write(raw)
                        return
                    # A slow receiver: the whole answer, status line included, byte by byte.
                    self.close_connection = True
                    for i in range(len(raw)):
                        if receiver._stopping.wait(answer.drip):
                            return
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512  # the listen backlog: dispatchers open many connections

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender that went away (timed out, or was killed) is part of the tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def on(self, path: str, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviours[path] = behaviour

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            nth = self._counts[path] = self._counts.get(path, 0) + 1
            lowered = {k.lower(): v for k, v in headers.items()}
            self._requests.append(Request(path, lowered, body, time.time(), nth))
            behaviour = self._behaviours.get(path)
        return behaviour(nth) if behaviour else Answer()

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def wait_for(
        self, path: str, count: int, timeout: float = 20.0, *, settle: float = 0.0
    ) -> list[Request]:
        """At least ``count`` requests to ``path`` (then ``settle`` seconds more, so that
        an unexpected extra one shows too); fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.requests(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{path}: {len(self.requests(path))} of {count} requests after {timeout:g} s"
                )
            time.sleep(0.02)
        if settle:
            time.sleep(settle)
        return self.requests(path)

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.stop()
