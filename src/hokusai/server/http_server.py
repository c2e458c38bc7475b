"""The HTTP server in front of the gateway: uvicorn, configured in one place.

uvicorn alone caps neither the request line nor the headers (its httptools parser
buffers a 200 MiB header), has no deadline for receiving a request head (its
keep-alive timer restarts on every byte, so a head sent a byte at a time holds a
connection for ever) and answers an over-limit connection count in plain text. The
protocol below keeps httptools' fast parser and adds those three bounds, answering
each refusal in MLflow's error format before any of the request reaches the gateway:

- a request line plus headers larger than ``max_header_bytes`` -> 431, connection closed;
- a head not complete within ``header_timeout`` of the connection opening (or of the
  previous answer, on a kept-alive connection) -> 408, connection closed;
- a connection beyond ``max_connections`` -> 503 with ``Retry-After``, closed at once.

``proxy_headers`` is off: which forwarded headers to believe is the gateway's decision
(trusted proxies), never the server's.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import error_body
from hokusai.settings import Settings

_LINGER_SECONDS = 2.0
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Unavailable",
}


class GatewayServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the bounds the protocol below enforces.

    A module-level class, so it pickles into ``--workers`` processes.
    """

    def __init__(
        self,
        app: Any,
        *,
        max_header_bytes: int,
        header_timeout: float,
        max_connections: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.max_connections = max_connections


def server_config(
    app: Any, settings: Settings, *, host: str, port: int, **kwargs: Any
) -> GatewayServerConfig:
    """The one uvicorn configuration of the gateway (``hokusai serve`` and the tests)."""
    kwargs.setdefault("lifespan", "on")  # a failing startup must stop the server, not hide
    return GatewayServerConfig(
        app,
        host=host,
        port=port,
        http="hokusai.server.http_server:BoundedHttpProtocol",
        proxy_headers=False,
        server_header=False,
        log_config=None,
        access_log=False,
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout,
        max_connections=settings.max_connections,
        **kwargs,
    )


def run_server(config: uvicorn.Config) -> None:
    """Serve ``config`` in this process, or in ``config.workers`` worker processes."""
    server = uvicorn.Server(config)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server.run()
    if not server.started:  # e.g. the port is taken: fail as `uvicorn.run` does
        sys.exit(STARTUP_FAILURE)


class BoundedHttpProtocol(HttpToolsProtocol):
    """httptools' protocol with a size cap and a deadline on each request head."""

    config: GatewayServerConfig

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._reading_head = True
        self._head_deadline: asyncio.TimerHandle | None = None
        self._lingering = False
        if len(self.connections) > self.config.max_connections:
            self._refuse(
                503,
                ErrorCode.TEMPORARILY_UNAVAILABLE,
                "This gateway has as many open connections as it accepts. Retry in a moment.",
                retry_after=1,
            )
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # refused: the rest is dropped unread
            return
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a head that completed inside this chunk fitted, and a
        # head still incomplete has cost at most the cap plus one read.
        if (
            self._reading_head
            and self._head_bytes > self.config.max_header_bytes
            and not self.transport.is_closing()
            and not self._lingering
        ):
            self._refuse(
                431,
                ErrorCode.BAD_REQUEST,
                "The request line and headers are larger than this gateway accepts "
                f"({self.config.max_header_bytes} bytes). Send fewer or shorter headers.",
            )

    def send_400_response(self, msg: str) -> None:
        # httptools refused the bytes (bad chunking, both Content-Length and
        # Transfer-Encoding, a lowercase method, …): uvicorn answers plain text, which an
        # MLflow client shows as an unreadable error. Answer in the error format instead.
        self._refuse(
            400,
            ErrorCode.BAD_REQUEST,
            "The request is not valid HTTP/1.1 (for example conflicting Content-Length and "
            "Transfer-Encoding headers, a malformed chunk, or a method not in upper case); "
            "nothing was forwarded. Send a well-formed request.",
        )

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True  # what follows on this connection is the next head
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # As uvicorn arms its keep-alive timer: no pipelined request is waiting.
        if self.timeout_keep_alive_task is not None:
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(
            self.config.header_timeout, self._head_deadline_passed
        )

    def _disarm_head_deadline(self) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._head_deadline = None

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self._lingering or not self._reading_head:
            return
        if self._head_bytes == 0:  # an idle connection: nobody is waiting for an answer
            self.transport.close()
            return
        self._refuse(
            408,
            ErrorCode.BAD_REQUEST,
            f"The request headers did not arrive within {self.config.header_timeout:g} s. "
            "Send the whole request head at once.",
        )

    def _refuse(
        self, status: int, error_code: ErrorCode, message: str, *, retry_after: int | None = None
    ) -> None:
        self._disarm_head_deadline()
        request_id = uuid.uuid4().hex
        body = error_body(error_code, message, request_id)
        head = [
            b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
            b"content-type: application/json",
            b"x-request-id: " + request_id.encode(),
            b"content-length: %d" % len(body),
            b"connection: close",
        ]
        if retry_after is not None:
            head.append(b"retry-after: %d" % retry_after)
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        # A lingering close, as nginx does: closing a socket with unread input sends a
        # reset that can destroy the answer before the client reads it. So half-close,
        # discard what still comes for a moment, then close.
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)
